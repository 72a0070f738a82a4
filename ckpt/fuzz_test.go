package ckpt_test

import (
	"archive/tar"
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/criukit/criukit/ckpt"
	"github.com/criukit/criukit/internal/compress"
)

func seedTar(names ...string) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, n := range names {
		tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: 4})
		tw.Write([]byte("data"))
	}
	tw.WriteHeader(&tar.Header{Name: "checkpoint/parent", Typeflag: tar.TypeSymlink, Linkname: "../checkpoint"})
	tw.Close()
	return b.Bytes()
}

// FuzzOpen feeds arbitrary bytes as an archive (plain, and recompressed as gzip: the streamed and
// spooled path zstd archives take too; zstd's encoder is too slow under the fuzzer's
// instrumentation): Open either fails or gives an FS whose every file reads back its stated size,
// without panics.
func FuzzOpen(f *testing.F) {
	f.Add(seedTar("checkpoint/pstree.img", "config.dump", "checkpoint/pages-1.img"))
	f.Add(seedTar("pstree.img", "../x", "/abs", "a/b/c/d"))
	f.Add([]byte("not a tar"))
	f.Fuzz(fuzzOne)
}

func fuzzOne(t *testing.T, data []byte) {
	dir := t.TempDir()
	{
		for _, k := range []compress.Kind{compress.None, compress.Gzip} {
			var z bytes.Buffer
			zw, _ := compress.NewWriter(&z, k)
			zw.Write(data)
			zw.Close()
			p := filepath.Join(dir, "a"+k.Ext())
			if err := os.WriteFile(p, z.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := ckpt.Open(p, ckpt.Options{TempDir: dir})
			if err != nil {
				continue
			}
			fs.WalkDir(c.FS(), ".", func(name string, de fs.DirEntry, err error) error {
				if err != nil || de.IsDir() {
					return nil
				}
				fh, err := c.FS().Open(name)
				if err != nil {
					return nil
				}
				st, _ := fh.Stat()
				n, _ := io.Copy(io.Discard, fh)
				fh.Close()
				if st.Mode().IsRegular() && n != st.Size() {
					t.Errorf("%s: read %d of %d bytes", name, n, st.Size())
				}
				return nil
			})
			c.Close()
		}
	}
}
