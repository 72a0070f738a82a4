package image

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/criukit/criukit/internal/outfile"

	"google.golang.org/protobuf/proto"
)

// Image is one decoded image file, held in memory.
type Image struct {
	Name    string   // base name, e.g. "core-1.img"
	Desc    *Desc    // never nil after Decode (UnknownDesc for unknown names)
	Head    []uint32 // magics as found: [common|service, type], [type] (inventory, images v1), or none
	Entries []*Entry // protobuf entries (none for raw/unknown files)
	Raw     []byte   // whole content of raw and unknown files
}

// Entry is one size-prefixed protobuf entry and the bytes that follow it.
type Entry struct {
	Offset   int64         // file offset of the entry's u32 size
	Msg      proto.Message // payload (go-criu/v8 generated type; unknown fields kept)
	Extra    []byte        // exact bytes after the payload, padding included (nil when none)
	ExtraLen int64         // length of the extra (-1 from a stream when it runs to an unknown EOF)
}

// Decode reads a whole image into memory. name (its base name) selects the type. Do not use it for
// pages-*.img or other huge files: use Open/Reader or OpenMemory.
func Decode(r io.Reader, name string) (*Image, error) {
	rd, err := NewReader(r, name)
	if err != nil {
		return nil, err
	}
	return decodeFrom(rd)
}

func decodeFrom(rd *Reader) (*Image, error) {
	img := &Image{Name: rd.name, Desc: rd.desc, Head: rd.head}
	if rd.desc.Kind == KindRaw || rd.desc.Kind == KindUnknown {
		var err error
		if rd.size > MaxDecodeBytes {
			return nil, ferr(rd.name, 0, -1, ErrTooBig, "%s file of %d bytes is above the %d bytes limit (image.MaxDecodeBytes); read it as a stream", rd.desc.Kind, rd.size, MaxDecodeBytes)
		}
		if rd.size >= 0 {
			img.Raw, err = readFullN(rd.Raw(), rd.size)
		} else {
			img.Raw, err = io.ReadAll(io.LimitReader(rd.Raw(), MaxDecodeBytes+1))
			if err == nil && int64(len(img.Raw)) > MaxDecodeBytes {
				return nil, ferr(rd.name, MaxDecodeBytes, -1, ErrTooBig, "%s stream longer than the %d bytes limit (image.MaxDecodeBytes)", rd.desc.Kind, MaxDecodeBytes)
			}
		}
		if err != nil {
			return nil, ferr(rd.name, int64(len(img.Raw)), -1, ErrTruncated, "%v", err)
		}
		return img, nil
	}
	var cost int64
	for {
		e, err := rd.Next()
		if err == io.EOF {
			return img, nil
		}
		if err != nil {
			return nil, err
		}
		tooBig := func() error {
			return ferr(rd.name, e.Offset, len(img.Entries), ErrTooBig, "%d entries need more than %d bytes in memory (image.MaxDecodeBytes); stream it with image.Open", len(img.Entries)+1, MaxDecodeBytes)
		}
		if cost += decodeEntryCost + rd.pos - e.Offset; cost > MaxDecodeBytes {
			return nil, tooBig()
		}
		if e.ExtraLen != 0 {
			x := rd.Extra()
			if left := MaxDecodeBytes - cost; e.ExtraLen > left || e.ExtraLen < 0 {
				// Read no more than the budget: a short read is the truncation it always was.
				x = io.LimitReader(x, left+1)
				if e.ExtraLen < 0 {
					e.Extra, err = io.ReadAll(x)
				} else {
					e.Extra, err = readFullN(x, left+1)
				}
				if int64(len(e.Extra)) > left {
					return nil, tooBig()
				}
				if err == nil && e.ExtraLen > 0 {
					err = io.ErrUnexpectedEOF
				}
			} else if e.ExtraLen > 0 {
				e.Extra, err = readFullN(x, e.ExtraLen)
			} else {
				e.Extra, err = io.ReadAll(x)
			}
			if err != nil {
				var fe *FormatError
				if errors.As(err, &fe) {
					return nil, err
				}
				return nil, ferr(rd.name, e.Offset, len(img.Entries), ErrTruncated, "extra of %d bytes: %v", e.ExtraLen, err)
			}
			e.ExtraLen = int64(len(e.Extra))
			cost += e.ExtraLen
		}
		img.Entries = append(img.Entries, e)
	}
}

