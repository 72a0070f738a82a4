package migrate

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/nsrun"
	"github.com/criukit/criukit/internal/pageproto"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Options of Migrate.
type Options struct {
	Pid int // root of the tree to move
	// Container is a podman container (name or ID) to move instead of Pid: every round is a
	// `podman container checkpoint --export` whose criu sends its pages to criukit's relay, and the
	// receiver restores it with `podman container restore --import` (see container.go).
	Container string
	// Podman are podman's global flags for the checkpoints (e.g. --cgroup-manager cgroupfs).
	Podman []string
	// ContainerName is the name of the restored container ("" = the source's name).
	ContainerName string
	To            string // receiver address host:port (`criukit migrate receive`)
	DialNetns     string // open connections to the receiver from this netns (path; "" = ours)
	Netns         string // run criu dump through nsenter --net=Netns (the tree's netns)
	Rounds        int    // dumps in all (>= 1); the last one freezes the tree; default 3
	// Converge ends pre-copy early: when a round (after round 0) sends at most this many pages, the
	// next round is the last. 0: always Rounds rounds.
	Converge int64
	// Tracking chooses who skips unwritten pages in rounds after the first: "relay" (stock criu reads
	// every page while the tree is frozen; the relay drops the unwritten ones before the wire),
	// "criu" (criu dump --track-mem-uffd, criu-patches/0010: criu does not read them at all) or
	// "" = "criu" when the criu in use has the feature, else "relay" (for --container too: runc's
	// criu gets the option through the wrapper's configuration file).
	Tracking string
	// ConvergeStall also ends pre-copy when a round (after round 1) sends at least as many pages as
	// the round before it: the written set stopped shrinking, more rounds would not shorten the
	// freeze.
	ConvergeStall bool
	Pause         time.Duration // wait between rounds (lets the written set of a round grow to a realistic size)
	WorkDir       string        // local scratch for criu's non-page images and logs ("" = a temp dir, removed)
	DumpArgs      []string      // extra criu dump arguments (e.g. --tcp-established, --shell-job)
	// Restore: the receiver maps addresses (Map, `net rewrite --map` syntax) and runs criu restore
	// with RestoreArgs. NoRestore stops after the images are on the receiver.
	Map         []string
	RestoreArgs []string
	NoRestore   bool
	// Lazy restores with criu lazy-pages on the receiver: the tree runs as soon as its state is
	// restored and its pages fault in from the received images (a daemon copies the rest).
	Lazy bool
	// Flat makes the receiver store round 0 without dedup and keep a flat copy that every later
	// round rolls forward in place; the restore reads that copy instead of the parent chain (criu
	// restores deep, fragmented chains slowly). Lazy implies it.
	Flat bool
	// AfterDump runs after the last dump, before the restore (e.g. to wait until the dumped tree is
	// reaped: a restore on the same machine reuses its pids).
	AfterDump func() error
	Criu      string
	Progress  func(RoundStats)
	// Dial, when set, opens a connection to the receiver instead of TCP to To (e.g. an in-process
	// receiver in another netns, see Local).
	Dial func(ctx context.Context) (net.Conn, error)
}

// RoundStats are one round's numbers.
type RoundStats struct {
	Round       int     `json:"round"`
	Final       bool    `json:"final"`
	Tracked     int     `json:"tracked_processes"`
	Written     int     `json:"written_pages"` // pages the trackers saw written since the previous round
	Pages       int64   `json:"criu_pages"`    // pages criu read from the tree
	Sent        int64   `json:"sent_pages"`    // pages sent with data
	Parent      int64   `json:"parent_pages"`  // pages sent as PE_PARENT (no data)
	Stored      int64   `json:"stored_pages"`  // pages the receiver wrote
	Deduped     int64   `json:"deduped_pages"` // round 0: duplicates the receiver stored once
	WireBytes   int64   `json:"wire_bytes"`    // bytes sent to the receiver (pages session + images)
	FilesBytes  int64   `json:"image_bytes"`   // of those, the non-page images (last round)
	DumpSeconds float64 `json:"dump_seconds"`  // criu dump (the tree is frozen for most of it)
	Frozen      float64 `json:"frozen_at_s"`   // seconds since the round began when criu froze the tree
	// TrackSeconds is the trackers' scan and re-protection inside the freeze (and, with criu
	// tracking, the check of criu's PE_PARENT pages).
	TrackSeconds float64 `json:"track_seconds"`
}

