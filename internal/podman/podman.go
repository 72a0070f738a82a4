// Package podman runs real podman containers for criukit's tests: the busybox image that
// scripts/install-corpus imports offline, containers started with this machine's working flags
// (cgroupfs, runc, explicit rlimits), checkpoints exported as tar, gzip or zstd archives, and
// restores from them. Every container a test starts is removed when the test ends.
package podman

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/criukit/criukit/internal/testenv"
)

// Image is the busybox-static image scripts/install-corpus makes.
const Image = "localhost/criukit-busybox:latest"

// Global flags that make podman work on this machine (crun refuses the hybrid cgroup layout).
var Global = []string{"--cgroup-manager", "cgroupfs", "--runtime", "runc"}

// RunFlags are `podman run` flags needed here: without CAP_SYS_RESOURCE runc cannot raise rlimits.
var RunFlags = []string{"--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"}

// Cmd runs podman with the global flags and returns its combined output.
func Cmd(args ...string) (string, error) {
	var out bytes.Buffer
	c := exec.Command("podman", append(append([]string{}, Global...), args...)...)
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	if err != nil {
		return out.String(), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// Require checks root, podman, runc, criu and the test image (fails under CI=true, skips elsewhere).
func Require(tb testing.TB) {
	tb.Helper()
	testenv.Root(tb)
	testenv.Command(tb, "podman")
	testenv.Command(tb, "runc")
	testenv.Command(tb, "criu")
	if _, err := Cmd("image", "exists", Image); err != nil {
		testenv.Unavailable(tb, "podman image %s (run scripts/install-corpus): %v", Image, err)
	}
}

var seq atomic.Int64

// Name returns a container name unique to this process.
func Name(prefix string) string {
	return fmt.Sprintf("criukit-%s-%d-%d", prefix, time.Now().UnixNano()%1e6, seq.Add(1))
}

// Container is a running container started by a test.
type Container struct {
	Name string
	ID   string
}

// Run starts a detached container of Image running argv,
// with extra `podman run` flags, and removes it when the test ends.
func Run(tb testing.TB, name string, flags []string, argv ...string) *Container {
	tb.Helper()
	args := append([]string{"run", "-d", "--name", name}, RunFlags...)
	args = append(args, flags...)
	args = append(args, Image)
	args = append(args, argv...)
	out, err := Cmd(args...)
	if err != nil {
		tb.Fatal(err)
	}
	c := &Container{Name: name, ID: strings.TrimSpace(lastLine(out))}
	tb.Cleanup(func() { Remove(name) })
	return c
}

// Remove force-removes a container (errors ignored: it may be gone already).
func Remove(name string) { Cmd("rm", "-f", "-t", "0", name) }

// Checkpoint exports a checkpoint of the container into dir and returns the archive's path.
// compress is "zstd" (podman's default), "gzip" or "none"; extra flags go to `podman container
// checkpoint` (e.g. --leave-running, --tcp-established).
func (c *Container) Checkpoint(tb testing.TB, dir, compress string, extra ...string) string {
	tb.Helper()
	ext := map[string]string{"zstd": ".tar.zst", "gzip": ".tar.gz", "none": ".tar"}[compress]
	if ext == "" {
		tb.Fatalf("podman.Checkpoint: compression %q (want zstd, gzip or none)", compress)
	}
	path := filepath.Join(dir, c.Name+ext)
	args := append([]string{"container", "checkpoint", c.Name, "--export", path, "--compress", compress}, extra...)
	if _, err := Cmd(args...); err != nil {
		tb.Fatal(err)
	}
	return path
}

// Restore imports a checkpoint archive as a new container named name (removed when the test ends).
func Restore(tb testing.TB, archive, name string) (*Container, error) {
	tb.Helper()
	tb.Cleanup(func() { Remove(name) })
	out, err := Cmd("container", "restore", "--import", archive, "--name", name)
	if err != nil {
		return nil, err
	}
	return &Container{Name: name, ID: strings.TrimSpace(lastLine(out))}, nil
}

// Running reports whether the container is in state "running".
func Running(name string) bool {
	out, err := Cmd("inspect", "--format", "{{.State.Status}}", name)
	return err == nil && strings.TrimSpace(out) == "running"
}

// Exec runs argv in the container and returns its output.
func Exec(name string, argv ...string) (string, error) {
	return Cmd(append([]string{"exec", name}, argv...)...)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
