package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/testenv"
	"github.com/criukit/criukit/internal/workload"
	"golang.org/x/sys/unix"
)

// Timeouts for the steps of a live test.
var (
	ReadyTimeout = 30 * time.Second
	CriuTimeout  = 90 * time.Second
)

// DumpArgs and RestoreArgs are the extra criu arguments each workload needs (by workload name).
//
// Network lock: Proc.Dump passes --network-lock skip unless the dump contains its own network
// namespace (or the caller gives --network-lock): with nftables CRIU leaves a lock table (inet
// CRIU-<run id>, with input/output hooks) in the netns until a restore of the same images removes it,
// so dumps that are never restored would leak tables into the host. Restores reuse the dump's method
// (CRIU reads it from inventory.img) and delete the dump's table. Self-contained loopback TCP
// connections need no lock: CRIU kills them in repair mode, which sends nothing to the peer.
var (
	DumpArgs = map[string][]string{
		"tcp": {"--tcp-established"},
	}
	RestoreArgs = map[string][]string{
		"tcp": {"--tcp-established"},
		"ns":  {"--root", "/"}, // restores only with -veth=false (a veth pair inside the netns gives EEXIST)
	}
)

var criuOnce struct {
	sync.Once
	path, version string
	err           error
}

// Criu returns the path of a CRIU >= 4.2 (see criurun.Find), or calls testenv.Unavailable. It also
// requires root, which every CRIU dump needs.
func Criu(tb testing.TB) string {
	tb.Helper()
	testenv.Root(tb)
	criuOnce.Do(func() { criuOnce.path, criuOnce.version, criuOnce.err = criurun.Find() })
	if criuOnce.err != nil {
		testenv.Unavailable(tb, "%v", criuOnce.err)
	}
	return criuOnce.path
}

// Option configures Start.
type Option func(*startCfg)

type startCfg struct {
	args       []string
	env        []string
	netns      string
	cloneflags uintptr
	flagsSet   bool
	dir        string
	noSetsid   bool
}

// WithArgs passes arguments to the workload.
func WithArgs(args ...string) Option { return func(c *startCfg) { c.args = append(c.args, args...) } }

// WithEnv adds KEY=VALUE entries to the workload's environment.
func WithEnv(env ...string) Option { return func(c *startCfg) { c.env = append(c.env, env...) } }

// WithNetns runs the workload (and later criu dump/restore) via `nsenter --net=path`.
func WithNetns(path string) Option { return func(c *startCfg) { c.netns = path } }

// WithNamespaces starts the workload with these clone flags (syscall.CLONE_NEWPID|...), overriding
// the workload's registered ones (workload.Namespaces); 0 starts it in the caller's namespaces.
func WithNamespaces(flags uintptr) Option {
	return func(c *startCfg) { c.cloneflags, c.flagsSet = flags, true }
}

// InCallersSession starts the workload in the test's own session instead of a new one. Use it
// only for failures that need it: whether that session's leader is visible depends on how the
// test was started (under a CI runner it is often in another pid namespace).
func InCallersSession() Option { return func(c *startCfg) { c.noSetsid = true } }

func withDir(dir string) Option { return func(c *startCfg) { c.dir = dir } }

// Proc is a running workload (started or restored).
type Proc struct {
	Pid      int
	Info     string // what the workload passed to Ready
	Dir      string // its private work dir (kept until the test ends)
	Workload string

	netns      string
	cloneflags uintptr
	cmd        *exec.Cmd
	done       chan struct{}
	killOnce   sync.Once
}

