package harness

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Program describes a real program (not criukit-workload) to start for a live test: a Debian
// package's binary (python3, busybox, redis-server, nginx) with its own argv, env and cwd.
type Program struct {
	Name string   // label for messages and Dump.Workload
	Argv []string // argv[0] is looked up in PATH
	Env  []string // the whole environment (nil: a minimal PATH only)
	Dir  string   // working directory ("" = a new temp dir)
	// Ready reports when the program is ready to be dumped (nil: 1 second after start).
	Ready func() bool
	// Cloneflags are namespaces to create for it (e.g. CLONE_NEWUTS).
	Cloneflags uintptr
}

// StartProgram starts pr in a new session with stdio on /dev/null and waits until it is ready.
// The process tree is killed when the test ends.
func StartProgram(tb testing.TB, pr Program) *Proc {
	tb.Helper()
	becomeSubreaper()
	if pr.Dir == "" {
		pr.Dir = tb.TempDir()
	}
	path, err := exec.LookPath(pr.Argv[0])
	if err != nil {
		tb.Fatalf("harness.StartProgram %s: %v", pr.Name, err)
	}
	cmd := exec.Command(path, pr.Argv[1:]...)
	cmd.Args[0] = pr.Argv[0]
	cmd.Dir = pr.Dir
	cmd.Env = pr.Env
	if cmd.Env == nil {
		cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: pr.Cloneflags}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("harness.StartProgram %s: %v", pr.Name, err)
	}
	p := &Proc{Pid: cmd.Process.Pid, Dir: pr.Dir, Workload: pr.Name, cloneflags: pr.Cloneflags, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	tb.Cleanup(p.Kill)
	deadline := time.Now().Add(ReadyTimeout)
	if pr.Ready == nil {
		pr.Ready = func() bool { return time.Until(deadline) < ReadyTimeout-time.Second }
	}
	for !pr.Ready() {
		select {
		case <-p.done:
			tb.Fatalf("harness.StartProgram %s: exited before it was ready (%v)", pr.Name, cmd.ProcessState)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Kill()
			tb.Fatalf("harness.StartProgram %s: not ready after %v", pr.Name, ReadyTimeout)
		}
	}
	return p
}

// FileExists is a Ready helper: the program wrote path.
func FileExists(path string) func() bool {
	return func() bool { _, err := os.Stat(path); return err == nil }
}