// ReadAll decodes the rest of the image into memory (refused with ErrTooBig above MaxDecodeBytes).
func (r *Reader) ReadAll() (*Image, error) { return decodeFrom(r) }

// ReadFile decodes the image file at path (whole file in memory).
// Only regular files are read (see Open); images above MaxDecodeBytes are refused with ErrTooBig.
func ReadFile(path string) (*Image, error) {
	rd, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return decodeFrom(rd)
}

// Encode writes the image. Encode(Decode(x)) reproduces x byte for byte. Extras are checked against
// their messages (lengths, padding, ghost layout), so an edited image stays consistent.
func (img *Image) Encode(w io.Writer) error {
	switch w.(type) {
	case *bytes.Buffer, *bufio.Writer:
		return img.encode(w)
	}
	bw := bufio.NewWriterSize(w, 32<<10)
	if err := img.encode(bw); err != nil {
		return err
	}
	return bw.Flush()
}

func (img *Image) encode(w io.Writer) error {
	d := img.Desc
	if d == nil {
		var err error
		if d, err = Classify(img.Name); err != nil {
			d = UnknownDesc
		}
	}
	if d.Kind == KindRaw || d.Kind == KindUnknown {
		if len(img.Entries) > 0 {
			return fmt.Errorf("image %s: %w: %s file has %d entries", img.Name, ErrNotStreamable, d.Kind, len(img.Entries))
		}
		_, err := w.Write(img.Raw)
		return err
	}
	if len(img.Raw) > 0 {
		return fmt.Errorf("image %s: %s image with Raw bytes set", img.Name, d.Kind)
	}
	if len(img.Head) == 0 && len(img.Entries) > 0 {
		return fmt.Errorf("image %s: no head magic (set Head, e.g. image.DefaultHead(desc))", img.Name)
	}
	if n := len(img.Head); n > 0 && (img.Head[n-1] != d.MagicValue || n > 2) {
		return ferr(img.Name, 0, -1, ErrBadMagic, "head %#x does not end with %s's magic %#x", img.Head, d.Pattern, d.MagicValue)
	}
	var b [4]byte
	for _, m := range img.Head {
		order.PutUint32(b[:], m)
		if _, err := w.Write(b[:]); err != nil {
			return err
		}
	}
	var off int64 = 4 * int64(len(img.Head))
	var scratch []byte // payload buffer reused across entries (w copies what it keeps)
	for i, e := range img.Entries {
		if e == nil || e.Msg == nil {
			return ferr(img.Name, off, i, ErrWrongMessage, "nil entry")
		}
		want := d.messageName(i)
		if got := e.Msg.ProtoReflect().Descriptor().FullName(); got != want {
			return ferr(img.Name, off, i, ErrWrongMessage, "have %s, %s needs %s", got, d.Pattern, want)
		}
		if err := checkExtra(d, i, e.Msg, e.Extra, i == len(img.Entries)-1); err != nil {
			return &FormatError{File: img.Name, Offset: off, Entry: i, Err: err}
		}
		p, err := marshalOpts.MarshalAppend(scratch[:0], e.Msg)
		scratch = p
		if err != nil {
			return ferr(img.Name, off, i, ErrBadPayload, "%v", err)
		}
		if len(p) > math.MaxUint32 {
			return ferr(img.Name, off, i, ErrTooLarge, "%d bytes", len(p))
		}
		order.PutUint32(b[:], uint32(len(p)))
		if _, err := w.Write(b[:]); err != nil {
			return err
		}
		if _, err := w.Write(p); err != nil {
			return err
		}
		if _, err := w.Write(e.Extra); err != nil {
			return err
		}
		off += 4 + int64(len(p)) + int64(len(e.Extra))
	}
	return nil
}

// DefaultHead returns the head CRIU writes for a type: [IMG_COMMON|IMG_SERVICE, magic], [magic] for
// inventory, nil for raw files.
func DefaultHead(d *Desc) []uint32 {
	switch {
	case d.Kind == KindRaw || d.Kind == KindUnknown:
		return nil
	case d.Head == 0:
		return []uint32{d.MagicValue}
	}
	return []uint32{d.Head, d.MagicValue}
}

// WriteFile encodes img to path with internal/outfile: a temporary file in the same directory,
// fsynced and renamed (mode of the file replaced, else 0644); devices and FIFOs are written in place,
// directories refused.
func WriteFile(path string, img *Image) error {
	return outfile.Write(path, img.Encode)
}