// Result of Migrate.
type Result struct {
	Rounds         []RoundStats `json:"rounds"`
	WireBytes      int64        `json:"wire_bytes"`
	FrozenSeconds  float64      `json:"frozen_seconds"`  // last round: criu dump's start (it freezes the tree) to the restored tree running
	RestoreSeconds float64      `json:"restore_seconds"` // criu restore on the receiver
	// The last round's frozen time in parts: criu dump, the images after it, waiting for the dumped
	// tree to go (AfterDump), and the restore request (rewrite + criu restore + answer).
	FrozenDump    float64 `json:"frozen_dump_seconds"`
	FrozenImages  float64 `json:"frozen_images_seconds"`
	FrozenWait    float64 `json:"frozen_wait_seconds"`
	FrozenRestore float64 `json:"frozen_restore_seconds"`
	TotalSeconds  float64 `json:"total_seconds"`
	Pid           int     `json:"pid,omitempty"` // restored root (receiver's pid namespace)
	Dir           string  `json:"dir"`           // directory restored on the receiver (last round, or its flat copy)
	// Flat says whether a lazy restore used the receiver's rolled-forward flat copy ("used") or why not.
	Flat string `json:"flat,omitempty"`
	// Tracking is who skipped unwritten pages: "criu" (--track-mem-uffd) or "relay".
	Tracking string `json:"tracking,omitempty"`
	// Converged says why pre-copy ended before Options.Rounds (nil: it ran all rounds).
	Converged *Convergence `json:"converged,omitempty"`
	// Container is the restored podman container's name (--container).
	Container string `json:"container,omitempty"`
}

// Convergence is why pre-copy ended early.
type Convergence struct {
	AfterRound int    `json:"after_round"` // the round whose numbers ended pre-copy (the next one is the last)
	Reason     string `json:"reason"`      // "threshold" or "stalled"
	Sent       int64  `json:"sent_pages"`  // pages that round sent with data
	Threshold  int64  `json:"threshold,omitempty"`
	Previous   int64  `json:"previous_sent_pages,omitempty"` // stalled: the round before it sent this many
}

// converged decides, from the rounds so far, whether the next round is the last: the latest
// tracked round (round 0 sends everything and does not count) sent at most threshold pages, or
// (stall) it sent at least as many as the tracked round before it.
func converged(rounds []RoundStats, threshold int64, stall bool) *Convergence {
	k := len(rounds) - 1
	if k < 1 {
		return nil
	}
	last := rounds[k]
	if threshold > 0 && last.Sent <= threshold {
		return &Convergence{AfterRound: last.Round, Reason: "threshold", Sent: last.Sent, Threshold: threshold}
	}
	if stall && k >= 2 && last.Sent >= rounds[k-1].Sent {
		return &Convergence{AfterRound: last.Round, Reason: "stalled", Sent: last.Sent, Previous: rounds[k-1].Sent}
	}
	return nil
}

