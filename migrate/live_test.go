package migrate

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/nsrun"
	"github.com/criukit/criukit/internal/testenv"
	"github.com/criukit/criukit/internal/workload"
	"github.com/vishvananda/netns"
)

func TestMain(m *testing.M) { harness.Main(m) }

var pairSeq atomic.Int32

// hosts is two network namespaces ("hosts") joined by a veth pair: A has 10.99.N.1 and fd99:N::1,
// B has 10.99.N.2 and fd99:N::2.
type hosts struct {
	A, B         string // netns paths
	AddrA, AddrB string // IPv4
	Addr6A       string
	Addr6B       string
}

func run(t testing.TB, args ...string) {
	t.Helper()
	if b, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, b)
	}
}

func newHosts(t testing.TB) *hosts {
	t.Helper()
	a, b := harness.NewNetns(t), harness.NewNetns(t)
	n := int(pairSeq.Add(1))%200 + os.Getpid()%50
	h := &hosts{A: a, B: b, AddrA: fmt.Sprintf("10.99.%d.1", n), AddrB: fmt.Sprintf("10.99.%d.2", n),
		Addr6A: fmt.Sprintf("fd99:%x::1", n), Addr6B: fmt.Sprintf("fd99:%x::2", n)}
	va, vb := fmt.Sprintf("mgA%dx%d", os.Getpid()%10000, n), fmt.Sprintf("mgB%dx%d", os.Getpid()%10000, n)
	nameA, nameB := a[strings.LastIndexByte(a, '/')+1:], b[strings.LastIndexByte(b, '/')+1:]
	run(t, "ip", "-n", nameA, "link", "add", va, "type", "veth", "peer", "name", vb, "netns", nameB)
	run(t, "ip", "-n", nameA, "addr", "add", h.AddrA+"/24", "dev", va)
	run(t, "ip", "-n", nameB, "addr", "add", h.AddrB+"/24", "dev", vb)
	run(t, "ip", "-n", nameA, "addr", "add", h.Addr6A+"/64", "dev", va, "nodad")
	run(t, "ip", "-n", nameB, "addr", "add", h.Addr6B+"/64", "dev", vb, "nodad")
	run(t, "ip", "-n", nameA, "link", "set", va, "up")
	run(t, "ip", "-n", nameB, "link", "set", vb, "up")
	return h
}

