package workload

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Environment variables read by Run (the entry binaries also accept them as flags).
const (
	EnvReadyFile = "CRIUKIT_WORKLOAD_READY" // file Ready writes the info line to (temp + rename)
	EnvDir       = "CRIUKIT_WORKLOAD_DIR"   // private work directory (created if missing)
)

// CheckFile is the name, inside Ctx.Dir, of the file a workload writes when it receives SIGUSR1:
// "ok <detail>" when its check passed (the default check only proves the process is alive), or
// "error: <detail>". Writers use temp + rename, so a reader never sees a partial file.
const CheckFile = "check"

// ErrUnknown is returned by Run for a name no workload was registered under.
var ErrUnknown = errors.New("unknown workload")

// Ctx is what a workload function gets: its arguments and a private work directory.
type Ctx struct {
	Args []string
	Dir  string // private work dir

	readyFile string
	mu        sync.Mutex
	ready     bool
	keep      []any
	check     func() (string, error)
}

// Ready tells the starter that the workload is set up. info is free text (e.g. "port=1234").
func (c *Ctx) Ready(info string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ready {
		return nil
	}
	c.ready = true
	if c.readyFile == "" {
		return nil
	}
	return writeAtomic(c.readyFile, []byte(info))
}

// Keep holds references to objects (files, sockets, mappings) for the life of the process, so the
// garbage collector never finalizes (closes) them while the workload waits to be dumped.
func (c *Ctx) Keep(objs ...any) {
	c.mu.Lock()
	c.keep = append(c.keep, objs...)
	c.mu.Unlock()
}

// OnCheck sets the function run on SIGUSR1; its result goes to Dir/CheckFile. Without it the check
// answers "ok alive". Use it to prove that restored objects still work (e.g. a TCP connection).
func (c *Ctx) OnCheck(fn func() (string, error)) {
	c.mu.Lock()
	c.check = fn
	c.mu.Unlock()
}

func (c *Ctx) runCheck() {
	c.mu.Lock()
	fn := c.check
	c.mu.Unlock()
	msg, err := "alive", error(nil)
	if fn != nil {
		msg, err = fn()
	}
	out := "ok " + msg
	if err != nil {
		out = "error: " + err.Error()
	}
	_ = writeAtomic(filepath.Join(c.Dir, CheckFile), []byte(out))
}

type entry struct {
	fn         func(c *Ctx) error
	cloneflags uintptr
}

var (
	regMu    sync.Mutex
	registry = map[string]entry{}
)

// Register adds a workload; call it from init() in a file of package workload.
func Register(name string, fn func(c *Ctx) error) {
	RegisterNS(name, 0, fn)
}

// RegisterNS adds a workload that must start in new namespaces: cloneflags (CLONE_NEWPID, ...) are
// applied by starters (harness.Start, and Run when it is not yet inside them, see Namespaces).
func RegisterNS(name string, cloneflags uintptr, fn func(c *Ctx) error) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[name]; dup {
		panic("workload: duplicate registration of " + name)
	}
	registry[name] = entry{fn: fn, cloneflags: cloneflags}
}

// Namespaces returns the clone flags a workload must be started with (0 for most workloads).
func Namespaces(name string) uintptr {
	regMu.Lock()
	defer regMu.Unlock()
	return registry[name].cloneflags
}

// Names lists the registered workloads, sorted.
func Names() []string {
	regMu.Lock()
	defer regMu.Unlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Config says where Run reports readiness and which work directory the workload uses.
type Config struct {
	// ReadyFile is where Ready writes its info (temp + rename). ReadyFile+".pid" gets the workload's
	// pid first (for ns workloads started by Run: the host pid of the namespace init), and on a setup
	// error ReadyFile+".err" gets the error text.
	ReadyFile string
	Dir       string // private work dir; "" makes a new temp dir
}

// Run runs a workload in this process with the Config taken from the environment (EnvReadyFile,
// EnvDir). It returns only on a setup error; once ready the workload waits until it is killed.
func Run(name string, args []string) error {
	return RunConfig(name, args, Config{ReadyFile: os.Getenv(EnvReadyFile), Dir: os.Getenv(EnvDir)})
}

// RunConfig is Run with an explicit Config.
func RunConfig(name string, args []string, cfg Config) error {
	regMu.Lock()
	e, ok := registry[name]
	regMu.Unlock()
	if !ok {
		return fmt.Errorf("%w %q (known: %s)", ErrUnknown, name, strings.Join(Names(), ", "))
	}
	err := runEntry(name, e, args, cfg)
	if err != nil && cfg.ReadyFile != "" {
		_ = writeAtomic(cfg.ReadyFile+".err", []byte(err.Error()))
	}
	return err
}

// closeInheritedFDs is off only in this package's in-process tests.
var closeInheritedFDs = true

func runEntry(name string, e entry, args []string, cfg Config) error {
	if closeInheritedFDs {
		closeInherited()
	}
	if child := os.Getenv(envChild); child != "" {
		// A helper process started by Ctx.StartChild: run the child workload instead.
		regMu.Lock()
		ce, ok := registry[child]
		regMu.Unlock()
		if !ok {
			return fmt.Errorf("%w %q (child)", ErrUnknown, child)
		}
		name, e, args = child, ce, nil
		cfg.ReadyFile = os.Getenv(envChildReady)
		os.Unsetenv(envChild)
		os.Unsetenv(envChildReady)
	}
	if e.cloneflags != 0 && os.Getenv(envInNS) == "" {
		return runInNamespaces(name, e.cloneflags, args, cfg)
	}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "criukit-wl-"+name+"-")
		if err != nil {
			return err
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	if cfg.ReadyFile != "" && os.Getpid() != 1 {
		// The pid, for starters that cannot know it (setsid may fork). Written before the ready file.
		if err := writeAtomic(cfg.ReadyFile+".pid", []byte(strconv.Itoa(os.Getpid()))); err != nil {
			return err
		}
	}
	c := &Ctx{Args: args, Dir: dir, readyFile: cfg.ReadyFile}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	if err := e.fn(c); err != nil {
		return fmt.Errorf("workload %s: %w", name, err)
	}
	if err := c.Ready(""); err != nil {
		return fmt.Errorf("workload %s: report ready: %w", name, err)
	}
	for range sig {
		c.runCheck()
		runtime.KeepAlive(c)
	}
	return nil
}

// Idle blocks forever without a busy loop (for helper goroutines or child processes).
func Idle() {
	for {
		time.Sleep(time.Hour)
	}
}

func writeAtomic(path string, data []byte) error {
	tmp := fmt.Sprintf("%s.tmp%d", path, os.Getpid())
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// closeInherited closes the fds > 2 this process inherited from its starter (fds the Go runtime and
// this package open are close-on-exec, so an fd without FD_CLOEXEC came through exec). Such fds
// (a test runner's pipes, a parent's /dev/null) would otherwise end up in every dump.
func closeInherited() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil && fl&unix.FD_CLOEXEC == 0 {
			_ = unix.Close(fd)
		}
	}
}