// Migrate moves the tree Options.Pid to the receiver at Options.To in Options.Rounds rounds.
// Rounds before the last dump with --leave-running; the last one kills the source tree after a
// successful dump (reaping it is up to its parent).
func Migrate(ctx context.Context, o Options) (*Result, error) {
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	if o.To == "" && o.Dial == nil {
		return nil, errors.New("migrate: no receiver address (Options.To)")
	}
	work, cleanup, err := o.setup("criukit-migrate-")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	if o.Container != "" {
		if err := o.checkContainer(ctx); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", o.Pid)); err != nil {
		return nil, fmt.Errorf("migrate: no process %d", o.Pid)
	}
	t0 := time.Now()
	res := &Result{}
	if err := o.chooseTracking(); err != nil {
		return nil, err
	}
	if o.Rounds > 1 {
		res.Tracking = o.Tracking
	}
	var tt *TreeTracker
	if o.Rounds > 1 {
		var err error
		if tt, err = NewTreeTracker(o.Pid); err != nil {
			return nil, err
		}
		defer tt.Close()
	}
	var parent coverage
	for r := 0; ; r++ {
		final := r == o.Rounds-1
		if !final && res.Converged == nil {
			if c := converged(res.Rounds, o.Converge, o.ConvergeStall); c != nil {
				res.Converged, final = c, true
			}
		}
		st, cov, frozenAt, err := dumpRound(ctx, o, work, r, final, parent, tt)
		if err != nil {
			return res, fmt.Errorf("migrate round %d: %w", r, err)
		}
		parent = cov
		if final {
			res.FrozenDump = time.Since(frozenAt).Seconds()
			if err := o.afterDump(res); err != nil {
				return res, err
			}
			ti := time.Now()
			req, body := request{Op: "files", Round: r}, func(c net.Conn) (int64, error) {
				return sendTar(c, filepath.Join(work, fmt.Sprintf("round-%d", r)))
			}
			if o.Container != "" {
				req.Op, body = "container", func(c net.Conn) (int64, error) {
					return sendFile(c, filepath.Join(work, fmt.Sprintf("round-%d", r), containerArchive))
				}
			}
			c, rep, err := call(ctx, o, req, body)
			if err != nil {
				return res, fmt.Errorf("migrate: send round %d's images: %w", r, err)
			}
			st.FilesBytes, st.WireBytes = c, st.WireBytes+c
			res.FrozenImages = time.Since(ti).Seconds()
			res.Dir = rep.Dir
			res.Rounds = append(res.Rounds, st)
			res.WireBytes += st.WireBytes
			if o.Progress != nil {
				o.Progress(st)
			}
			if !o.NoRestore {
				rep, err := restoreOn(ctx, o, r, res)
				if err != nil {
					return res, fmt.Errorf("migrate: restore on the receiver: %w", err)
				}
				res.Flat, res.Container = rep.Flat, rep.Name
				if rep.Dir != "" {
					res.Dir = rep.Dir
				}
			}
			res.FrozenSeconds = time.Since(frozenAt).Seconds()
			break
		}
		res.Rounds = append(res.Rounds, st)
		res.WireBytes += st.WireBytes
		if o.Progress != nil {
			o.Progress(st)
		}
		if err := tt.Dumped(r); err != nil {
			return res, err
		}
		if o.Pause > 0 {
			select {
			case <-time.After(o.Pause):
			case <-ctx.Done():
				return res, ctx.Err()
			}
		}
	}
	res.TotalSeconds = time.Since(t0).Seconds()
	return res, nil
}

// chooseTracking resolves Options.Tracking ("" → criu when the criu binary has --track-mem-uffd).
func (o *Options) chooseTracking() error {
	has := criurun.HasFeature(o.Criu, criurun.FeatureTrackMemUffd)
	switch o.Tracking {
	case "":
		o.Tracking = "relay"
		if has {
			o.Tracking = "criu"
		}
	case "relay":
	case "criu":
		if !has {
			return fmt.Errorf("migrate: %s has no --track-mem-uffd (build criukit's patched CRIU with scripts/build-criu, or use --tracking relay)", o.Criu)
		}
	default:
		return fmt.Errorf("migrate: tracking %q: want criu or relay", o.Tracking)
	}
	return nil
}

