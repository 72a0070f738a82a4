package outfile

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func noTemps(t *testing.T, dir string) {
	t.Helper()
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		if strings.Contains(de.Name(), ".tmp") {
			t.Errorf("temporary file left: %s", de.Name())
		}
	}
}

// TestDeviceNodeWrittenInPlace: the /dev/null bug (decode -o /dev/null replaced the node by a file),
// against a null device node made with mknod in a temp dir (never the real /dev/null).
func TestDeviceNodeWrittenInPlace(t *testing.T) {
	dir := t.TempDir()
	null := filepath.Join(dir, "null")
	if err := unix.Mknod(null, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatalf("mknod (needs root): %v", err)
	}
	if err := WriteFile(null, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	st, err := os.Lstat(null)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("device node replaced: mode now %v", st.Mode())
	}
	noTemps(t, dir)
}

func TestFIFOWrittenInPlace(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		f, err := os.Open(fifo)
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(f)
		f.Close()
		got <- string(b)
	}()
	if err := WriteFile(fifo, []byte("through the fifo")); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "through the fifo" {
		t.Fatalf("reader got %q", s)
	}
	if st, _ := os.Lstat(fifo); st.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("fifo replaced: %v", st.Mode())
	}
	noTemps(t, dir)
}

func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	os.Symlink(sub, filepath.Join(dir, "tosub"))
	l, err := net.Listen("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, c := range []struct{ name, want string }{
		{"sub", "is a directory"}, {"tosub", "symlink to the directory"}, {"sock", "socket"},
	} {
		err := WriteFile(filepath.Join(dir, c.name), []byte("x"))
		if !errors.Is(err, ErrNotWritable) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want ErrNotWritable saying %q", c.name, err, c.want)
		}
	}
	if st, _ := os.Lstat(filepath.Join(dir, "tosub")); st.Mode()&os.ModeSymlink == 0 {
		t.Error("symlink replaced")
	}
	noTemps(t, dir)
}

func TestModes(t *testing.T) {
	dir := t.TempDir()
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	p := filepath.Join(dir, "new")
	if err := WriteFile(p, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o644 {
		t.Errorf("new file mode %v, want 0644", st.Mode().Perm())
	}
	os.Chmod(p, 0o640)
	if err := WriteFile(p, []byte("b")); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o640 {
		t.Errorf("replaced file mode %v, want the original 0640", st.Mode().Perm())
	}
	// A symlink to a regular file stays a symlink; its target gets the content.
	link := filepath.Join(dir, "link")
	os.Symlink("new", link)
	if err := WriteFile(link, []byte("c")); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Lstat(link); st.Mode()&os.ModeSymlink == 0 {
		t.Error("symlink replaced by a file")
	}
	if b, _ := os.ReadFile(p); string(b) != "c" {
		t.Errorf("target holds %q", b)
	}
	noTemps(t, dir)
}

func TestFailedFillKeepsOriginal(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out")
	os.WriteFile(p, []byte("original"), 0o644)
	err := Write(p, func(w io.Writer) error {
		w.Write([]byte("half"))
		return errors.New("boom")
	})
	if err == nil {
		t.Fatal("no error")
	}
	if b, _ := os.ReadFile(p); string(b) != "original" {
		t.Fatalf("original damaged: %q", b)
	}
	noTemps(t, dir)
}
