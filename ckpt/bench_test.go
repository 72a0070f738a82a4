package ckpt_test

import (
	"archive/tar"
	"bytes"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/criukit/criukit/ckpt"
	"github.com/criukit/criukit/internal/compress"
)

// BenchmarkOpen: what opening an archive with 64 MiB of pages costs: a plain tar (headers only), a
// zstd archive spooled whole, with the pages skipped, and with the pages streamed to a reader.
func BenchmarkOpen(b *testing.B) {
	dir := b.TempDir()
	pages := make([]byte, 64<<20)
	rand.New(rand.NewSource(1)).Read(pages[:len(pages)/2]) // half random, half zero pages
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		data []byte
	}{{"config.dump", []byte("{}")}, {"checkpoint/pstree.img", []byte("x")}, {"checkpoint/pages-1.img", pages}} {
		tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.data))})
		tw.Write(f.data)
	}
	tw.Close()
	plain := filepath.Join(dir, "c.tar")
	os.WriteFile(plain, buf.Bytes(), 0o644)
	var z bytes.Buffer
	zw, _ := compress.NewWriter(&z, compress.Zstd)
	zw.Write(buf.Bytes())
	zw.Close()
	zst := filepath.Join(dir, "c.tar.zst")
	os.WriteFile(zst, z.Bytes(), 0o644)
	run := func(name, p string, o ckpt.Options) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(pages)))
			for i := 0; i < b.N; i++ {
				c, err := ckpt.Open(p, o)
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
	run("tar-in-place", plain, ckpt.Options{TempDir: dir})
	run("zstd-spool-all", zst, ckpt.Options{TempDir: dir})
	run("zstd-skip-pages", zst, ckpt.Options{TempDir: dir, SkipPages: true})
	run("zstd-stream-pages", zst, ckpt.Options{TempDir: dir, StreamPages: func(_ fs.FS, _ string, _ int64, r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		return err
	}})
}
