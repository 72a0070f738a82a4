package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// writePstree encodes a one-task pstree.img into dir through the CLI and returns its path.
func writePstree(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "pstree.img")
	if _, err := runCLI(t, []byte(`{"magic":"PSTREE","entries":[{"pid":1,"ppid":0,"pgid":1,"sid":1}]}`), "encode", "-o", p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestOutputsNeverReplaceDevices: `decode -o` and `encode -o` on a device node (made with mknod in a
// temp dir, never the real /dev/null) and on a FIFO write in place; a directory is refused.
func TestOutputsNeverReplaceDevices(t *testing.T) {
	dir := t.TempDir()
	img := writePstree(t, dir)
	if st, _ := os.Stat(img); st.Mode().Perm() != 0o644 {
		t.Errorf("encode wrote mode %v, want 0644", st.Mode().Perm())
	}
	null := filepath.Join(dir, "null")
	if err := unix.Mknod(null, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatalf("mknod (needs root): %v", err)
	}
	if _, err := runCLI(t, nil, "decode", "-i", img, "-o", null); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, []byte(`{"magic":"PSTREE","entries":[{"pid":1,"ppid":0,"pgid":1,"sid":1}]}`), "encode", "-o", null); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Lstat(null); st.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("device node replaced by %v", st.Mode())
	}
	_, err := runCLI(t, nil, "decode", "-i", img, "-o", dir)
	if err == nil || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("decode -o DIR: %v, want a refusal naming the directory", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 1)
	go func() {
		b, _ := os.ReadFile(fifo)
		got <- len(b)
	}()
	if _, err := runCLI(t, nil, "decode", "-i", img, "-o", fifo); err != nil {
		t.Fatal(err)
	}
	if n := <-got; n == 0 {
		t.Fatal("nothing came through the FIFO")
	}
	if st, _ := os.Lstat(fifo); st.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("FIFO replaced by %v", st.Mode())
	}
}
