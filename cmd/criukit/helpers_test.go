package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/criukit/criukit/internal/criurun"
)

// Helpers shared by the CLI tests: build the binary, start a workload tree, dump it, interrupt a
// running command.

// buildCLI builds the criukit binary into a temp dir (peak RSS must be measured in a process of its own).
func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "criukit")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startTree starts cmd (a `setsid ...` command: its pid leads its own process group), kills its
// process group at cleanup, and waits up to timeout for the file ready to exist.
func startTree(t *testing.T, cmd *exec.Cmd, ready string, timeout time.Duration) int {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL); cmd.Wait() })
	for dl := time.Now().Add(timeout); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			return pid
		}
		if time.Now().After(dl) {
			t.Fatal("workload not ready")
		}
	}
}

// dumpTree dumps the tree pid with criu into dir/images (log dir/dump.log, no network lock) and
// returns the images directory.
func dumpTree(t *testing.T, criu string, pid int, dir string, timeout time.Duration) string {
	t.Helper()
	imgs := filepath.Join(dir, "images")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := criurun.Dump(ctx, pid, criurun.Opts{Criu: criu, ImagesDir: imgs, LogFile: filepath.Join(dir, "dump.log"),
		Args: []string{"--network-lock", "skip"}}); err != nil {
		t.Fatal(err)
	}
	return imgs
}

// interruptWhen runs cmd (output into buf), sends it SIGINT once ready() holds (polled every poll),
// and returns its exit error and whether it was signalled (false: it ended first, or ran 2 minutes).
func interruptWhen(t *testing.T, cmd *exec.Cmd, buf *bytes.Buffer, poll time.Duration, ready func() bool) (error, bool) {
	t.Helper()
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var err error
	signalled := false
	for dl := time.Now().Add(2 * time.Minute); time.Now().Before(dl); {
		select {
		case err = <-exited:
			return err, signalled
		case <-time.After(poll):
		}
		if !signalled && ready() {
			cmd.Process.Signal(os.Interrupt)
			signalled = true
		}
	}
	return err, signalled
}
