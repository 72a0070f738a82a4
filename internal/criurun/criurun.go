package criurun

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Minimum CRIU version: 4.2 is the first that dumps AF_INET sockets on Linux >= 6.16.
const (
	MinMajor = 4
	MinMinor = 2
)

// EnvCriu names an environment variable that, when set, is the only CRIU binary Find considers.
const EnvCriu = "CRIUKIT_CRIU"

var (
	ErrNotFound = errors.New("criu not found")
	ErrTooOld   = errors.New("criu is too old (need >= 4.2)")
	ErrFailed   = errors.New("criu failed")
)

// Candidates lists, in order, where Find looks when EnvCriu is unset ("criu" means $PATH).
var Candidates = []string{"/usr/local/sbin/criu", "criu"}

// Find returns the path and version of the first CRIU >= 4.2: $CRIUKIT_CRIU if set (nothing else
// then), else /usr/local/sbin/criu, else criu on $PATH. Older binaries (e.g. Debian's 3.17 in
// /usr/sbin, which fails on recent kernels) are skipped; if only old ones exist the error wraps ErrTooOld.
func Find() (path, version string, err error) {
	cands := Candidates
	if env := os.Getenv(EnvCriu); env != "" {
		cands = []string{env}
	}
	var tooOld []string
	for _, c := range cands {
		p := c
		if !strings.Contains(c, "/") {
			lp, lerr := exec.LookPath(c)
			if lerr != nil {
				continue
			}
			p = lp
		}
		if _, serr := os.Stat(p); serr != nil {
			continue
		}
		v, verr := Version(p)
		if verr != nil {
			tooOld = append(tooOld, fmt.Sprintf("%s (%v)", p, verr))
			continue
		}
		if !versionOK(v) {
			tooOld = append(tooOld, p+" is "+v)
			continue
		}
		return p, v, nil
	}
	if len(tooOld) > 0 {
		return "", "", fmt.Errorf("%w: %s; install a newer one (scripts/install-criu) or set %s", ErrTooOld, strings.Join(tooOld, ", "), EnvCriu)
	}
	return "", "", fmt.Errorf("%w (looked at %s); install it (scripts/install-criu) or set %s", ErrNotFound, strings.Join(cands, ", "), EnvCriu)
}

// Version runs `criu --version` and returns the "Version:" value (e.g. "4.2.1").
func Version(criu string) (string, error) {
	out, err := exec.Command(criu, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s --version: %v", criu, err)
	}
	return parseVersion(out)
}

func parseVersion(out []byte) (string, error) {
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Version:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no \"Version:\" line in %q", strings.TrimSpace(string(out)))
}

func versionOK(v string) bool {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	maj, err1 := strconv.Atoi(parts[0])
	min, err2 := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return false
	}
	return maj > MinMajor || maj == MinMajor && min >= MinMinor
}

// Opts configures one CRIU run.
type Opts struct {
	Criu      string // binary; "" runs Find
	ImagesDir string // -D (created for dumps)
	LogFile   string // -o; "" means ImagesDir/dump.log or ImagesDir/restore.log
	Verbosity int    // -v; 0 means 4
	Netns     string // if set, run criu through `nsenter --net=Netns`
	// Args are extra arguments. Dumps get --network-lock nftables unless Args has a --network-lock
	// (there are no iptables binaries on many modern systems). Note that with nftables CRIU leaves
	// its lock table (inet CRIU-<run id>) in the dumped tasks' netns until the images are restored;
	// pass "--network-lock", "skip" for dumps that will not be restored and hold no TCP connections
	// to outside peers. Restore needs nothing: CRIU 4.2 reuses the dump's method (from inventory.img)
	// and removes the table.
	Args []string
	Env  []string // extra environment (KEY=VALUE)
}

// Error is a failed CRIU run.
type Error struct {
	Op     string   // "dump", "restore", "check"
	Log    string   // log file path ("" if none)
	Lines  []string // last Error lines of the log
	Output string   // criu's own stdout+stderr (trimmed), useful when the log is empty
	Err    error    // the exec error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "criu %s failed: %v", e.Op, e.Err)
	for _, l := range e.Lines {
		b.WriteString("\n  " + l)
	}
	if len(e.Lines) == 0 && e.Output != "" {
		b.WriteString("\n  " + strings.ReplaceAll(e.Output, "\n", "\n  "))
	}
	if e.Log != "" {
		fmt.Fprintf(&b, "\n  (full log: %s)", e.Log)
	}
	return b.String()
}

func (e *Error) Unwrap() []error { return []error{ErrFailed, e.Err} }

// harmless lists log error lines that every run prints and that mean nothing.
var harmless = []string{"Can't setup RLIMIT_NOFILE for self"}

// IsErrorLine reports whether a CRIU log line is an error that matters: "Error (" lines and BUG
// reports ("BUG at criu/mem.c:..."), not the harmless RLIMIT_NOFILE line. The one definition for
// criukit (knownissues uses it too).
func IsErrorLine(line string) bool {
	if !strings.Contains(line, "Error (") && !strings.Contains(line, "BUG at ") {
		return false
	}
	for _, h := range harmless {
		if strings.Contains(line, h) {
			return false
		}
	}
	return true
}

