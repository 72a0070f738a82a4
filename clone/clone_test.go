package clone

import (
	"context"
	"errors"
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

	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/testenv"
)

func newNetns(t *testing.T, name string, addrs ...string) string {
	t.Helper()
	ip := testenv.Command(t, "ip")
	if out, err := exec.Command(ip, "netns", "add", name).CombinedOutput(); err != nil {
		testenv.Unavailable(t, "ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command(ip, "netns", "del", name).Run() })
	exec.Command(ip, "-n", name, "link", "set", "lo", "up").Run()
	for _, a := range addrs {
		args := []string{"-n", name, "addr", "add", a, "dev", "lo"}
		if strings.Contains(a, ":") {
			args = append(args, "nodad")
		}
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatal(err, string(out))
		}
	}
	return "/run/netns/" + name
}

var seqRe = regexp.MustCompile(`seq=(\d+) accepts=1 pair=up client=up`)

func seq(t *testing.T, p *harness.Proc) int {
	t.Helper()
	m := seqRe.FindStringSubmatch(p.Check(t))
	if m == nil {
		t.Fatalf("copy pid %d: connection not healthy", p.Pid)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// clone --copies 3 of a tree with a listener and an established connection: three copies run at
// once, each on its own addresses from the pool, each connection keeps counting. A tree with a
// path-bound unix socket in a shared dir is refused by lint.
func TestLiveClone(t *testing.T) {
	testenv.Short(t)
	testenv.Root(t)
	testenv.Command(t, "unshare")
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	ns := newNetns(t, fmt.Sprintf("crk-clone-%d", os.Getpid()), "10.11.0.1/32", "10.11.0.2/32", "fd00:11::1/128", "fd00:11::2/128")

	t.Run("refuse-unix-path", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "shared.sock")
		p := harness.Start(t, "net-pair", harness.WithNetns(ns), harness.WithArgs("-server", "10.11.0.2", "-client", "10.11.0.1", "-unix", sock))
		d := p.Dump(t, "--tcp-established", "--network-lock", "nftables")
		res, err := Clone(context.Background(), d.Dir, Options{Copies: 2, Out: filepath.Join(t.TempDir(), "c")})
		if !errors.Is(err, ErrConflicts) || !strings.Contains(err.Error(), sock) {
			t.Fatalf("err %v, want ErrConflicts naming %s (%+v)", err, sock, res)
		}
	})

	// with an overlay root per copy, the shared unix socket path is no conflict: each copy binds it
	// in its own upper dir, the host's file stays, and each copy's writes stay in its upper dir
	t.Run("overlay-unix-path", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "shared.sock")
		p := harness.Start(t, "net-pair", harness.WithNetns(ns), harness.WithArgs("-server", "10.11.0.2", "-client", "10.11.0.1", "-unix", sock))
		d := p.Dump(t, "--tcp-established", "--network-lock", "nftables")
		res := cloneOK(t, d.Dir, Options{Copies: 2, Pool: netip.MustParsePrefix("10.31.0.0/24"), Overlay: true,
			Out: filepath.Join(t.TempDir(), "c"), NetnsPrefix: fmt.Sprintf("crk-clone-%d-ov-", os.Getpid())})
		check := filepath.Join(p.Dir, "check")
		os.Remove(check)
		for _, c := range res.Copies {
			if !c.Healthy {
				t.Fatalf("copy %d: %s", c.Index, c.Detail)
			}
			cp := &harness.Proc{Pid: c.RootPid, Dir: p.Dir, Workload: p.Workload}
			unix.Kill(cp.Pid, unix.SIGUSR1)
			deadline := time.Now().Add(10 * time.Second)
			for {
				b, err := os.ReadFile(filepath.Join(c.Upper, check))
				if err == nil && seqRe.Match(b) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("copy %d: no check answer in its upper dir %s (%v)", c.Index, c.Upper, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if fi, err := os.Lstat(filepath.Join(c.Upper, sock)); err != nil || fi.Mode()&os.ModeSocket == 0 {
				t.Errorf("copy %d: no socket %s in its upper dir (%v)", c.Index, sock, err)
			}
		}
		if _, err := os.Stat(check); err == nil {
			t.Error("a copy wrote into the shared host directory")
		}
		if fi, err := os.Lstat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
			t.Errorf("the host's socket file was touched: %v", err)
		}
	})

	for _, tc := range []struct{ name, server, client, pool string }{
		{"three-copies-ipv4", "10.11.0.2", "10.11.0.1", "10.30.0.0/24"},
		{"three-copies-ipv6", "fd00:11::2", "fd00:11::1", "fd00:30::/64"},
		{"three-copies-same-ips", "10.11.0.2", "10.11.0.1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := harness.Start(t, "net-pair", harness.WithNetns(ns), harness.WithArgs("-server", tc.server, "-client", tc.client))
			for seq(t, p) < 3 {
				time.Sleep(50 * time.Millisecond)
			}
			d := p.Dump(t, "--tcp-established", "--network-lock", "nftables")
			var pool netip.Prefix
			if tc.pool != "" {
				pool = netip.MustParsePrefix(tc.pool)
			}
			res := cloneOK(t, d.Dir, Options{Copies: 3, Pool: pool,
				Out: filepath.Join(t.TempDir(), "clones"), NetnsPrefix: fmt.Sprintf("crk-clone-%d-%s-", os.Getpid(), tc.name[len(tc.name)-2:])})
			port := strings.TrimPrefix(p.Info, "port=")
			next := pool.Addr()
			for _, c := range res.Copies {
				if !c.Healthy {
					t.Fatalf("copy %d: %s", c.Index, c.Detail)
				}
				// copy i owns the next two pool addresses: client (lower dumped address), server;
				// without a pool every copy keeps the dumped addresses in its own netns
				next = next.Next().Next()
				if tc.pool == "" {
					next = netip.MustParseAddr(tc.server)
				}
				want := netip.AddrPortFrom(next, uint16(mustAtoi(t, port))).String()
				if len(c.Addrs) != 2 || c.Addrs[1] != next.String() {
					t.Fatalf("copy %d addresses %v, want server %s", c.Index, c.Addrs, next)
				}
				ss, _ := exec.Command("nsenter", "--net="+c.Netns, "ss", "-tln").CombinedOutput()
				if !strings.Contains(string(ss), want) {
					t.Fatalf("copy %d does not listen on %s:\n%s", c.Index, want, ss)
				}
			}
			// every copy's connection keeps counting (checked one after another: they share Dir)
			for _, c := range res.Copies {
				cp := &harness.Proc{Pid: c.RootPid, Dir: p.Dir, Workload: p.Workload}
				a := seq(t, cp)
				time.Sleep(300 * time.Millisecond)
				if b := seq(t, cp); b <= a {
					t.Fatalf("copy %d: counter stuck at %d", c.Index, b)
				}
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

// cloneOK clones dir, stops the copies when the test ends (also those of a partial result) and
// fails the test on an error.
func cloneOK(t *testing.T, dir string, o Options) *Result {
	t.Helper()
	res, err := Clone(context.Background(), dir, o)
	if res != nil {
		t.Cleanup(func() {
			for _, c := range res.Copies {
				c.Stop()
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return res
}
