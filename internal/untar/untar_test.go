package untar

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type entry struct {
	name, body, link string
	typ              byte
}

func archive(t testing.TB, es ...entry) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.link}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return b.Bytes()
}

func TestExtract(t *testing.T) {
	dir := t.TempDir()
	in := archive(t,
		entry{name: "./", typ: tar.TypeDir},
		entry{name: "checkpoint/", typ: tar.TypeDir},
		entry{name: "checkpoint/core-1.img", body: "core", typ: tar.TypeReg},
		entry{name: "deep/er/file", body: "x", typ: tar.TypeReg},
		entry{name: "checkpoint/parent", link: "../round-0", typ: tar.TypeSymlink},
		entry{name: "fifo", typ: tar.TypeFifo},
	)
	var others []string
	n, err := Extract(bytes.NewReader(in), dir, func(name string, h *tar.Header) error {
		others = append(others, name)
		return nil
	})
	if err != nil || n != 6 {
		t.Fatalf("Extract = %d, %v; want 6 entries, no error", n, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "checkpoint/core-1.img")); string(b) != "core" {
		t.Errorf("core-1.img = %q", b)
	}
	if fi, err := os.Stat(filepath.Join(dir, "deep/er/file")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("deep/er/file: %v %v", fi, err)
	}
	if strings.Join(others, ",") != "checkpoint/parent,fifo" {
		t.Errorf("other saw %q", others)
	}
	for _, p := range []string{"checkpoint/parent", "fifo"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); err == nil {
			t.Errorf("%s was created", p)
		}
	}
}

func TestRefusals(t *testing.T) {
	for _, name := range []string{"../x", "/etc/x", "a/../../x", ".."} {
		dir := t.TempDir()
		_, err := Extract(bytes.NewReader(archive(t, entry{name: name, body: "x", typ: tar.TypeReg})), dir, nil)
		if err == nil || !strings.Contains(err.Error(), "escapes the archive") {
			t.Errorf("%q: err = %v, want an escape refusal", name, err)
		}
	}
	// an existing file is never replaced
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("keep"), 0o600)
	if _, err := Extract(bytes.NewReader(archive(t, entry{name: "f", body: "new", typ: tar.TypeReg})), dir, nil); !errors.Is(err, os.ErrExist) {
		t.Errorf("existing file: err = %v, want ErrExist", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "f")); string(b) != "keep" {
		t.Errorf("existing file now %q", b)
	}
	// other's error stops the extraction
	stop := errors.New("no symlinks")
	if _, err := Extract(bytes.NewReader(archive(t, entry{name: "l", link: "x", typ: tar.TypeSymlink})), t.TempDir(), func(string, *tar.Header) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("other's error: %v", err)
	}
	// not a tar: a ReadError
	var re *ReadError
	if _, err := Extract(strings.NewReader(strings.Repeat("not a tar ", 100)), t.TempDir(), nil); !errors.As(err, &re) {
		t.Errorf("garbage: err = %v, want a ReadError", err)
	}
}

// FuzzExtract: whatever the stream, nothing lands outside dir and only dirs and regular files are made.
func FuzzExtract(f *testing.F) {
	f.Add(archive(f, entry{name: "a/b", body: "x", typ: tar.TypeReg}, entry{name: "l", link: "/", typ: tar.TypeSymlink}))
	f.Add(archive(f, entry{name: "../up", body: "x", typ: tar.TypeReg}))
	f.Fuzz(func(t *testing.T, in []byte) {
		root := t.TempDir()
		dir := filepath.Join(root, "d")
		os.Mkdir(dir, 0o700)
		_, _ = Extract(bytes.NewReader(in), dir, nil)
		ents, _ := os.ReadDir(root)
		if len(ents) != 1 {
			t.Fatalf("%d entries beside dir", len(ents)-1)
		}
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && !d.Type().IsRegular() {
				t.Fatalf("made %s (%v)", p, d.Type())
			}
			return nil
		})
	})
}
