package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/criukit/criukit/internal/workload"
)

// CorpusNames are the corpus dumps Corpus makes, in order. Together they cover every image kind of
// issue 2: files (regular, ghost small + chunked, pipe, fifo, unix sockets, memfd, eventfd, shmem),
// tcp and tcp6 (established loopback connection, --tcp-established), ns (pid/net/ipc/uts/mnt
// namespaces, tmpfs, SysV ipc, pty, veth) and sleep (the smallest dump).
var CorpusNames = []string{"files", "tcp", "tcp6", "ns", "sleep"}

// CorpusEnvSecret is planted in the environment of the corpus "files" dump (as
// CRIUKIT_SECRET_TOKEN=...); workload.DefaultSecret is in its argv, files, memory and queued data.
const CorpusEnvSecret = "criukit-planted-env-secret-BEEF"

// corpusSpecs maps a corpus name to its workload, arguments and extra environment.
var corpusSpecs = map[string]struct {
	workload string
	args     []string
	env      []string
}{
	"files": {"files", []string{"--secret", workload.DefaultSecret}, []string{"CRIUKIT_SECRET_TOKEN=" + CorpusEnvSecret}},
	"tcp":   {"tcp", nil, nil},
	"tcp6":  {"tcp", []string{"-6"}, nil},
	"ns":    {"ns", nil, nil},
	"sleep": {"sleep", nil, nil},
}

var corpus struct {
	sync.Mutex
	dumps  map[string]*Dump
	failed string
}

// Corpus returns one dump of every corpus workload (CorpusNames order), made once per test process
// and cached under the process's scratch dir. Dumps are shared: treat their Dir as read-only (copy
// it before editing) and do not restore them concurrently. The cache is removed by Main at exit; a
// test binary without Main leaves it until the next harness run removes dirs of dead processes.
func Corpus(tb testing.TB) []*Dump {
	tb.Helper()
	out := make([]*Dump, 0, len(CorpusNames))
	for _, n := range CorpusNames {
		out = append(out, CorpusDump(tb, n))
	}
	return out
}

// CorpusDump returns the cached corpus dump called name (one of CorpusNames), making it if needed.
// Its Workload field is the corpus name ("tcp6" for the IPv6 variant of the tcp workload).
func CorpusDump(tb testing.TB, name string) *Dump {
	tb.Helper()
	spec, ok := corpusSpecs[name]
	if !ok {
		tb.Fatalf("harness.CorpusDump: unknown corpus dump %q (known: %v)", name, CorpusNames)
	}
	Criu(tb) // skip (or fail under CI) before anything is cached
	corpus.Lock()
	defer corpus.Unlock()
	if corpus.failed != "" {
		tb.Fatalf("harness: corpus dump failed earlier in this process: %s", corpus.failed)
	}
	if d := corpus.dumps[name]; d != nil {
		return d
	}
	base, err := scratch()
	if err != nil {
		tb.Fatalf("harness: %v", err)
	}
	root := filepath.Join(base, "corpus", name)
	if err := os.RemoveAll(root); err != nil {
		tb.Fatalf("harness: %v", err)
	}
	made := false
	defer func() {
		if !made {
			corpus.failed = fmt.Sprintf("%s (see the log of the first failing test)", name)
		}
	}()
	p := Start(tb, spec.workload, WithArgs(spec.args...), WithEnv(spec.env...), withDir(filepath.Join(root, "work")))
	d := p.dumpTo(tb, root)
	d.Workload = name
	if corpus.dumps == nil {
		corpus.dumps = map[string]*Dump{}
	}
	corpus.dumps[name] = d
	made = true
	return d
}

// Main is an optional TestMain helper: it runs the tests, then removes this process's scratch dir
// (workload binary and corpus cache) and exits.
//
//	func TestMain(m *testing.M) { harness.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	scratchMu.Lock()
	if scratchDir != "" && os.Getenv("CRIUKIT_KEEP_SCRATCH") == "" {
		_ = os.RemoveAll(scratchDir)
	} else if scratchDir != "" {
		fmt.Fprintf(os.Stderr, "harness: CRIUKIT_KEEP_SCRATCH is set: kept %s\n", scratchDir)
	}
	scratchMu.Unlock()
	os.Exit(code)
}

var (
	scratchMu  sync.Mutex
	scratchDir string
)

const scratchPrefix = "criukit-harness-"

// scratch returns this process's scratch dir, creating it on first use. The first use also removes
// scratch dirs of test processes that no longer exist.
func scratch() (string, error) {
	scratchMu.Lock()
	defer scratchMu.Unlock()
	if scratchDir != "" {
		return scratchDir, nil
	}
	gcScratch()
	d, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", scratchPrefix, os.Getpid()))
	if err != nil {
		return "", err
	}
	scratchDir = d
	return d, nil
}

func gcScratch() {
	ents, _ := os.ReadDir(os.TempDir())
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), scratchPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		if pid, err := strconv.Atoi(pidStr); err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat("/proc/" + pidStr); err == nil {
			continue // owner still running
		}
		_ = os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
	}
}

var netnsSeq atomic.Int64

// NewNetns creates a named network namespace with a unique name (ckh<pid>n<seq>), brings its
// loopback up, and deletes it when the test ends. It returns the path (/run/netns/NAME) for
// WithNetns or nsenter --net=.
func NewNetns(tb testing.TB) string {
	tb.Helper()
	Criu(tb) // root
	name := fmt.Sprintf("ckh%dn%d", os.Getpid(), netnsSeq.Add(1))
	if b, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		tb.Fatalf("ip netns add %s: %v: %s", name, err, b)
	}
	tb.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	if b, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		tb.Fatalf("ip -n %s link set lo up: %v: %s", name, err, b)
	}
	return "/run/netns/" + name
}