// startReceiver runs a Receiver listening in netns ns at addr (port 0 = any); returns host:port.
func startReceiver(t testing.TB, ns, addr string, rv *Receiver) string {
	t.Helper()
	hd, err := netns.GetFromPath(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer hd.Close()
	var l net.Listener
	if err := nsrun.Do(hd, func() error {
		var err error
		l, err = net.Listen("tcp", net.JoinHostPort(addr, "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = rv.Serve(ctx, l); close(done) }()
	t.Cleanup(func() { cancel(); <-done; rv.Close() })
	return l.Addr().String()
}

func waitGone(pid int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil) // orphans come to the harness (subreaper)
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d still exists after %v", pid, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func parseInfo(t testing.TB, info string) map[string]uint64 {
	out := map[string]uint64{}
	for _, f := range strings.Fields(info) {
		k, v, _ := strings.Cut(f, "=")
		n, err := strconv.ParseUint(v, 0, 64)
		if err != nil {
			t.Fatalf("bad ready info %q", info)
		}
		out[k] = n
	}
	return out
}

// checkWriter reads the (stopped) writer's memory and checks every page against the value the
// deterministic write sequence gives for the counter it holds.
func checkWriter(t testing.TB, pid int, info map[string]uint64) uint64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cb [8]byte
	if _, err := f.ReadAt(cb[:], int64(info["hdr"])); err != nil {
		t.Fatalf("read counter: %v", err)
	}
	s := binary.NativeEndian.Uint64(cb[:])
	n, k := info["pages"], info["k"]
	ps := uint64(os.Getpagesize())
	buf := make([]byte, n*ps)
	if _, err := f.ReadAt(buf, int64(info["addr"])); err != nil {
		t.Fatalf("read region: %v", err)
	}
	inflight := (s * k) % n
	bad := 0
	for p := uint64(0); p < n; p++ {
		want := workload.MigrateWriterExpect(n, k, s, p)
		a := binary.NativeEndian.Uint64(buf[p*ps:])
		b := binary.NativeEndian.Uint64(buf[p*ps+ps-8:])
		ok := a == want && b == want
		if p == inflight && !ok {
			ok = (a == s+1 || a == want) && (b == s+1 || b == want)
		}
		if !ok {
			if bad < 5 {
				t.Errorf("page %d: holds %d/%d, want %d (counter %d)", p, a, b, want, s)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d pages differ from the memory at freeze (counter %d)", bad, n, s)
	}
	return s
}

// TestMigrateWriterExact moves a process that keeps writing sequence numbers into 64 MiB in 4
// rounds (3 with --leave-running while it writes, the last frozen) to another netns over TCP, and
// checks that every page holds its value at the freeze.
func TestMigrateWriterExact(t *testing.T) {
	t.Run("eager", func(t *testing.T) { testWriterExact(t, false, false, false) })
	t.Run("flat", func(t *testing.T) { testWriterExact(t, false, true, false) })
	t.Run("lazy", func(t *testing.T) { testWriterExact(t, true, false, false) })
	// criu-patches/0010: criu dump --track-mem-uffd skips the unwritten pages itself
	t.Run("criu-tracking", func(t *testing.T) { testWriterExact(t, false, false, true) })
	t.Run("criu-tracking-lazy", func(t *testing.T) { testWriterExact(t, true, false, true) })
}

// patchedCriu returns the CRIU with --track-mem-uffd (scripts/build-criu); fails under CI=true
// when there is none.
func patchedCriu(t testing.TB) string {
	t.Helper()
	p, ok := criurun.FindTrackMemUffd()
	if !ok {
		testenv.Unavailable(t, "a CRIU with --track-mem-uffd (scripts/build-criu builds it into %s)", criurun.CowDefaultBin)
	}
	return p
}

func testWriterExact(t *testing.T, lazy, flat, criuTrack bool) {
	criu, tracking := harness.Criu(t), "relay"
	if criuTrack {
		criu, tracking = patchedCriu(t), "criu"
	}
	h := newHosts(t)
	rv := &Receiver{Dir: t.TempDir(), Netns: h.B, Criu: criu}
	addr := startReceiver(t, h.B, h.AddrB, rv)
	const pages = 16384
	p := harness.Start(t, "migrate-writer", harness.WithNetns(h.A), harness.WithArgs(strconv.Itoa(pages), "4000"))
	info := parseInfo(t, p.Info)
	var rounds []RoundStats
	res, err := Migrate(context.Background(), Options{
		Pid: p.Pid, To: addr, DialNetns: h.A, Netns: h.A, Rounds: 4, Pause: 300 * time.Millisecond, Criu: criu,
		DumpArgs:    []string{"--network-lock", "skip"},
		RestoreArgs: []string{"--leave-stopped"},
		Lazy:        lazy, Flat: flat, Tracking: tracking,
		AfterDump: func() error { return waitGone(p.Pid, 10*time.Second) },
		Progress:  func(r RoundStats) { rounds = append(rounds, r) },
	})
	if err != nil {
		t.Fatal(err)
	}
	restored := &harness.Proc{Pid: res.Pid}
	t.Cleanup(restored.Kill)
	for _, r := range res.Rounds {
		t.Logf("round %d final=%v written=%d criu=%d sent=%d parent=%d stored=%d wire=%d dump=%.3fs",
			r.Round, r.Final, r.Written, r.Pages, r.Sent, r.Parent, r.Stored, r.WireBytes, r.DumpSeconds)
	}
	t.Logf("frozen %.3fs restore %.3fs total %.3fs wire %d flat %q", res.FrozenSeconds, res.RestoreSeconds, res.TotalSeconds, res.WireBytes, res.Flat)
	if (lazy || flat) && res.Flat != "used" {
		t.Errorf("lazy restore did not use the flat copy: %s", res.Flat)
	}
	if len(res.Rounds) != 4 {
		t.Fatalf("%d rounds, want 4", len(res.Rounds))
	}
	if res.Tracking != tracking {
		t.Fatalf("tracking %q, want %q", res.Tracking, tracking)
	}
	if criuTrack {
		// criu did not read the unwritten pages: it sent them as PE_PARENT itself
		for _, r := range res.Rounds[1:] {
			if r.Pages >= pages/2 {
				t.Errorf("round %d: criu read %d pages of a %d-page writer that wrote %d: it did not skip unwritten pages", r.Round, r.Pages, pages, r.Written)
			}
		}
	}
	// the trackers must not make criu store unpopulated pages (pte markers read as swapped)
	if r0 := res.Rounds[0]; r0.Pages > pages+4096 {
		t.Errorf("round 0 stored %d pages for a %d-page writer: unpopulated pages were dumped", r0.Pages, pages)
	}
	for _, r := range res.Rounds[1:] {
		if r.Parent == 0 {
			t.Errorf("round %d sent no page as PE_PARENT: the chain saves nothing", r.Round)
		}
		if r.Sent == 0 {
			t.Errorf("round %d sent no page although the writer kept writing", r.Round)
		}
	}
	if res.Pid != p.Pid {
		t.Fatalf("restored pid %d, dumped %d", res.Pid, p.Pid)
	}
	if lazy {
		// the stopped task's pages come in from criu lazy-pages; /proc/PID/mem cannot fault them
		// (EIO) until the daemon has copied them all
		f, _ := os.Open(fmt.Sprintf("/proc/%d/mem", res.Pid))
		buf := make([]byte, pages*os.Getpagesize())
		for deadline := time.Now().Add(20 * time.Second); ; {
			if _, err := f.ReadAt(buf, int64(info["addr"])); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("lazily restored memory not readable after 20s")
			}
			time.Sleep(20 * time.Millisecond)
		}
		f.Close()
	}
	s := checkWriter(t, res.Pid, info)
	if s < 1000 {
		t.Fatalf("the writer wrote only %d pages before the freeze", s)
	}
	// it runs on from there
	if err := syscall.Kill(res.Pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	_ = syscall.Kill(res.Pid, syscall.SIGSTOP)
	time.Sleep(50 * time.Millisecond)
	if s2 := checkWriter(t, res.Pid, info); s2 <= s {
		t.Fatalf("restored writer does not write: counter %d -> %d", s, s2)
	}
}

func testenv_nft(t testing.TB) {
	t.Helper()
	testenv.Command(t, "nft")
}
