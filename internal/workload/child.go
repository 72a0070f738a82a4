package workload

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

const (
	envChild      = "CRIUKIT_WORKLOAD_CHILD"
	envChildReady = "CRIUKIT_WORKLOAD_CHILD_READY"
)

// StartChild starts the registered workload name as a child process of this one (same binary,
// same namespaces, stdio on /dev/null, same session) and waits until it is ready. Use it to build
// process trees. The child is reaped by a goroutine when it exits.
func (c *Ctx) StartChild(name string) (*exec.Cmd, error) {
	ready := filepath.Join(c.Dir, fmt.Sprintf(".ready-child-%s-%d", name, time.Now().UnixNano()))
	cmd := exec.Command(selfExe(), os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), envChild+"="+name, envChildReady+"="+ready)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start child %s: %w", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(20 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			return cmd, nil
		}
		if b, err := os.ReadFile(ready + ".err"); err == nil {
			return nil, fmt.Errorf("child %s failed: %s", name, b)
		}
		select {
		case err := <-done:
			return nil, fmt.Errorf("child %s exited before it was ready: %v", name, err)
		case <-deadline:
			_ = cmd.Process.Kill()
			return nil, fmt.Errorf("child %s not ready after 20s", name)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// selfExe is this binary's path. Exec it by path, not through /proc/self/exe: that magic link keeps
// the mount of the parent's mount namespace, and CRIU cannot find that mount in a new one
// ("Can't lookup mount=N for fd=-3").
func selfExe() string {
	if p, err := os.Executable(); err == nil {
		return p
	}
	return "/proc/self/exe"
}
