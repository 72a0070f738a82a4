package clone

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/netrw"
	"github.com/criukit/criukit/netrw/addrmap"
)

// Sentinel errors.
var (
	ErrConflicts = errors.New("images conflict between copies")
	ErrPool      = errors.New("ip pool too small")
	ErrRestore   = errors.New("restore of a copy failed")
)

// Options of Clone.
type Options struct {
	Copies      int
	Pool        netip.Prefix // addresses for the copies (optional: without it copies keep the dumped addresses)
	Out         string       // directory for the per-copy image dirs and logs (must not exist)
	NetnsPrefix string       // named netns of copy i is <NetnsPrefix><i> (default "criukit-clone-<pid>-")
	Criu        string       // criu binary (default: criurun.Find)
	Overlay     bool         // give each copy an overlay of / as its root (writes go to <Out>/copy-i.root/upper)
	Timeout     time.Duration
}

// Copy is one restored copy.
type Copy struct {
	Index    int      `json:"index"`
	Dir      string   `json:"dir"`
	Netns    string   `json:"netns"` // /run/netns/<name>
	Addrs    []string `json:"addrs,omitempty"`
	InitPid  int      `json:"init_pid"` // unshare process (parent of the pid namespace's init)
	CriuPid  int      `json:"criu_pid"` // criu: pid 1 of the copy's pid namespace, parent of the tree
	RootPid  int      `json:"root_pid"` // restored root task (host pid)
	Healthy  bool     `json:"healthy"`
	Detail   string   `json:"detail"`
	Log      string   `json:"log"`
	Upper    string   `json:"upper,omitempty"` // --rootfs-overlay: where the copy's file changes go
	cmd      *exec.Cmd
	exited   chan error
	netnsNam string
}

// Result of Clone.
type Result struct {
	Findings []Finding `json:"lint"`
	Copies   []*Copy   `json:"copies"`
}

// Stop kills the copy (its whole pid namespace) and deletes its netns.
func (c *Copy) Stop() {
	if c.CriuPid > 0 {
		syscall.Kill(c.CriuPid, syscall.SIGKILL)
	}
	if c.cmd != nil && c.exited != nil {
		c.cmd.Process.Kill()
		select {
		case <-c.exited:
		case <-time.After(5 * time.Second):
		}
		c.exited = nil
	}
	if c.netnsNam != "" {
		exec.Command("ip", "netns", "del", c.netnsNam).Run()
	}
}