// Start builds criukit-workload (once per test process), starts workload name in a new session with
// stdio on /dev/null, and waits until it is ready. The process is killed when the test ends.
func Start(tb testing.TB, name string, opts ...Option) *Proc {
	tb.Helper()
	cfg := startCfg{}
	for _, o := range opts {
		o(&cfg)
	}
	if !slices.Contains(workload.Names(), name) {
		tb.Fatalf("harness.Start: unknown workload %q (known: %v)", name, workload.Names())
	}
	if !cfg.flagsSet {
		cfg.cloneflags = workload.Namespaces(name)
	}
	if cfg.cloneflags != 0 || cfg.netns != "" {
		testenv.Root(tb)
	}
	bin := workloadBinary(tb)
	becomeSubreaper()
	if cfg.dir == "" {
		cfg.dir = tb.TempDir()
	}
	ready := filepath.Join(cfg.dir, ".ready")
	argv := append([]string{bin, "--ready-file", ready, "--dir", cfg.dir, name}, cfg.args...)
	if cfg.netns != "" {
		argv = append([]string{"nsenter", "--net=" + cfg.netns, "--"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), cfg.env...)
	if cfg.cloneflags != 0 {
		cmd.Env = append(cmd.Env, workload.EnvInNS+"=1")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: !cfg.noSetsid, Cloneflags: cfg.cloneflags}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("harness.Start %s: %v", name, err)
	}
	p := &Proc{Pid: cmd.Process.Pid, Dir: cfg.dir, Workload: name, netns: cfg.netns, cloneflags: cfg.cloneflags, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	tb.Cleanup(p.Kill)

	deadline := time.Now().Add(ReadyTimeout)
	for {
		if b, err := os.ReadFile(ready); err == nil {
			p.Info = string(b)
			return p
		}
		if b, err := os.ReadFile(ready + ".err"); err == nil {
			p.Kill()
			tb.Fatalf("harness.Start %s: workload failed: %s", name, b)
		}
		select {
		case <-p.done:
			if b, err := os.ReadFile(ready + ".err"); err == nil {
				tb.Fatalf("harness.Start %s: workload failed: %s", name, b)
			}
			tb.Fatalf("harness.Start %s: workload exited before it was ready (%v)", name, cmd.ProcessState)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Kill()
			tb.Fatalf("harness.Start %s: not ready after %v", name, ReadyTimeout)
		}
	}
}

// Kill kills the process group and the process itself with SIGKILL and reaps what it can. It is
// safe to call more than once (tests' cleanups call it too).
func (p *Proc) Kill() {
	p.killOnce.Do(func() {
		tree := treePids(p.Pid)
		_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
		for _, pid := range tree {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		p.reap(5 * time.Second)
		for _, pid := range tree[1:] { // orphans come to us (subreaper): reap them too
			(&Proc{Pid: pid}).reap(time.Second)
		}
	})
}

// reap waits (up to d) until the task is gone and reaped when it is our child.
func (p *Proc) reap(d time.Duration) bool {
	if p.cmd != nil {
		select {
		case <-p.done:
			return true
		case <-time.After(d):
			return false
		}
	}
	deadline := time.Now().Add(d)
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(p.Pid, &ws, unix.WNOHANG, nil)
		if wpid == p.Pid || errors.Is(err, unix.ECHILD) && !exists(p.Pid) {
			return true // reaped by us, or gone (a zombie of another parent still holds its pid)
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

func exists(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return err == nil
}

// Alive reports whether the process still runs (not a zombie).
func (p *Proc) Alive() bool { return alive(p.Pid) }

// Check sends SIGUSR1 and waits for the workload's answer in Dir/check (see workload.CheckFile).
// It fails the test unless the answer starts with "ok"; it returns the answer.
func (p *Proc) Check(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(p.Dir, workload.CheckFile)
	_ = os.Remove(path)
	if err := syscall.Kill(p.Pid, syscall.SIGUSR1); err != nil {
		tb.Fatalf("check %s (pid %d): %v", p.Workload, p.Pid, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil {
			s := string(b)
			if !strings.HasPrefix(s, "ok") {
				tb.Fatalf("check %s (pid %d): %s", p.Workload, p.Pid, s)
			}
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("check %s (pid %d): no answer in %s after 10s (alive=%v)", p.Workload, p.Pid, path, p.Alive())
	return ""
}

// Dump is a directory of CRIU images made by Proc.Dump.
type Dump struct {
	Dir      string // the images (nothing else: the log is kept outside)
	Log      string // criu dump -v4 log
	Workload string // workload name (for Corpus dumps: the corpus name, e.g. "tcp6")
	Info     string // what the dumped workload passed to Ready (e.g. "port=41547")
	WorkDir  string // the dumped workload's Dir (its files must stay for a restore)

	netns       string
	cloneflags  uintptr
	restoreArgs []string
}

// Dump runs `criu dump -t Pid -D <tmp>/images -v4 -o <tmp>/dump.log --network-lock nftables` plus
// the workload's DumpArgs and extra, then waits until the dumped task is reaped (unless
// --leave-running). The log is kept outside Dir, so Dir holds nothing but CRIU's images.
func (p *Proc) Dump(tb testing.TB, extra ...string) *Dump {
	tb.Helper()
	return p.dumpTo(tb, tb.TempDir(), extra...)
}

func (p *Proc) dumpTo(tb testing.TB, base string, extra ...string) *Dump {
	tb.Helper()
	criu := Criu(tb)
	args := append(slices.Clone(DumpArgs[p.Workload]), extra...)
	if !criurun.HasArg(args, "--network-lock") && p.netns == "" && p.cloneflags&syscall.CLONE_NEWNET == 0 {
		args = append(args, "--network-lock", "skip")
	}
	dir, log := filepath.Join(base, "images"), filepath.Join(base, "dump.log")
	tree := treePids(p.Pid)
	ctx, cancel := context.WithTimeout(context.Background(), CriuTimeout)
	defer cancel()
	err := criurun.Dump(ctx, p.Pid, criurun.Opts{Criu: criu, ImagesDir: dir, LogFile: log, Netns: p.netns, Args: args})
	if err != nil {
		tb.Fatalf("dump of workload %s (pid %d): %v", p.Workload, p.Pid, err)
	}
	if !slices.Contains(args, "--leave-running") && !slices.Contains(args, "-R") {
		if !p.reap(10 * time.Second) {
			tb.Fatalf("dump of workload %s: pid %d still not gone 10s after the dump", p.Workload, p.Pid)
		}
		// Restore reuses every pid of the tree: wait until the children are gone too (the test
		// process is a child subreaper, so orphans are reaped here).
		for _, pid := range tree[1:] {
			if !(&Proc{Pid: pid}).reap(10 * time.Second) {
				tb.Fatalf("dump of workload %s: pid %d of its tree still exists 10s after the dump", p.Workload, pid)
			}
		}
		// The pid now belongs to whatever restores this dump: Kill must never signal it.
		p.killOnce.Do(func() {})
	}
	return &Dump{Dir: dir, Log: log, Workload: p.Workload, Info: p.Info, WorkDir: p.Dir, netns: p.netns, cloneflags: p.cloneflags,
		restoreArgs: RestoreArgs[p.Workload]}
}

var subreaperOnce sync.Once

// becomeSubreaper makes the test process a child subreaper (once): orphaned processes of workload
// trees and restored tasks (criu restore -d exits) become its children, so they can be reaped and
// their pids reused by later restores.
func becomeSubreaper() {
	subreaperOnce.Do(func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) })
}

// treePids lists pid and its descendants (parents first), from /proc/PID/task/TID/children.
func treePids(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", out[i]))
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", out[i], t.Name()))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil && !slices.Contains(out, c) {
					out = append(out, c)
				}
			}
		}
	}
	return out
}

// Restore runs `criu restore -d -D Dir --pidfile ...` (log in a temp dir, never in Dir) plus the
// workload's RestoreArgs and extra, and waits until the restored task is alive. The test process
// becomes a child subreaper so that it can reap the restored tree; cleanup kills it by pid/pgid.
func (d *Dump) Restore(tb testing.TB, extra ...string) *Proc {
	tb.Helper()
	return d.RestoreIn(tb, d.netns, extra...)
}

// RestoreIn is Restore into another network namespace (criu runs via nsenter --net=netns; "" is
// the test's own netns), e.g. after the images were rewritten for new addresses.
func (d *Dump) RestoreIn(tb testing.TB, netns string, extra ...string) *Proc {
	tb.Helper()
	criu := Criu(tb)
	becomeSubreaper()
	log := filepath.Join(tb.TempDir(), "restore.log")
	ctx, cancel := context.WithTimeout(context.Background(), CriuTimeout)
	defer cancel()
	args := append(slices.Clone(d.restoreArgs), extra...)
	pid, err := criurun.Restore(ctx, criurun.Opts{Criu: criu, ImagesDir: d.Dir, LogFile: log, Netns: netns, Args: args})
	if err != nil {
		tb.Fatalf("restore of %s from %s: %v", d.Workload, d.Dir, err)
	}
	p := &Proc{Pid: pid, Info: d.Info, Dir: d.WorkDir, Workload: d.Workload, netns: netns, cloneflags: d.cloneflags}
	tb.Cleanup(p.Kill)
	deadline := time.Now().Add(5 * time.Second)
	for !p.Alive() {
		if time.Now().After(deadline) {
			tb.Fatalf("restore of %s: pid %d is not alive after restore (log %s)", d.Workload, pid, log)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p
}

// workload binary, built once per test process into the process's scratch dir.
var build struct {
	sync.Once
	path string
	err  error
}

func workloadBinary(tb testing.TB) string {
	tb.Helper()
	build.Do(func() {
		dir, err := scratch()
		if err != nil {
			build.err = err
			return
		}
		root, err := moduleRoot()
		if err != nil {
			build.err = err
			return
		}
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			goBin = "go"
		}
		out := filepath.Join(dir, "criukit-workload")
		cmd := exec.Command(goBin, "build", "-o", out, "./internal/workload/criukit-workload")
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build criukit-workload: %v\n%s", err, b)
			return
		}
		build.path = out
	})
	if build.err != nil {
		tb.Fatalf("harness: %v", build.err)
	}
	return build.path
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/criukit/criukit")) {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("no criukit go.mod above %s", dir)
		}
	}
}
