package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/criukit/criukit/image"
	"golang.org/x/sys/unix"
)

// runRSS runs the binary and returns its output, exit error and peak RSS in MiB (rusage Maxrss).
func runRSS(t *testing.T, bin string, stdin string, args ...string) (string, error, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	if stdin != "" {
		f, err := os.Open(stdin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd.Stdin = f
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%v: still running after 90 s (blocked or unbounded): %s", args, out.String())
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return out.String(), err, ru.Maxrss >> 10
}

// headOf returns the magics CRIU writes at the start of image name.
func headOf(t *testing.T, name string) []byte {
	d, err := image.Classify(name)
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	for _, m := range image.DefaultHead(d) {
		b = binary.NativeEndian.AppendUint32(b, m)
	}
	return b
}

// hostile writes name = CRIU head + zeros up to size: sparse (no disk cost) or written zeros.
func hostile(t *testing.T, dir, name string, size int64, sparse bool) string {
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := headOf(t, name)
	if _, err := f.Write(head); err != nil {
		t.Fatal(err)
	}
	if sparse {
		err = f.Truncate(size)
	} else {
		_, err = f.Write(make([]byte, size-int64(len(head))))
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHostileInputsFlatRSS feeds 2 GiB sparse and zero-tailed images (FILES and NETNS: magic then
// zeros, a 2 GiB raw ifaddr image, a 2 GiB file of unknown type, a FIFO, a directory) to ls, info,
// decode (to a file and from stdin) and x, and asserts every run's peak RSS stays under a bound that
// does not depend on the input size, and that nothing blocks.
func TestHostileInputsFlatRSS(t *testing.T) {
	bin := buildCLI(t)
	dir := t.TempDir()
	const G2 = 2 << 30
	files := hostile(t, dir, "files.img", G2, true)
	netns := hostile(t, dir, "netns-9.img", G2, true)
	pstree := hostile(t, dir, "pstree.img", G2, true)
	hostile(t, dir, "ifaddr-9.img", G2, true)
	zdir := filepath.Join(dir, "zeros")
	os.Mkdir(zdir, 0o755)
	zfiles := hostile(t, zdir, "files.img", 64<<20, false)
	znetns := hostile(t, zdir, "netns-9.img", 64<<20, false)
	unknown := filepath.Join(dir, "blob.bin")
	if err := os.WriteFile(unknown, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(unknown, G2)
	if err := unix.Mkfifo(filepath.Join(dir, "fifo.img"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "core-1.img"), 0o755) // a directory named like an image
	null := filepath.Join(t.TempDir(), "null")
	if err := unix.Mknod(null, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatalf("mknod (needs root): %v", err)
	}
	const boundMiB = 200
	type run struct {
		stdin   string
		args    []string
		wantErr string // "" = must succeed
	}
	runs := []run{
		{"", []string{"ls", dir}, ""},
		{"", []string{"ls", dir, "--json"}, ""},
		{"", []string{"ls", zdir}, ""},
		{"", []string{"info", files}, "empty entries"},
		{"", []string{"info", netns}, "empty entries"},
		{"", []string{"info", zfiles}, "empty entries"},
		{"", []string{"info", filepath.Join(dir, "ifaddr-9.img")}, ""},
		{"", []string{"info", unknown}, ""},
		{"", []string{"info", filepath.Join(dir, "fifo.img")}, "FIFO"},
		{"", []string{"info", filepath.Join(dir, "core-1.img")}, "directory"},
		{"", []string{"decode", "-i", files, "-o", null}, "required"},
		{"", []string{"decode", "-i", zfiles, "-o", filepath.Join(dir, "out.json")}, "required"},
		{"", []string{"decode", "-i", netns, "-o", null}, "empty entries"},
		{"", []string{"decode", "-i", znetns, "-o", null}, "empty entries"},
		{"", []string{"decode", "-i", filepath.Join(dir, "ifaddr-9.img"), "-o", null}, ""},
		{"", []string{"decode", "-i", unknown, "-o", null}, "unknown magic"},
		{"", []string{"decode", "-i", filepath.Join(dir, "fifo.img")}, "FIFO"},
		{files, []string{"decode"}, "required"},
		{netns, []string{"decode"}, "empty entries"},
		{pstree, []string{"decode", "-o", null}, "required"},
		{"", []string{"x", dir, "ps"}, "required"},
		{"", []string{"x", dir, "fds"}, "required"},
	}
	for _, r := range runs {
		out, err, rss := runRSS(t, bin, r.stdin, r.args...)
		name := strings.Join(r.args, " ")
		if r.stdin != "" {
			name += " < " + filepath.Base(r.stdin)
		}
		t.Logf("%-60s peak RSS %4d MiB", strings.ReplaceAll(name, dir, "D"), rss)
		if rss > boundMiB {
			t.Errorf("%s: peak RSS %d MiB > %d MiB", name, rss, boundMiB)
		}
		switch {
		case r.wantErr == "" && err != nil:
			t.Errorf("%s: %v\n%s", name, err, out)
		case r.wantErr != "" && (err == nil || !strings.Contains(out, r.wantErr)):
			t.Errorf("%s: want an error saying %q, got %v:\n%.500s", name, r.wantErr, err, out)
		}
		if r.args[0] == "ls" && r.args[1] == dir && (!strings.Contains(out, "fifo.img") || !strings.Contains(out, "fifo")) {
			t.Errorf("ls does not list the FIFO:\n%s", out)
		}
	}
	if st, _ := os.Lstat(null); st.Mode()&os.ModeCharDevice == 0 {
		t.Fatal("device node replaced")
	}
}
