package anonymize

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/criukit/criukit/internal/compress"
)

// FuzzExtractArchive: any bytes given as a checkpoint archive either extract inside the scratch
// dir or fail; nothing panics and no member lands outside.
func FuzzExtractArchive(f *testing.F) {
	for _, k := range []compress.Kind{compress.None, compress.Gzip, compress.Zstd} {
		var buf bytes.Buffer
		zw, _ := compress.NewWriter(&buf, k)
		tw := tar.NewWriter(zw)
		tw.WriteHeader(&tar.Header{Name: "checkpoint/", Typeflag: tar.TypeDir, Mode: 0o755})
		tw.WriteHeader(&tar.Header{Name: "config.dump", Typeflag: tar.TypeReg, Size: 2, Mode: 0o644})
		tw.Write([]byte("{}"))
		tw.WriteHeader(&tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644})
		tw.Write([]byte("x"))
		tw.Close()
		zw.Close()
		f.Add(buf.Bytes())
	}
	f.Add([]byte("not an archive"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		in := filepath.Join(dir, "in.tar")
		os.WriteFile(in, b, 0o600)
		dst := filepath.Join(dir, "x")
		extractArchive(in, dst)
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && p != dir && p != in && !strings.HasPrefix(p, dst) {
				t.Errorf("member outside the scratch dir: %s", p)
			}
			return nil
		})
	})
}
