// Package compress detects and opens the compressions container checkpoint archives come in
// (podman, CRI-O and containerd write tar, tar+gzip or tar+zstd) so that every reader and writer of
// archives in criukit handles the same set, by content (magic bytes), never by file name.
package compress

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Kind is an archive compression.
type Kind int

const (
	None Kind = iota // plain (a tar)
	Gzip
	Zstd
)

func (k Kind) String() string {
	switch k {
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	}
	return "none"
}

// Ext is the usual file-name suffix of a tar archive with this compression.
func (k Kind) Ext() string {
	switch k {
	case Gzip:
		return ".tar.gz"
	case Zstd:
		return ".tar.zst"
	}
	return ".tar"
}

// ParseKind reads "none", "gzip" or "zstd" (as podman's --compress spells them).
func ParseKind(s string) (Kind, error) {
	switch s {
	case "none", "", "tar":
		return None, nil
	case "gzip", "gz":
		return Gzip, nil
	case "zstd", "zst":
		return Zstd, nil
	}
	return None, fmt.Errorf("unknown compression %q (want none, gzip or zstd)", s)
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// Detect tells the compression from the first bytes of a stream.
func Detect(head []byte) Kind {
	switch {
	case len(head) >= 4 && string(head[:4]) == string(zstdMagic):
		return Zstd
	case len(head) >= 2 && string(head[:2]) == string(gzipMagic):
		return Gzip
	}
	return None
}

// maxZstdWindow bounds the decoder's window (and so its memory) whatever the frame header claims:
// podman and zstd's default levels use windows of a few MiB.
const maxZstdWindow = 128 << 20

// NewReader returns the decompressed stream of r and the compression it found. Close releases the
// decoder (it does not close r).
func NewReader(r io.Reader) (io.ReadCloser, Kind, error) {
	br := bufio.NewReader(r)
	head, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, None, err
	}
	switch k := Detect(head); k {
	case Gzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, k, fmt.Errorf("gzip: %w", err)
		}
		return zr, k, nil
	case Zstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(maxZstdWindow), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, k, fmt.Errorf("zstd: %w", err)
		}
		return zstdReadCloser{zr}, k, nil
	default:
		return io.NopCloser(br), None, nil
	}
}

// NewReaderAsync is NewReader with zstd frames decoded ahead in background goroutines, so that
// decompression overlaps the reader's own work (a memory search streaming the pages) on a second
// core. gzip and plain streams are as with NewReader.
func NewReaderAsync(r io.Reader) (io.ReadCloser, Kind, error) {
	br := bufio.NewReader(r)
	head, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, None, err
	}
	if Detect(head) != Zstd {
		return NewReader(br)
	}
	zr, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(maxZstdWindow), zstd.WithDecoderConcurrency(2))
	if err != nil {
		return nil, Zstd, fmt.Errorf("zstd: %w", err)
	}
	return zstdReadCloser{zr}, Zstd, nil
}

type zstdReadCloser struct{ *zstd.Decoder }

func (z zstdReadCloser) Close() error { z.Decoder.Close(); return nil }

// NewWriter compresses into w with kind k. Close flushes the compressor (it does not close w).
func NewWriter(w io.Writer, k Kind) (io.WriteCloser, error) {
	switch k {
	case Gzip:
		return gzip.NewWriter(w), nil
	case Zstd:
		return zstd.NewWriter(w, zstd.WithEncoderConcurrency(1))
	default:
		return nopWriteCloser{w}, nil
	}
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
