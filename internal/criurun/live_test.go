package criurun_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/harness"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { harness.Main(m) }

func TestFindReal(t *testing.T) {
	harness.Criu(t)
	p, v, err := criurun.Find()
	if err != nil {
		t.Fatal(err)
	}
	if p == "/usr/sbin/criu" {
		t.Errorf("Find picked Debian's old criu %s (%s)", p, v)
	}
	t.Logf("criu %s at %s", v, p)
}

func TestCheck(t *testing.T) {
	criu := harness.Criu(t)
	ctx := context.Background()
	out, err := criurun.Check(ctx, criu)
	if err != nil || !strings.Contains(out, "Looks good") {
		t.Fatalf("criu check: %q %v", out, err)
	}
	if _, err := criurun.Check(ctx, criu, "--feature", "no_such_feature"); !errors.Is(err, criurun.ErrFailed) {
		t.Errorf("check of an unknown feature: err = %v, want ErrFailed", err)
	}
}

// TestDumpRestore dumps a sleep workload with criurun (default nftables network lock), restores it
// detached, then restores the same images again while the pid is taken: that must fail with the
// log's error lines and path.
func TestDumpRestore(t *testing.T) {
	criu := harness.Criu(t)
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) // so that we can reap the restored task
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := harness.Start(t, "sleep")
	imgs := filepath.Join(t.TempDir(), "imgs")
	if err := criurun.Dump(ctx, p.Pid, criurun.Opts{Criu: criu, ImagesDir: imgs}); err != nil {
		t.Fatal(err)
	}
	p.Kill() // reaps the dumped task, so that its pid can be restored
	if _, err := os.Stat(filepath.Join(imgs, "dump.log")); err != nil {
		t.Errorf("default log: %v", err)
	}
	pid, err := criurun.Restore(ctx, criurun.Opts{Criu: criu, ImagesDir: imgs})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, 0, nil)
	}()
	if pid != p.Pid {
		t.Errorf("restored pid %d, dumped %d", pid, p.Pid)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("restored pid %d: %v", pid, err)
	}

	log := filepath.Join(t.TempDir(), "again.log")
	_, err = criurun.Restore(ctx, criurun.Opts{Criu: criu, ImagesDir: imgs, LogFile: log})
	var ce *criurun.Error
	if !errors.As(err, &ce) || !errors.Is(err, criurun.ErrFailed) {
		t.Fatalf("second restore: err = %v, want *criurun.Error", err)
	}
	if ce.Log != log || len(ce.Lines) == 0 || !strings.Contains(err.Error(), log) {
		t.Errorf("error lacks log lines or path: %v", err)
	}
	for _, l := range ce.Lines {
		if strings.Contains(l, "RLIMIT_NOFILE") {
			t.Errorf("harmless line reported: %s", l)
		}
	}
	t.Logf("expected failure: %v", err)
}