func children(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// srcAddrs returns the distinct specific source addresses of the dump's inet sockets.
func srcAddrs(dir string) ([]netip.Addr, error) {
	d, err := netrw.Load(dir)
	if err != nil {
		return nil, err
	}
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, s := range d.Sockets {
		a := s.Src.Addr().Unmap()
		if a.IsUnspecified() || a.IsLoopback() || seen[a] {
			continue
		}
		seen[a] = true
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out, nil
}

// Clone lints dir, then prepares and restores opts.Copies copies. On an error the copies already
// started are stopped. The caller stops the copies (Copy.Stop) when done with them.
func Clone(ctx context.Context, dir string, o Options) (*Result, error) {
	res := &Result{}
	f, err := Lint(dir)
	if err != nil {
		return nil, err
	}
	if o.Overlay {
		for i := range f {
			if f[i].What == "path-bound unix socket" || f[i].What == "ghost files" || f[i].What == "file remaps" || f[i].What == "regular file open for writing" {
				f[i].Level = Info
				f[i].Detail += " -- handled: each copy has its own overlay root"
			}
		}
	}
	res.Findings = f
	var refused []string
	for _, x := range f {
		if x.Level == Refuse {
			refused = append(refused, x.What+": "+x.Detail)
		}
	}
	if len(refused) > 0 {
		return res, fmt.Errorf("%w: %s", ErrConflicts, strings.Join(refused, "; "))
	}
	if o.Copies < 1 {
		return res, fmt.Errorf("--copies must be at least 1")
	}
	if o.Criu == "" {
		if o.Criu, _, err = criurun.Find(); err != nil {
			return res, err
		}
	}
	if o.NetnsPrefix == "" {
		o.NetnsPrefix = fmt.Sprintf("criukit-clone-%d-", os.Getpid())
	}
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	old, err := srcAddrs(dir)
	if err != nil {
		return res, err
	}
	if o.Pool.IsValid() && len(old) > 0 {
		for _, a := range old {
			if a.Is4() != o.Pool.Addr().Is4() {
				return res, fmt.Errorf("%w: the dump uses %s but the pool %s is another family", ErrPool, a, o.Pool)
			}
		}
		need := uint64(o.Copies*len(old)) + 1
		if bits := o.Pool.Addr().BitLen() - o.Pool.Bits(); bits < 63 && uint64(1)<<bits <= need {
			return res, fmt.Errorf("%w: %d copies x %d addresses need %d addresses, %s has %d", ErrPool, o.Copies, len(old), need, o.Pool, uint64(1)<<bits)
		}
	}
	if o.Out, err = filepath.Abs(o.Out); err != nil {
		return res, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return res, err
	}
	if _, err := os.Lstat(o.Out); err == nil {
		return res, fmt.Errorf("output %s exists: choose a new directory", o.Out)
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return res, err
	}
	ok := false
	defer func() {
		if !ok {
			for _, c := range res.Copies {
				c.Stop()
			}
		}
	}()
	next := o.Pool.Masked().Addr().Next()
	for i := 1; i <= o.Copies; i++ {
		c := &Copy{Index: i, Dir: filepath.Join(o.Out, fmt.Sprintf("copy-%d", i)), Log: filepath.Join(o.Out, fmt.Sprintf("copy-%d.restore.log", i))}
		res.Copies = append(res.Copies, c)
		addrs := old
		if o.Pool.IsValid() && len(old) > 0 {
			m := &addrmap.Map{}
			var present []netip.Prefix
			addrs = nil
			for _, a := range old {
				n := next
				next = next.Next()
				if err := m.Add(a.String() + "=" + n.String()); err != nil {
					return res, err
				}
				present = append(present, netip.PrefixFrom(n, n.BitLen()))
				addrs = append(addrs, n)
			}
			if _, err := netrw.RewriteContext(ctx, dir, netrw.RewriteOptions{Map: m, Present: present, Output: netrw.Output{Dir: c.Dir}}); err != nil {
				return res, fmt.Errorf("copy %d: %w", i, err)
			}
		} else if err := netrw.CopyDir(dir, c.Dir); err != nil {
			return res, fmt.Errorf("copy %d: %w", i, err)
		}
		for _, a := range addrs {
			c.Addrs = append(c.Addrs, a.String())
		}
		c.netnsNam = fmt.Sprintf("%s%d", o.NetnsPrefix, i)
		c.Netns = "/run/netns/" + c.netnsNam
		if err := makeNetns(c.netnsNam, addrs); err != nil {
			c.netnsNam = ""
			return res, fmt.Errorf("copy %d: %w", i, err)
		}
		if err := restoreCopy(ctx, c, o); err != nil {
			return res, fmt.Errorf("copy %d: %w", i, err)
		}
	}
	for _, c := range res.Copies {
		health(c, dir)
	}
	if err := saveState(o.Out, res.Copies); err != nil {
		return res, err
	}
	ok = true
	return res, nil
}

func makeNetns(name string, addrs []netip.Addr) error {
	run := func(args ...string) error {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := run("netns", "add", name); err != nil {
		return err
	}
	if err := run("-n", name, "link", "set", "lo", "up"); err != nil {
		return err
	}
	for _, a := range addrs {
		args := []string{"-n", name, "addr", "add", netip.PrefixFrom(a, a.BitLen()).String(), "dev", "lo"}
		if a.Is6() {
			args = append(args, "nodad")
		}
		if err := run(args...); err != nil {
			return err
		}
	}
	return nil
}

// restoreCopy runs criu restore (not detached) as pid 1 of a new pid+mount namespace entered into
// the copy's netns: criu stays the parent and reaper of the restored tree, so the copy lives as
// long as that criu process. Success is read from the log.
func restoreCopy(ctx context.Context, c *Copy, o Options) error {
	restore := []string{o.Criu, "restore", "-D", c.Dir, "-v4", "-o", c.Log, "--tcp-established"}
	var cmd *exec.Cmd
	if !o.Overlay {
		cmd = exec.Command("unshare", append([]string{"--pid", "--mount", "--fork", "--mount-proc", "--propagation", "private",
			"nsenter", "--net=" + c.Netns, "--"}, restore...)...)
	} else {
		// In the copy's private mount namespace: an overlay of / (upper and work dirs in Out), with
		// /proc of the new pid namespace, /dev and /sys bound in and Out bound at its own path so
		// that images and logs are the real files; then criu runs chrooted into the overlay.
		root := strings.TrimSuffix(c.Dir, "/") + ".root"
		c.Upper = filepath.Join(root, "upper")
		merged := filepath.Join(root, "merged")
		for _, d := range []string{c.Upper, filepath.Join(root, "work"), merged} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		script := fmt.Sprintf("set -e; mount -t overlay criukit-clone -o lowerdir=/,upperdir=%s,workdir=%s %s; "+
			"mount -t proc proc %s/proc; mount --rbind /dev %s/dev; mount --rbind /sys %s/sys; mount --bind %s %s%s; "+
			"exec nsenter --net=%s -- chroot %s %s",
			shq(c.Upper), shq(filepath.Join(root, "work")), shq(merged), shq(merged), shq(merged), shq(merged),
			shq(o.Out), shq(merged), shq(o.Out), shq(c.Netns), shq(merged), shqAll(restore))
		cmd = exec.Command("unshare", "--pid", "--mount", "--fork", "--propagation", "private", "sh", "-c", script)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	errPath := strings.TrimSuffix(c.Log, ".restore.log") + ".stderr"
	if ef, err := os.Create(errPath); err == nil {
		cmd.Stdout, cmd.Stderr = ef, ef
		defer ef.Close()
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%w: start unshare/criu: %v", ErrRestore, err)
	}
	c.cmd = cmd
	c.InitPid = cmd.Process.Pid
	exited := make(chan error, 1)
	c.exited = exited
	go func() { exited <- cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(o.Timeout)
	for {
		if done, _ := logSays(c.Log, "Restore finished successfully"); done {
			break
		}
		select {
		case err := <-exited:
			c.exited = nil
			msg := strings.Join(criurun.LastErrors(c.Log, 3), " | ")
			if b, _ := os.ReadFile(errPath); len(b) > 0 {
				msg += " | " + strings.TrimSpace(string(b))
			}
			return fmt.Errorf("%w: criu exited (%v): %s (log %s)", ErrRestore, err, msg, c.Log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: no success in %s after %v", ErrRestore, c.Log, o.Timeout)
		}
	}
	for t := 0; t < 100 && (c.CriuPid == 0 || c.RootPid == 0); t++ {
		if ch := children(c.InitPid); len(ch) > 0 {
			c.CriuPid = ch[0]
			if r := children(c.CriuPid); len(r) > 0 {
				c.RootPid = r[0]
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// shq quotes s for sh.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func shqAll(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shq(a)
	}
	return strings.Join(q, " ")
}

func logSays(path, s string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			return true, nil
		}
	}
	return false, nil
}

// health: the restored root runs, and every listener of the images listens in the copy's netns.
func health(c *Copy, dir string) {
	if c.RootPid == 0 {
		c.Detail = "restored root task not found"
		return
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", c.RootPid)); err != nil {
		c.Detail = fmt.Sprintf("root task %d is gone", c.RootPid)
		return
	}
	d, err := netrw.Load(c.Dir)
	if err != nil {
		c.Detail = err.Error()
		return
	}
	listening := map[string]bool{}
	for _, f := range []string{"tcp", "tcp6"} {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", c.RootPid, f))
		for _, l := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(l)
			if len(fs) > 3 && fs[3] == "0A" { // TCP_LISTEN
				listening[fs[1]] = true
			}
		}
	}
	n := 0
	for _, s := range d.Sockets {
		if s.State != "LISTEN" {
			continue
		}
		if !listening[procNetAddr(s.Src)] {
			c.Detail = fmt.Sprintf("listener %s missing in the copy's netns", s.Src)
			return
		}
		n++
	}
	c.Healthy = true
	c.Detail = fmt.Sprintf("root pid %d running, %d listener(s) up", c.RootPid, n)
}

// procNetAddr formats an address as /proc/net/tcp{,6} does (32-bit words in host order, hex).
func procNetAddr(ap netip.AddrPort) string {
	b := ap.Addr().AsSlice()
	var s strings.Builder
	for i := 0; i < len(b); i += 4 {
		fmt.Fprintf(&s, "%02X%02X%02X%02X", b[i+3], b[i+2], b[i+1], b[i])
	}
	return fmt.Sprintf("%s:%04X", s.String(), ap.Port())
}
