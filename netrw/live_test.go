package netrw

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/testenv"
	"github.com/criukit/criukit/netrw/addrmap"
)

var netnsSeq int

// subreaper makes the test process adopt orphans of the workloads, so it can reap them.
func subreaper() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }

// newNetns creates /run/netns/<unique> with lo up and addrs on lo; removed at cleanup.
func newNetns(t *testing.T, addrs ...string) string {
	t.Helper()
	testenv.Root(t)
	ip := testenv.Command(t, "ip")
	netnsSeq++
	name := fmt.Sprintf("crk-netrw-%d-%d", os.Getpid(), netnsSeq)
	if out, err := exec.Command(ip, "netns", "add", name).CombinedOutput(); err != nil {
		testenv.Unavailable(t, "ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command(ip, "netns", "del", name).Run() })
	run := func(args ...string) {
		if out, err := exec.Command(ip, append([]string{"-n", name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip -n %s %v: %v %s", name, args, err, out)
		}
	}
	run("link", "set", "lo", "up")
	for _, a := range addrs {
		args := []string{"addr", "add", a, "dev", "lo"}
		if strings.Contains(a, ":") {
			args = append(args, "nodad")
		}
		run(args...)
	}
	return "/run/netns/" + name
}

var seqRe = regexp.MustCompile(`seq=(\d+) accepts=(\d+) pair=(\S+) client=(\S+) ext=(\S+)`)

type pairState struct {
	seq               int
	accepts           int
	pair, client, ext string
}

func checkPair(t *testing.T, p *harness.Proc) pairState {
	t.Helper()
	s := p.Check(t)
	m := seqRe.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("unexpected check answer %q", s)
	}
	seq, _ := strconv.Atoi(m[1])
	acc, _ := strconv.Atoi(m[2])
	return pairState{seq, acc, m[3], m[4], m[5]}
}

// waitPair checks until cond holds (or fails after 20 s).
func waitPair(t *testing.T, p *harness.Proc, what string, cond func(pairState) bool) pairState {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := checkPair(t, p)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %+v after 20s", what, st)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// restoreIn restores dir with criu into netns (as harness does, but into a netns of our choice).
func restoreIn(t *testing.T, dir, netns string, like *harness.Proc, extra ...string) *harness.Proc {
	t.Helper()
	log := filepath.Join(t.TempDir(), "restore.log")
	ctx, cancel := context.WithTimeout(context.Background(), harness.CriuTimeout)
	defer cancel()
	pid, err := criurun.Restore(ctx, criurun.Opts{Criu: harness.Criu(t), ImagesDir: dir, LogFile: log, Netns: netns, Args: extra})
	if err != nil {
		t.Fatalf("restore %s in %s: %v", dir, netns, err)
	}
	p := &harness.Proc{Pid: pid, Info: like.Info, Dir: like.Dir, Workload: like.Workload}
	t.Cleanup(p.Kill)
	return p
}

// ssIn returns `ss -tn` in netns ("" when ss is missing: callers then skip that assertion).
func ssIn(t *testing.T, netns string) string {
	if _, err := exec.LookPath("ss"); err != nil {
		return ""
	}
	out, _ := exec.Command("nsenter", "--net="+netns, "ss", "-tn").CombinedOutput()
	return string(out)
}

// A server and a client with an established connection, both in the dump, move from 10.11.0.x to
// 10.22.0.x (fd00:11:: to fd00:22::) in another netns: the connection continues.
func TestLiveMovePair(t *testing.T) {
	testenv.Short(t)
	subreaper()
	for _, tc := range []struct {
		name                 string
		oldA, newA           []string
		server, client, mapS string
	}{
		{"ipv4", []string{"10.11.0.1/32", "10.11.0.2/32"}, []string{"10.22.0.1/32", "10.22.0.2/32"}, "10.11.0.2", "10.11.0.1", "10.11.0.0/24=10.22.0.0/24"},
		{"ipv6", []string{"fd00:11::1/128", "fd00:11::2/128"}, []string{"fd00:22::1/128", "fd00:22::2/128"}, "fd00:11::2", "fd00:11::1", "fd00:11::/64=fd00:22::/64"},
		// AF_INET6 sockets on IPv4-mapped addresses, moved by an IPv4 rule
		{"v4mapped", []string{"10.11.0.1/32", "10.11.0.2/32"}, []string{"10.22.0.1/32", "10.22.0.2/32"}, "::ffff:10.11.0.2", "::ffff:10.11.0.1", "10.11.0.0/24=10.22.0.0/24"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nsA := newNetns(t, tc.oldA...)
			nsB := newNetns(t, tc.newA...)
			p := harness.Start(t, "net-pair", harness.WithNetns(nsA), harness.WithArgs("-server", tc.server, "-client", tc.client))
			before := waitPair(t, p, "ping-pong before dump", func(s pairState) bool { return s.seq > 5 })
			d := p.Dump(t, "--tcp-established", "--network-lock", "nftables")
			m, err := addrmap.Parse(tc.mapS)
			if err != nil {
				t.Fatal(err)
			}
			newNet := netip.MustParsePrefix(tc.mapS[strings.Index(tc.mapS, "=")+1:])

			// Without knowing the target's addresses the rewrite refuses.
			rep, err := Rewrite(d.Dir, RewriteOptions{Map: m, Output: Output{DryRun: true}})
			if err == nil || len(rep.Errors) == 0 || !strings.Contains(rep.Errors[0], "--declare-present") {
				t.Fatalf("rewrite without --declare-present: err %v, errors %v", err, rep.Errors)
			}

			out := filepath.Join(t.TempDir(), "moved")
			o := RewriteOptions{Map: m, Present: []netip.Prefix{newNet}, Output: Output{Dir: out}}
			if tc.name != "ipv4" { // learn the new addresses from the target netns instead
				o.Present, o.TargetNetns = nil, nsB
			}
			rep, err = Rewrite(d.Dir, o)
			if err != nil {
				t.Fatalf("rewrite: %v\n%+v", err, rep)
			}
			if w := strings.Join(rep.Warnings, "\n"); !strings.Contains(w, "nft delete table inet CRIU-") {
				t.Errorf("no hint about the lock table left in the source netns: %q", w)
			}
			inImages, listeners := 0, 0
			for _, s := range rep.Sockets {
				if s.Peer == PeerInImages && s.Action == ActRewrite {
					inImages++
				}
				if s.State == "LISTEN" && s.Action == ActRewrite {
					listeners++
				}
			}
			if inImages != 2 || listeners != 1 {
				var b strings.Builder
				rep.WriteTable(&b)
				t.Fatalf("want 2 in-images connections and 1 listener rewritten:\n%s", b.String())
			}

			r := restoreIn(t, out, nsB, p, "--tcp-established")
			after := waitPair(t, r, "ping-pong after restore", func(s pairState) bool { return s.seq > before.seq+10 })
			if after.accepts != 1 || after.pair != "up" || after.client != "up" {
				t.Fatalf("connection did not simply continue: %+v (before %+v)", after, before)
			}
			ss := ssIn(t, nsB)
			oldPfx := strings.TrimPrefix(tc.server[:strings.LastIndexAny(tc.server, ".:")], "::ffff:")
			if ss != "" && (!strings.Contains(ss, "ESTAB") || strings.Contains(ss, oldPfx)) {
				t.Errorf("ss in the target netns:\n%s", ss)
			}
			t.Logf("counter %d before the dump, %d after the move; ss:\n%s", before.seq, after.seq, ss)
		})
	}
}

// A tree that owns its netns moves to a new address: ifaddr, route and rule images are rewritten
// (CRIU's `ip route restore` would refuse a source address the netns lacks), `ip addr` in the
// restored netns shows the new address, and the connection continues.
func TestLiveMoveOwnNetns(t *testing.T) {
	testenv.Short(t)
	testenv.Root(t)
	subreaper()
	ip := testenv.Command(t, "ip")
	for _, tc := range []struct {
		name, server, client, addrs, mapS string
		want, old                         []string
		route                             []string
	}{
		{"ipv4", "10.44.0.2", "10.44.0.1", "10.44.0.1/32,10.44.0.2/32", "10.44.0.0/24=10.55.0.0/24",
			[]string{"10.55.0.1/32", "10.55.0.2/32", "src 10.55.0.1", "from 10.55.0.1 lookup 100"}, []string{"10.44."}, nil},
		{"ipv6", "fd00:44::2", "fd00:44::1", "fd00:44::1/128,fd00:44::2/128", "fd00:44::/64=fd00:55::/64",
			// no rule: CRIU runs `ip rule save`, which saves IPv4 rules only (iproute2 defaults to
			// AF_INET there), so IPv6 policy rules are not checkpointed at all
			[]string{"fd00:55::1/128", "fd00:55::2/128", "src fd00:55::1"}, []string{"fd00:44:"}, []string{"-6"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := harness.Start(t, "net-pair-ownns", harness.WithArgs("-server", tc.server, "-client", tc.client, "-addrs", tc.addrs, "-prefsrc", tc.client))
			before := waitPair(t, p, "ping-pong before dump", func(s pairState) bool { return s.seq > 5 })
			d := p.Dump(t, "--tcp-established", "--network-lock", "nftables")
			m, err := addrmap.Parse(tc.mapS)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "moved")
			rep, err := Rewrite(d.Dir, RewriteOptions{Map: m, Output: Output{Dir: out}})
			if err != nil {
				t.Fatalf("rewrite: %v %v", err, rep.Errors)
			}
			changed := map[string]bool{}
			for _, f := range rep.Files {
				changed[strings.SplitN(f.Name, "-", 2)[0]] = f.Changes > 0
			}
			route := "route"
			if tc.name == "ipv6" {
				route = "route6"
			}
			if !changed["ifaddr"] || !changed[route] || (tc.name == "ipv4" && !changed["rule"]) || !changed["files.img"] {
				t.Fatalf("ifaddr, %s, rule and files.img must change: %+v", route, rep.Files)
			}
			moved := *d
			moved.Dir = out
			r := moved.Restore(t, "--tcp-established")
			after := waitPair(t, r, "ping-pong after restore", func(s pairState) bool { return s.seq > before.seq+10 })
			if after.accepts != 1 || after.pair != "up" || after.client != "up" {
				t.Fatalf("connection did not simply continue: %+v", after)
			}
			var all strings.Builder
			for _, args := range [][]string{{"-o", "addr"}, append(tc.route, "route"), append(tc.route, "rule")} {
				b, err := exec.Command("nsenter", append([]string{fmt.Sprintf("--net=/proc/%d/ns/net", r.Pid), ip}, args...)...).CombinedOutput()
				if err != nil {
					t.Fatal(err, string(b))
				}
				all.Write(b)
			}
			for _, w := range tc.want {
				if !strings.Contains(all.String(), w) {
					t.Errorf("restored netns lacks %q:\n%s", w, all.String())
				}
			}
			for _, o := range tc.old {
				if strings.Contains(all.String(), o) {
					t.Errorf("old address %s left in the restored netns:\n%s", o, all.String())
				}
			}
		})
	}
}

// net close --external on a dump with one in-tree pair and one outside peer: the tree's end of the
// outside connection reads EOF and gets EPIPE, the pair continues, and no tcp-stream image is left
// for the closed socket. The outside peer is told nothing by the restore itself: it learns the
// connection is gone (a reset) the next time it sends; the echo peer's -poke probe is that send.
func TestLiveCloseExternal(t *testing.T) {
	testenv.Short(t)
	subreaper()
	for _, tc := range []struct {
		name                string
		addrs               []string
		server, client, ext string
	}{
		{"ipv4", []string{"10.11.0.1/32", "10.11.0.2/32", "10.11.0.3/32"}, "10.11.0.2", "10.11.0.1", "10.11.0.3"},
		{"ipv6", []string{"fd00:11::1/128", "fd00:11::2/128", "fd00:11::3/128"}, "fd00:11::2", "fd00:11::1", "fd00:11::3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNetns(t, tc.addrs...)
			echo := harness.Start(t, "net-echo", harness.WithNetns(ns), harness.WithArgs("-addr", tc.ext, "-poke"))
			port := strings.TrimPrefix(echo.Info, "port=")
			extAP := netip.AddrPortFrom(netip.MustParseAddr(tc.ext), uint16(mustAtoi(t, port)))
			p := harness.Start(t, "net-pair", harness.WithNetns(ns), harness.WithArgs("-server", tc.server, "-client", tc.client, "-ext", extAP.String()))
			before := waitPair(t, p, "ping-pong before dump", func(s pairState) bool { return s.seq > 5 && s.ext == "up" })
			d := p.Dump(t, "--tcp-established", "--network-lock", "nftables")

			out := filepath.Join(t.TempDir(), "closed")
			rep, err := Close(d.Dir, CloseOptions{External: true, Output: Output{Dir: out}})
			if err != nil {
				t.Fatalf("close: %v %v", err, rep.Errors)
			}
			var closed []SocketReport
			kept := 0
			for _, s := range rep.Sockets {
				switch {
				case s.Action == ActClose:
					closed = append(closed, s)
				case s.Peer == PeerInImages:
					kept++
				}
			}
			if len(closed) != 1 || kept != 2 || closed[0].Remote != extAP.String() {
				var b strings.Builder
				rep.WriteTable(&b)
				t.Fatalf("want the outside connection closed and the pair kept:\n%s", b.String())
			}
			if _, err := os.Stat(filepath.Join(out, fmt.Sprintf("tcp-stream-%x.img", closed[0].Ino))); !os.IsNotExist(err) {
				t.Fatalf("tcp-stream image of the closed socket is still there (%v)", err)
			}
			if _, err := os.Stat(filepath.Join(d.Dir, fmt.Sprintf("tcp-stream-%x.img", closed[0].Ino))); err != nil {
				t.Fatalf("input changed: %v", err)
			}
			// the rewritten images must be what a second run sees: nothing left to close
			if rep2, err := Close(out, CloseOptions{External: true, Output: Output{DryRun: true}}); err != nil || len(rep2.Warnings) == 0 {
				t.Fatalf("second close on the output: %v %+v", err, rep2)
			}

			moved := *d
			moved.Dir = out
			r := moved.Restore(t, "--tcp-established")
			after := waitPair(t, r, "after restore", func(s pairState) bool {
				return s.seq > before.seq+10 && strings.Contains(s.ext, "read:EOF") && strings.Contains(s.ext, "write:EPIPE")
			})
			if after.accepts != 1 || after.pair != "up" || after.client != "up" {
				t.Fatalf("in-tree pair broke: %+v", after)
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				st := echo.Check(t)
				if strings.Contains(st, "ECONNRESET") || strings.Contains(st, "EPIPE") {
					t.Logf("outside peer: %s; tree: %+v", st, after)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("outside peer not reset after 20s: %s", st)
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}

func mustAtoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("bad number %q", s)
	}
	return n
}