// LastErrors returns the last n error lines of a CRIU log (n <= 0 means all), without the
// harmless RLIMIT_NOFILE line. A missing or unreadable log gives nil.
func LastErrors(logPath string, n int) []string {
	f, err := os.Open(logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	return lastErrors(bufio.NewReader(f), n)
}

func lastErrors(r *bufio.Reader, n int) []string {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		if !IsErrorLine(l) {
			continue
		}
		out = append(out, strings.TrimSpace(l))
		if n > 0 && len(out) > n {
			out = out[1:]
		}
	}
	return out
}

func (o *Opts) command(ctx context.Context, op string, args []string) (*exec.Cmd, error) {
	criu := o.Criu
	if criu == "" {
		p, _, err := Find()
		if err != nil {
			return nil, err
		}
		criu = p
	}
	v := o.Verbosity
	if v == 0 {
		v = 4
	}
	full := append([]string{op}, args...)
	if o.ImagesDir != "" {
		full = append(full, "-D", o.ImagesDir)
	}
	if o.LogFile != "" {
		full = append(full, "-v"+strconv.Itoa(v), "-o", o.LogFile)
	}
	if op == "dump" && !HasArg(o.Args, "--network-lock") {
		full = append(full, "--network-lock", "nftables")
	}
	full = append(full, o.Args...)
	var cmd *exec.Cmd
	if o.Netns != "" {
		cmd = exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + o.Netns, "--", criu}, full...)...)
	} else {
		cmd = exec.CommandContext(ctx, criu, full...)
	}
	cmd.Env = append(os.Environ(), o.Env...)
	return cmd, nil
}

// Resolved returns o with an absolute images dir and log file, as criu will use them: an empty log
// is ImagesDir/defLog, a relative one is relative to the work dir (-W in Args, else the images dir).
func (o Opts) Resolved(defLog string) (Opts, error) {
	err := o.prepare(defLog)
	return o, err
}

func (o *Opts) prepare(defLog string) error {
	if o.ImagesDir == "" {
		return fmt.Errorf("criurun: no images directory given")
	}
	abs, err := filepath.Abs(o.ImagesDir)
	if err != nil {
		return err
	}
	o.ImagesDir = abs
	if o.LogFile == "" {
		o.LogFile = filepath.Join(abs, defLog)
	} else if !filepath.IsAbs(o.LogFile) {
		// as CRIU reads -o: relative to the work dir (-W), which defaults to the images dir
		wd := abs
		if p, perr := ParseArgs(o.Args, map[string]bool{"-W": true, "--work-dir": true}); perr == nil {
			w := p.Own["--work-dir"]
			if v, ok := p.Own["-W"]; ok {
				w = v
			}
			if w != "" {
				if wd, err = filepath.Abs(w); err != nil {
					return err
				}
			}
		}
		o.LogFile = filepath.Join(wd, o.LogFile)
	}
	return nil
}

func run(cmd *exec.Cmd, op, log string) error {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return &Error{Op: op, Log: log, Lines: LastErrors(log, 5), Output: strings.TrimSpace(out.String()), Err: err}
	}
	return nil
}

// Dump runs `criu dump -t pid -D ImagesDir -v4 -o LogFile --network-lock nftables Args...`. Without
// --leave-running in Args the task is killed by CRIU; reaping it (if it is your child) is up to you.
func Dump(ctx context.Context, pid int, o Opts) error {
	if err := o.prepare("dump.log"); err != nil {
		return err
	}
	if err := os.MkdirAll(o.ImagesDir, 0o755); err != nil {
		return err
	}
	cmd, err := o.command(ctx, "dump", []string{"-t", strconv.Itoa(pid)})
	if err != nil {
		return err
	}
	return run(cmd, "dump", o.LogFile)
}

// Restore runs `criu restore -d -D ImagesDir -v4 -o LogFile --pidfile TMP Args...` and returns the pid of the restored root task (which keeps running, detached).
func Restore(ctx context.Context, o Opts) (int, error) {
	if err := o.prepare("restore.log"); err != nil {
		return 0, err
	}
	tmp, err := os.MkdirTemp("", "criukit-restore-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	pidfile := filepath.Join(tmp, "pid")
	cmd, err := o.command(ctx, "restore", []string{"-d", "--pidfile", pidfile})
	if err != nil {
		return 0, err
	}
	if err := run(cmd, "restore", o.LogFile); err != nil {
		return 0, err
	}
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return 0, &Error{Op: "restore", Log: o.LogFile, Lines: LastErrors(o.LogFile, 5), Err: fmt.Errorf("no pid file: %w", err)}
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, &Error{Op: "restore", Log: o.LogFile, Err: fmt.Errorf("bad pid file content %q", b)}
	}
	return pid, nil
}

// Check runs `criu check ARGS...` (criu "" runs Find) and returns its output.
func Check(ctx context.Context, criu string, args ...string) (string, error) {
	o := Opts{Criu: criu}
	cmd, err := o.command(ctx, "check", args)
	if err != nil {
		return "", err
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), &Error{Op: "check", Output: strings.TrimSpace(string(out)), Err: err}
	}
	return string(out), nil
}
