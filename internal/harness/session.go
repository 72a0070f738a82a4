package harness

import (
	"bufio"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// NotSessionLeader starts `sleep 600` as the child of a shell that leads a new session and returns
// the sleep's pid: a task whose session leader is visible in its pid namespace but is not part of
// the tree CRIU would dump (criu: "The root process N is not a session leader"). Unlike a child
// started in the test's own session, this does not depend on how the test itself was started.
// Both processes are killed and reaped when the test ends.
func NotSessionLeader(tb testing.TB) int {
	tb.Helper()
	becomeSubreaper()
	cmd := exec.Command("sh", "-c", "sleep 600 & echo $!; wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("harness.NotSessionLeader: %v", err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	pid, perr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || perr != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		tb.Fatalf("harness.NotSessionLeader: shell printed %q (%v)", line, err)
	}
	tb.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the shell's group holds both
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_ = cmd.Wait()
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, 0, nil) // reparented to us (subreaper) once the shell died
	})
	return pid
}
