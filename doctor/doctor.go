package doctor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"

	"github.com/criukit/criukit/internal/criurun"
	"golang.org/x/sys/unix"
)

// ErrNoProcess is returned when --pid names no process.
var ErrNoProcess = errors.New("no such process")

// Severity of a finding.
type Severity string

const (
	SevError   Severity = "error"   // the dump (or restore) will fail
	SevWarning Severity = "warning" // it may fail, or needs an option / care
	SevInfo    Severity = "info"    // worth knowing, nothing fails
)

func (s Severity) rank() int {
	switch s {
	case SevError:
		return 0
	case SevWarning:
		return 1
	}
	return 2
}

// Finding is one thing that will (or may) go wrong, with where and how to fix it.
type Finding struct {
	ID       string   `json:"id"` // stable id; equal to a knownissues rule id when CRIU's log has a matching rule
	Severity Severity `json:"severity"`
	What     string   `json:"what"`
	Where    string   `json:"where,omitempty"` // "pid 12 fd 5 (anon_inode:[userfaultfd])"
	Pid      int      `json:"pid,omitempty"`
	FD       int      `json:"fd,omitempty"` // -1 when not an fd
	Path     string   `json:"path,omitempty"`
	Why      string   `json:"why,omitempty"`
	Fix      string   `json:"fix"`
}

// Feature is one kernel/CRIU capability and whether it is available.
type Feature struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Source string `json:"source"` // where the answer comes from: "criu check --feature X", "/proc/config.gz", "probe"
	Detail string `json:"detail,omitempty"`
	Needed string `json:"needed_for,omitempty"`
}

// Report is doctor's result.
type Report struct {
	Kernel      string    `json:"kernel"` // uname release
	KernelVer   string    `json:"kernel_version"`
	Arch        string    `json:"arch"`
	Criu        string    `json:"criu,omitempty"`
	CriuVersion string    `json:"criu_version,omitempty"`
	CheckAll    string    `json:"criu_check_all,omitempty"` // output of `criu check --all`
	Features    []Feature `json:"features"`
	Pid         int       `json:"pid,omitempty"`
	Pids        []int     `json:"pids,omitempty"`
	Findings    []Finding `json:"findings"`
}

// Errors returns the number of error findings.
func (r *Report) Errors() int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == SevError {
			n++
		}
	}
	return n
}

// Options configures Run.
type Options struct {
	Pid  int    // 0: only the system checks
	Criu string // "" = criurun.Find, falling back to any criu on PATH to report its version
	// DumpArgs are the criu dump options the user intends to use; doctor takes --tcp-established,
	// --tcp-close, --ghost-limit, --shell-job, --ext-unix-sk, --external and
	// --enable-external-masters into account.
	DumpArgs   []string
	GhostLimit int64 // < 0 or 0: from DumpArgs, else CRIU's default 1 MiB
	// NoCriu skips running criu (check --all / --feature): only /proc, kernel config and probes.
	NoCriu bool
}

// hasArg reports whether args hold one of names (criurun.HasArg: "--x", "--x=v", "-xV").
func hasArg(args []string, names ...string) bool {
	for _, n := range names {
		if criurun.HasArg(args, n) {
			return true
		}
	}
	return false
}

func argValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// Run examines the system and, with Options.Pid, the process tree rooted there.
func Run(ctx context.Context, o Options) (*Report, error) {
	r := &Report{}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		r.Kernel, r.KernelVer, r.Arch = unix.ByteSliceToString(uts.Release[:]), unix.ByteSliceToString(uts.Version[:]), unix.ByteSliceToString(uts.Machine[:])
	}
	if o.Pid > 0 {
		if _, err := os.Stat("/proc/" + strconv.Itoa(o.Pid)); err != nil {
			return nil, fmt.Errorf("%w: pid %d", ErrNoProcess, o.Pid)
		}
	}
	r.criu(ctx, o)
	r.kernelFeatures(ctx, o)
	r.cowPatches(o)
	if o.Pid > 0 {
		if err := r.tree(o); err != nil {
			return r, err
		}
	}
	sort.SliceStable(r.Findings, func(i, j int) bool { return r.Findings[i].Severity.rank() < r.Findings[j].Severity.rank() })
	return r, nil
}

func (r *Report) add(f Finding) { r.Findings = append(r.Findings, f) }

// criu locates criu and checks its version against the kernel.
func (r *Report) criu(ctx context.Context, o Options) {
	path, ver := o.Criu, ""
	if path != "" {
		v, err := criurun.Version(path)
		if err != nil {
			r.add(Finding{ID: "criu-missing", Severity: SevError, What: "criu does not run: " + err.Error(), Where: path,
				Fix: "install CRIU >= 4.2 (scripts/install-criu) or point CRIUKIT_CRIU at it"})
			return
		}
		ver = v
	} else {
		p, v, err := criurun.Find()
		switch {
		case err == nil:
			path, ver = p, v
		case errors.Is(err, criurun.ErrTooOld):
			// Report the old one that would be used.
			for _, c := range []string{"criu", "/usr/sbin/criu", "/usr/local/sbin/criu"} {
				if lp, lerr := exec.LookPath(c); lerr == nil {
					if v, verr := criurun.Version(lp); verr == nil {
						path, ver = lp, v
						break
					}
				}
			}
		default:
			r.add(Finding{ID: "criu-missing", Severity: SevError, What: "no criu found", Why: err.Error(),
				Fix: "install CRIU >= 4.2 (scripts/install-criu) or set CRIUKIT_CRIU"})
			return
		}
	}
	r.Criu, r.CriuVersion = path, ver
	kmaj, kmin := kernelVersion(r.Kernel)
	cmaj, cmin := parseMajMin(ver)
	if cmaj < 4 || cmaj == 4 && cmin < 2 {
		sev := SevWarning
		what := fmt.Sprintf("CRIU %s is older than 4.2", ver)
		fix := "use CRIU >= 4.2"
		if kmaj > 6 || kmaj == 6 && kmin >= 16 {
			sev = SevError
			what = fmt.Sprintf("CRIU %s < 4.2 on Linux %s (>= 6.16): it cannot dump any AF_INET/AF_INET6 socket (\"Can't get 1:16 opt\")", ver, r.Kernel)
			fix = "use CRIU >= 4.2 (fixed by commit 4b7398595); /usr/local/sbin/criu if installed by scripts/install-criu"
		}
		if cmaj < 4 {
			what += "; CRIU 3.x also fails on this kernel's vDSO layout before dumping anything"
		}
		r.add(Finding{ID: "old-criu-inet-sockopt", Severity: sev, What: what, Where: path, Fix: fix})
	}
}

func parseMajMin(v string) (int, int) {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return 0, 0
	}
	a, _ := strconv.Atoi(parts[0])
	b, _ := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	return a, b
}

func kernelVersion(release string) (int, int) {
	rel, _, _ := strings.Cut(release, "-")
	return parseMajMin(rel)
}
