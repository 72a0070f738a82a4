package migrate

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/criukit/criukit/cow"
	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/netrw"
	"github.com/criukit/criukit/netrw/addrmap"
	"golang.org/x/sys/unix"
)

// dumpGone dumps the tree of p (criu kills it) and waits until all its pids are gone.
func dumpGone(t *testing.T, p *harness.Proc, netns, dir string, extra ...string) {
	t.Helper()
	pids := cow.TreePids(p.Pid)
	ctx, cancel := context.WithTimeout(context.Background(), harness.CriuTimeout)
	defer cancel()
	if err := criurun.Dump(ctx, p.Pid, criurun.Opts{Criu: harness.Criu(t), ImagesDir: dir, Netns: netns, Args: extra}); err != nil {
		t.Fatalf("dump %s: %v", p.Workload, err)
	}
	p.Kill() // reaps the root
	for _, pid := range pids {
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil) // orphans come to the harness (subreaper)
		if err := waitGone(pid, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

var echoRe = regexp.MustCompile(`sent=(\d+) state=(\S+)`)

func echoSent(t *testing.T, p *harness.Proc) (int, string) {
	t.Helper()
	return checkCount(t, p, echoRe, "net-echo")
}

// checkCount runs p's check and returns the count and the state that re (two groups) finds in
// its answer.
func checkCount(t *testing.T, p *harness.Proc, re *regexp.Regexp, what string) (int, string) {
	t.Helper()
	m := re.FindStringSubmatch(p.Check(t))
	if m == nil {
		t.Fatalf("%s: unexpected check answer", what)
	}
	n, _ := strconv.Atoi(m[1])
	return n, m[2]
}

// Two ends of one TCP connection, dumped separately (client in netns A, server in netns B), both
// rewritten to new addresses and restored as a group into two new netns: the connection continues.
func TestGroupRestoreSeparatePair(t *testing.T) {
	for _, tc := range []struct {
		name      string
		v6, rules bool
	}{{"ipv4", false, true}, {"ipv6", true, true}, {"ipv4-without-rules", false, false}} {
		v6 := tc.v6
		t.Run(tc.name, func(t *testing.T) {
			if !tc.rules {
				groupWithoutRules = true
				defer func() { groupWithoutRules = false }()
			}
			harness.Criu(t)
			testenv_nft(t)
			src, dst := newHosts(t), newHosts(t)
			cA, sB, nA, nB := src.AddrA, src.AddrB, dst.AddrA, dst.AddrB
			if v6 {
				cA, sB, nA, nB = src.Addr6A, src.Addr6B, dst.Addr6A, dst.Addr6B
			}
			srv := harness.Start(t, "net-echo", harness.WithNetns(src.B), harness.WithArgs("-addr", sB))
			port := strings.TrimPrefix(srv.Info, "port=")
			cli := harness.Start(t, "net-pair", harness.WithNetns(src.A),
				harness.WithArgs("-server", cA, "-client", cA, "-ext", netip.MustParseAddrPort(fmtHostPort(sB, port)).String()))
			for deadline := time.Now().Add(20 * time.Second); ; {
				if n, _ := echoSent(t, srv); n > 5 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no echo traffic before the dump")
				}
				time.Sleep(100 * time.Millisecond)
			}
			before, _ := echoSent(t, srv)
			base := t.TempDir()
			dS, dC := filepath.Join(base, "server"), filepath.Join(base, "client")
			dumpGone(t, srv, src.B, dS, "--tcp-established", "--network-lock", "nftables")
			dumpGone(t, cli, src.A, dC, "--tcp-established", "--network-lock", "nftables")
			mS := fmt.Sprintf("%s=%s,%s=%s", cA, nA, sB, nB)
			mS = strings.ReplaceAll(mS, ",", " ")
			var outs []string
			for _, d := range []struct{ dir, ns string }{{dC, dst.A}, {dS, dst.B}} {
				m, err := addrmap.Parse(strings.Fields(mS)...)
				if err != nil {
					t.Fatal(err)
				}
				out := d.dir + ".moved"
				if rep, err := netrw.Rewrite(d.dir, netrw.RewriteOptions{Map: m, TargetNetns: d.ns, Output: netrw.Output{Dir: out}}); err != nil {
					t.Fatalf("rewrite %s: %v\n%+v", d.dir, err, rep)
				}
				outs = append(outs, out)
			}
			res, err := GroupRestore(context.Background(), []Member{{outs[0], dst.A}, {outs[1], dst.B}}, harness.Criu(t), []string{"--tcp-established"})
			if res != nil {
				for _, pid := range res.Pids {
					p := &harness.Proc{Pid: pid}
					t.Cleanup(p.Kill)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("group restore: %d connections under drop rules: %v", len(res.Tuples), res.Tuples)
			if len(res.Tuples) < 2 { // the pair inside the client + the cross-netns one
				t.Fatalf("tuples %v", res.Tuples)
			}
			rsrv := &harness.Proc{Pid: res.Pids[1], Dir: srv.Dir, Workload: "net-echo"}
			for deadline := time.Now().Add(30 * time.Second); ; {
				n, st := echoSent(t, rsrv)
				if !tc.rules && st != "up" {
					t.Logf("without the drop rules the connection breaks, as expected: %s", st)
					return
				}
				if !tc.rules && time.Now().After(deadline.Add(-20*time.Second)) {
					t.Fatalf("without the drop rules the connection survived (sent %d): the test cannot show what the rules do", n)
				}
				if st != "up" {
					t.Fatalf("server's connection after the group restore: %s (sent %d)", st, n)
				}
				if n > before+10 {
					t.Logf("echo counter %d at the dump, %d after the move", before, n)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("echo stuck at %d (dump at %d)", n, before)
				}
				time.Sleep(200 * time.Millisecond)
			}
			rcli := &harness.Proc{Pid: res.Pids[0], Dir: cli.Dir, Workload: "net-pair"}
			if s := rcli.Check(t); !strings.Contains(s, "ext=up") || !strings.Contains(s, "accepts=1") {
				t.Fatalf("client after the move: %s", s)
			}
		})
	}
}

func fmtHostPort(a, port string) string {
	if strings.Contains(a, ":") {
		return "[" + a + "]:" + port
	}
	return a + ":" + port
}