// setup finds criu (when Options.Criu is empty) and makes the work directory (a temporary one named
// prefix* when Options.WorkDir is empty; cleanup removes it).
func (o *Options) setup(prefix string) (work string, cleanup func(), err error) {
	if o.Criu == "" {
		if p, ok := criurun.FindTrackMemUffd(); ok && o.Tracking != "relay" {
			o.Criu = p
		} else if o.Criu, _, err = criurun.Find(); err != nil {
			return "", nil, err
		}
	}
	if o.WorkDir != "" {
		return o.WorkDir, func() {}, nil
	}
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", nil, err
	}
	return d, func() { os.RemoveAll(d) }, nil
}

// afterDump runs Options.AfterDump after the final dump and times it (Result.FrozenWait).
func (o *Options) afterDump(res *Result) error {
	tw := time.Now()
	if o.AfterDump != nil {
		if err := o.AfterDump(); err != nil {
			return err
		}
	}
	res.FrozenWait = time.Since(tw).Seconds()
	return nil
}

// restoreOn asks the receiver to restore round r and records the restored pid and times in res.
func restoreOn(ctx context.Context, o Options, r int, res *Result) (reply, error) {
	tr := time.Now()
	_, rep, err := call(ctx, o, request{Op: "restore", Round: r, Map: o.Map, Args: o.RestoreArgs, Lazy: o.Lazy,
		Container: o.Container != "", Name: o.ContainerName}, nil)
	if err != nil {
		return rep, err
	}
	res.FrozenRestore = time.Since(tr).Seconds()
	res.Pid, res.RestoreSeconds = rep.Pid, rep.Seconds
	return rep, nil
}

// dial connects to the receiver (from DialNetns when set).
func dial(ctx context.Context, o Options) (net.Conn, error) {
	if o.Dial != nil {
		return o.Dial(ctx)
	}
	var d net.Dialer
	d.Timeout = 30 * time.Second
	if o.DialNetns == "" {
		return d.DialContext(ctx, "tcp", o.To)
	}
	h, err := netns.GetFromPath(o.DialNetns)
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", o.DialNetns, err)
	}
	defer h.Close()
	var c net.Conn
	err = nsrun.Do(h, func() error {
		var err error
		c, err = d.DialContext(ctx, "tcp", o.To)
		return err
	})
	return c, err
}

// call sends one request; body (optional) writes what follows it; the reply is read after the
// write side is closed.
func call(ctx context.Context, o Options, req request, body func(net.Conn) (int64, error)) (int64, reply, error) {
	c, err := dial(ctx, o)
	if err != nil {
		return 0, reply{}, fmt.Errorf("connect to receiver %s: %w", o.To, err)
	}
	defer c.Close()
	req.Magic = wireMagic
	b, _ := json.Marshal(req)
	n0, err := c.Write(append(b, '\n'))
	if err != nil {
		return 0, reply{}, err
	}
	n := int64(n0)
	if body != nil {
		k, err := body(c)
		n += k
		if err != nil {
			return n, reply{}, err
		}
	}
	closeWrite(c)
	rep, err := readReply(c)
	return n, rep, err
}

func readReply(c net.Conn) (reply, error) {
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return reply{}, fmt.Errorf("no answer from the receiver: %w", err)
	}
	var rep reply
	if err := json.Unmarshal(line, &rep); err != nil {
		return reply{}, fmt.Errorf("bad answer from the receiver: %.100q", line)
	}
	if rep.Error != "" {
		return rep, fmt.Errorf("receiver: %s", rep.Error)
	}
	return rep, nil
}

// countConn counts the bytes written to the receiver.
type countConn struct {
	net.Conn
	n int64
}

func (c *countConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n += int64(n)
	return n, err
}

