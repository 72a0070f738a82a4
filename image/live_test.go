package image

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	file_lock "github.com/checkpoint-restore/go-criu/v8/crit/images/file-lock"
	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/testenv"
	"google.golang.org/protobuf/encoding/prototext"
)

// rewriteStreaming copies an image through Reader and Writer (extras streamed, never held whole).
func rewriteStreaming(src, dst string) error {
	r, err := Open(src)
	if err != nil {
		return err
	}
	defer r.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	d := r.Desc()
	if d.Kind == KindRaw || d.Kind == KindUnknown || len(r.Head()) == 0 {
		_, err = io.Copy(out, r.Raw()) // raw, unknown, or an empty protobuf image
		return err
	}
	w, err := NewWriter(out, r.Name(), d, r.Head())
	if err != nil {
		return err
	}
	for {
		e, err := r.Next()
		if err == io.EOF {
			return out.Close()
		}
		if err != nil {
			return err
		}
		if d.Extra == ExtraIPCMsg {
			x, err := io.ReadAll(r.Extra())
			if err != nil {
				return err
			}
			err = w.Write(e.Msg, x)
		} else {
			err = w.WriteStream(e.Msg, r.Extra(), e.ExtraLen)
		}
		if err != nil {
			return err
		}
	}
}

// TestRewriteRestore dumps the files workload (ghost files raw + chunked, pipes, fifo, sockets with
// queued data, memfd, shared memory), rewrites every image through the streaming Reader/Writer,
// checks the bytes are unchanged, restores from the rewritten images and lets the workload verify
// that all its objects still hold their data.
func TestRewriteRestore(t *testing.T) {
	testenvShort(t)
	harness.Criu(t)
	p := harness.Start(t, "files")
	d := p.Dump(t)
	tmp := t.TempDir()
	ents, err := os.ReadDir(d.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		src, dst := filepath.Join(d.Dir, e.Name()), filepath.Join(tmp, e.Name())
		if err := rewriteStreaming(src, dst); err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		a, _ := os.ReadFile(src)
		b, _ := os.ReadFile(dst)
		if !bytes.Equal(a, b) {
			t.Fatalf("%s: streaming rewrite differs (%d -> %d bytes)", e.Name(), len(a), len(b))
		}
		if err := os.Rename(dst, src); err != nil {
			t.Fatal(err)
		}
	}
	r := d.Restore(t)
	t.Logf("restored pid %d: %s", r.Pid, r.Check(t))
}

// TestLocksAndCgroupLive dumps a process tree the corpus does not have: a flock(1) holding an
// exclusive lock (filelocks.img with --file-locks) inside its own pids cgroup (cgroup.img), and
// checks both images round-trip and say what was set up.
func TestLocksAndCgroupLive(t *testing.T) {
	testenvShort(t)
	criu := harness.Criu(t)
	flockBin := testenv.Command(t, "flock")
	cgRoot := "/sys/fs/cgroup/pids"
	if _, err := os.Stat(filepath.Join(cgRoot, "cgroup.procs")); err != nil {
		testenv.Unavailable(t, "needs the cgroup v1 pids hierarchy at %s", cgRoot)
	}
	cg := filepath.Join(cgRoot, fmt.Sprintf("criukit-image-test-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; i < 50 && os.Remove(cg) != nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	})
	work := t.TempDir()
	lock := filepath.Join(work, "lockfile")
	cmd := exec.Command(flockBin, "-x", lock, "sleep", "1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-waited
	})
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	// wait until flock holds the lock and has started sleep
	for i := 0; ; i++ {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
		if len(bytes.TrimSpace(b)) > 0 {
			break
		}
		if i > 100 {
			t.Fatal("flock did not start sleep")
		}
		time.Sleep(20 * time.Millisecond)
	}
	dir := filepath.Join(work, "images")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := criurun.Dump(ctx, cmd.Process.Pid, criurun.Opts{Criu: criu, ImagesDir: dir, LogFile: filepath.Join(work, "dump.log"),
		Args: []string{"--file-locks", "--network-lock", "skip"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"filelocks.img", "cgroup.img"} {
		p := filepath.Join(dir, name)
		orig, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%s missing: %v", name, err)
		}
		img, err := ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := img.Encode(&out); err != nil || !bytes.Equal(out.Bytes(), orig) {
			t.Errorf("%s: round trip differs (%v)", name, err)
		}
		text := prototext.Format(img.Entries[0].Msg)
		switch name {
		case "filelocks.img":
			l := img.Entries[0].Msg.(*file_lock.FileLockEntry)
			if l.GetPid() != int32(cmd.Process.Pid) || l.GetType() != 1 /* F_WRLCK */ {
				t.Errorf("filelocks: %s", text)
			}
		case "cgroup.img":
			if !strings.Contains(text, filepath.Base(cg)) {
				t.Errorf("cgroup.img does not name %s: %s", filepath.Base(cg), text)
			}
		}
	}
}
