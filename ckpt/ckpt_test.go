package ckpt_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/criukit/criukit/ckpt"
	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/internal/compress"
	"github.com/criukit/criukit/internal/podman"
)

// recompress writes the tar at src again with compression k (same members, same bytes).
func recompress(t *testing.T, src string, k compress.Kind) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := strings.TrimSuffix(src, ".tar") + k.Ext()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	zw, err := compress.NewWriter(out, k)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(zw, in); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestPodmanArchive opens one real podman checkpoint as a plain tar, gzip and zstd, as podman's own
// zstd export and as the unpacked directory: every image file reads back the same bytes, the FS passes
// testing/fstest, pages are read in place for the plain tar, and the sizes match the tar headers.
func TestPodmanArchive(t *testing.T) {
	podman.Require(t)
	dir := t.TempDir()
	c := podman.Run(t, podman.Name("ckpt"), []string{"-e", "CKPT_TEST=1"}, "sh", "-c", "exec 3>/tmp/f; while :; do sleep 1; done")
	plain := c.Checkpoint(t, dir, "none", "--leave-running")
	own := c.Checkpoint(t, dir, "zstd")

	unpacked := filepath.Join(dir, "unpacked")
	os.Mkdir(unpacked, 0o755)
	if out, err := exec.Command("tar", "-C", unpacked, "-xf", plain).CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v %s", err, out)
	}
	want := map[string][]byte{}
	des, err := os.ReadDir(filepath.Join(unpacked, "checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(unpacked, "checkpoint", de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		want[de.Name()] = b
		names = append(names, "checkpoint/"+de.Name())
	}
	for _, p := range []string{plain, recompress(t, plain, compress.Gzip), recompress(t, plain, compress.Zstd), unpacked} {
		t.Run(filepath.Base(p), func(t *testing.T) {
			ck, err := ckpt.Open(p, ckpt.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer ck.Close()
			if !ck.IsContainer() || ck.ImagesPath() != "checkpoint" {
				t.Fatalf("kind %s images %q", ck.Kind, ck.ImagesPath())
			}
			// Compressed archives keep only the images and small metadata files: test the whole
			// archive layout where everything is served, the images directory everywhere.
			if ck.Compression == compress.None {
				if err := fstest.TestFS(ck.FS(), append(names, "config.dump", "spec.dump")...); err != nil {
					t.Fatal(err)
				}
			}
			if err := fstest.TestFS(ck.Images(), "pstree.img", "inventory.img"); err != nil {
				t.Fatal(err)
			}
			var total, pages int64
			for name, b := range want {
				got, err := fs.ReadFile(ck.Images(), name)
				if err != nil || !bytes.Equal(got, b) {
					t.Fatalf("%s: %d bytes, want %d (%v)", name, len(got), len(b), err)
				}
				total += int64(len(b))
				if strings.HasPrefix(name, "pages-") {
					pages += int64(len(b))
				}
			}
			if ck.Sizes.Checkpoint != total || ck.Sizes.Pages != pages || pages == 0 {
				t.Errorf("sizes %+v, want checkpoint %d pages %d", ck.Sizes, total, pages)
			}
			if ck.Kind == ckpt.KindArchive && ck.Compression != compress.None && ck.Sizes.Spooled < total {
				t.Errorf("spooled %d < checkpoint %d", ck.Sizes.Spooled, total)
			}
			if ck.Kind == ckpt.KindArchive && ck.Compression == compress.None && ck.Sizes.Spooled != 0 {
				t.Errorf("plain tar spooled %d bytes", ck.Sizes.Spooled)
			}
			// The image layer reads the archive like a directory.
			files, err := image.ReadDirFS(ck.FS(), ck.ImagesPath())
			if err != nil || len(files) != len(want) {
				t.Fatalf("ReadDirFS: %d files, want %d (%v)", len(files), len(want), err)
			}
			for _, f := range files {
				if f.Err != nil {
					t.Errorf("%s: %v", f.Name, f.Err)
				}
			}
			m, err := image.OpenMemoryFS(ck.FS(), ck.ImagesPath(), 1)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			ref, err := image.OpenMemory(filepath.Join(unpacked, "checkpoint"), 1)
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			for _, r := range ref.Ranges() {
				if r.Flags&image.PEPresent == 0 {
					continue
				}
				a, b := make([]byte, r.NrPages*uint64(image.PageSize)), make([]byte, r.NrPages*uint64(image.PageSize))
				if _, err := m.ReadAt(a, int64(r.Vaddr)); err != nil {
					t.Fatal(err)
				}
				ref.ReadAt(b, int64(r.Vaddr))
				if !bytes.Equal(a, b) {
					t.Fatalf("pages at %#x differ", r.Vaddr)
				}
			}
		})
	}
	t.Run("podman-zstd", func(t *testing.T) {
		ck, err := ckpt.Open(own, ckpt.Options{SkipPages: true})
		if err != nil {
			t.Fatal(err)
		}
		defer ck.Close()
		if ck.Compression != compress.Zstd || ck.Sizes.Pages == 0 || ck.Sizes.Spooled >= ck.Sizes.Checkpoint {
			t.Fatalf("compression %v sizes %+v", ck.Compression, ck.Sizes)
		}
		if _, err := fs.ReadFile(ck.Images(), "pstree.img"); err != nil {
			t.Fatal(err)
		}
		_, err = ck.Images().Open("pages-1.img")
		if !errors.Is(err, ckpt.ErrPagesSkipped) {
			t.Fatalf("pages with SkipPages: %v", err)
		}
	})
}

// TestHostileArchives: not an archive, truncated archives, members escaping the root, symlink loops.
func TestHostileArchives(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body string) {
		h.Size = int64(len(body))
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		h.Mode = 0o644
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	add(&tar.Header{Name: "../../etc/evil"}, "x")
	add(&tar.Header{Name: "/abs/evil"}, "y")
	add(&tar.Header{Name: "checkpoint/pstree.img"}, "zzzz")
	add(&tar.Header{Name: "checkpoint/loop", Typeflag: tar.TypeSymlink, Linkname: "loop"}, "")
	add(&tar.Header{Name: "checkpoint/out", Typeflag: tar.TypeSymlink, Linkname: "../../../etc/passwd"}, "")
	add(&tar.Header{Name: "checkpoint/pages-1.img"}, strings.Repeat("p", 5000))
	tw.Close()
	good := write("good.tar", buf.Bytes())
	ck, err := ckpt.Open(good, ckpt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	if _, err := fs.Stat(ck.FS(), "etc/evil"); err == nil {
		t.Error("../../etc/evil reachable")
	}
	if b, err := fs.ReadFile(ck.FS(), "abs/evil"); err != nil || string(b) != "y" {
		t.Errorf("abs/evil: %q %v", b, err)
	}
	for _, n := range []string{"checkpoint/loop", "checkpoint/out"} {
		if _, err := ck.FS().Open(n); err == nil {
			t.Errorf("%s opened", n)
		}
	}
	if ck.Sizes.Pages != 5000 {
		t.Errorf("pages %d", ck.Sizes.Pages)
	}
	for _, k := range []compress.Kind{compress.None, compress.Gzip, compress.Zstd} {
		var z bytes.Buffer
		zw, _ := compress.NewWriter(&z, k)
		zw.Write(buf.Bytes())
		zw.Close()
		for _, cut := range []int{10, 600, z.Len() / 2} {
			p := write("cut"+k.Ext(), z.Bytes()[:min(cut, z.Len())])
			if c, err := ckpt.Open(p, ckpt.Options{}); err == nil {
				// A tar cut at a member boundary is a shorter valid archive; a cut member is not.
				if b, err := fs.ReadFile(c.FS(), "checkpoint/pages-1.img"); err == nil && len(b) != 5000 {
					t.Errorf("%s cut at %d: pages read %d bytes", k, cut, len(b))
				}
				c.Close()
			}
		}
	}
	if _, err := ckpt.Open(write("text.tar", bytes.Repeat([]byte("not a tar\n"), 100)), ckpt.Options{}); !errors.Is(err, ckpt.ErrNotArchive) {
		t.Errorf("text file: %v", err)
	}
}