// startCriuDump starts `criu dump` of Options.Pid for one round with its pages on a socketpair
// (--ps-socket); ours is the relay's end.
func startCriuDump(ctx context.Context, o Options, dir, log string, final bool, extra []string) (ours *os.File, wait func() error, out *strings.Builder, abort func(), err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if err := unix.SetNonblock(fds[1], false); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, nil, nil, err
	}
	for _, fd := range fds {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		}
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "page-server"), os.NewFile(uintptr(fds[1]), "criu-ps-socket")
	args := []string{"dump", "-t", strconv.Itoa(o.Pid), "-D", dir, "-v4", "-o", log}
	if !slices.ContainsFunc(o.DumpArgs, func(a string) bool { return a == "--network-lock" || strings.HasPrefix(a, "--network-lock=") }) {
		args = append(args, "--network-lock", "nftables")
	}
	args = append(args, o.DumpArgs...)
	args = append(args, extra...)
	if !final {
		args = append(args, "--leave-running")
	}
	args = append(args, "--page-server", "--ps-socket", "3")
	var cmd *exec.Cmd
	if o.Netns != "" {
		cmd = exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + o.Netns, "--", o.Criu}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, o.Criu, args...)
	}
	cmd.ExtraFiles = []*os.File{theirs}
	out = &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		ours.Close()
		theirs.Close()
		return nil, nil, nil, nil, err
	}
	theirs.Close()
	return ours, cmd.Wait, out, func() { _ = unix.Shutdown(fds[0], unix.SHUT_RDWR) }, nil
}

// dumpRound runs criu dump for round r with its pages going through relay to the receiver.
func dumpRound(ctx context.Context, o Options, work string, r int, final bool, parent coverage, tt *TreeTracker) (RoundStats, coverage, time.Time, error) {
	st := RoundStats{Round: r, Final: final}
	dir := filepath.Join(work, fmt.Sprintf("round-%d", r))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return st, nil, time.Time{}, err
	}
	raw, err := dial(ctx, o)
	if err != nil {
		return st, nil, time.Time{}, fmt.Errorf("connect to receiver %s: %w", o.To, err)
	}
	conn := &countConn{Conn: raw}
	defer conn.Close()
	b, _ := json.Marshal(request{Magic: wireMagic, Op: "pages", Round: r, Flat: (o.Lazy || o.Flat) && r == 0 && !final})
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return st, nil, time.Time{}, err
	}
	began := time.Now()
	var frozenAt time.Time
	var ct *relayCriuTrack
	if o.Tracking == "criu" && tt != nil {
		// criu skips unwritten pages itself; the trackers scan (and re-protect) at the end of the
		// page session, still inside the freeze, after criu read the written-bits.
		ct = &relayCriuTrack{parents: coverage{}}
		ct.hasParent = func(dst uint64) bool {
			pid, ok := pageproto.PidOf(dst)
			return r > 0 && ok && tt.Continuous(r, pid)
		}
		ct.onFlush = func(parents coverage) error {
			tf := time.Now()
			defer func() { st.TrackSeconds = time.Since(tf).Seconds() }()
			n, err := tt.Frozen(r)
			if err != nil {
				return err
			}
			st.Written, st.Tracked = n, tt.Tracked()
			if r > 0 {
				parents.sort()
				if err := tt.CheckParents(r, parents); err != nil {
					return err
				}
			}
			if final {
				return tt.Close()
			}
			return nil
		}
	}
	var (
		ours  *os.File
		wait  func() error
		out   *strings.Builder
		abort func()
	)
	log := filepath.Join(dir, "dump.log")
	if o.Container != "" {
		if ours, wait, out, err = startContainerDump(ctx, o, dir, r, final, ct != nil); err != nil {
			return st, nil, time.Time{}, err
		}
		fd := int(ours.Fd())
		abort = func() { _ = unix.Shutdown(fd, unix.SHUT_RDWR) }
		log = "(podman's dump.log in the container's userdata directory)"
	} else {
		var extra []string
		if ct != nil {
			extra = append(extra, "--track-mem-uffd")
			if r > 0 {
				extra = append(extra, "--prev-images-dir", fmt.Sprintf("../round-%d", r-1))
			}
		}
		if ours, wait, out, abort, err = startCriuDump(ctx, o, dir, log, final, extra); err != nil {
			return st, nil, time.Time{}, err
		}
	}
	var keep func(vpid int, va uint64) bool
	onFreeze := func() error {
		frozenAt = time.Now()
		if tt == nil || ct != nil {
			return nil
		}
		defer func() { st.TrackSeconds = time.Since(frozenAt).Seconds() }()
		n, err := tt.Frozen(r)
		if err != nil {
			return err
		}
		st.Written, st.Tracked = n, tt.Tracked()
		if r > 0 {
			keep = tt.keeper(r)
		}
		if final {
			// The tree stays seized by criu until it is killed: nothing can be written from now
			// on, so the trackers can go before criu reads the pages.
			return tt.Close()
		}
		return nil
	}
	keepDst := func(dst, va uint64) bool {
		pid, ok := pageproto.PidOf(dst)
		return keep == nil || !ok || keep(pid, va)
	}
	type relayed struct {
		cov coverage
		st  relayStats
		err error
	}
	done := make(chan relayed, 1)
	go func() {
		var p coverage
		if r > 0 {
			p = parent
		}
		cov, rst, err := relay(ours, conn, p, keepDst, onFreeze, ct)
		if err != nil {
			abort() // criu fails now instead of waiting
		}
		done <- relayed{cov, rst, err}
	}()
	werr := wait()
	st.DumpSeconds = time.Since(began).Seconds()
	if !frozenAt.IsZero() {
		st.Frozen = frozenAt.Sub(began).Seconds()
	}
	var rl relayed
	select {
	case rl = <-done:
	case <-time.After(10 * time.Second):
		ours.Close()
		rl = <-done
	}
	ours.Close()
	if werr != nil {
		e := &criurun.Error{Op: "dump", Log: log, Lines: criurun.LastErrors(log, 5), Output: strings.TrimSpace(out.String()), Err: werr}
		if rl.err != nil {
			return st, nil, frozenAt, fmt.Errorf("%w (relay: %v)", e, rl.err)
		}
		return st, nil, frozenAt, e
	}
	if rl.err != nil {
		return st, nil, frozenAt, fmt.Errorf("criu dump succeeded but the page relay failed: %w", rl.err)
	}
	st.Pages, st.Sent, st.Parent = rl.st.Pages, rl.st.Sent, rl.st.Parent
	closeWrite(raw)
	rep, err := readReply(raw)
	if err != nil {
		return st, nil, frozenAt, err
	}
	st.Stored, st.Deduped, st.WireBytes = rep.Stored, rep.Deduped, conn.n
	if o.Container != "" && !final {
		if ct != nil {
			if err := keepInventory(dir); err != nil {
				return st, nil, frozenAt, err
			}
		}
		_ = os.Remove(filepath.Join(dir, containerArchive)) // only the last round's archive is sent
	}
	// the tree is frozen shortly after criu starts: count from there (an upper bound)
	return st, rl.cov, began, nil
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// Local returns a Dial function that serves each connection with rv in this process over a unix
// socket pair (for a target netns on this machine: rv restores through nsenter --net=rv.Netns).
func Local(rv *Receiver) func(ctx context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		mk := func(fd int, name string) (net.Conn, error) {
			f := os.NewFile(uintptr(fd), name)
			defer f.Close()
			return net.FileConn(f)
		}
		a, err := mk(fds[0], "migrate-sender")
		if err != nil {
			unix.Close(fds[1])
			return nil, err
		}
		b, err := mk(fds[1], "migrate-receiver")
		if err != nil {
			a.Close()
			return nil, err
		}
		go func() {
			_ = rv.ServeConn(ctx, b)
		}()
		return a, nil
	}
}
