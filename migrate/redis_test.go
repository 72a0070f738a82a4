package migrate

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/testenv"
	"github.com/criukit/criukit/netrw"
	"github.com/criukit/criukit/netrw/addrmap"
)

var incrRe = regexp.MustCompile(`n=(-?\d+) state=(\S+)`)

func incrState(t *testing.T, p *harness.Proc) (int, string) {
	t.Helper()
	return checkCount(t, p, incrRe, "redis-incr")
}

// A redis-server (Debian package) in netns B with a client in netns A: redis is migrated in 3
// rounds (iterative, memtrack between rounds) to a new IP in netns B2, the client is dumped and
// moved to A2, both images are rewritten, and the group restore brings both back: the client's
// connection keeps answering INCR in sequence (same connection, same server state).
func TestMigrateRedisGroup(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "ipv4", true: "ipv6"}[v6], func(t *testing.T) {
			criu := harness.Criu(t)
			redis := testenv.Command(t, "redis-server")
			testenv_nft(t)
			src, dst := newHosts(t), newHosts(t)
			cA, sB, nA, nB := src.AddrA, src.AddrB, dst.AddrA, dst.AddrB
			if v6 {
				cA, sB, nA, nB = src.Addr6A, src.Addr6B, dst.Addr6A, dst.Addr6B
			}
			work := t.TempDir()
			cmd := exec.Command("nsenter", "--net="+src.B, "--", redis, "--bind", sB, "--port", "6379",
				"--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", work, "--daemonize", "no")
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			t.Cleanup(func() { (&harness.Proc{Pid: cmd.Process.Pid}).Kill() })
			// wait until it answers
			for deadline := time.Now().Add(20 * time.Second); ; {
				out, _ := exec.Command("nsenter", "--net="+src.B, "--", "redis-cli", "-h", sB, "ping").CombinedOutput()
				if strings.Contains(string(out), "PONG") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("redis-server does not answer: %s", out)
				}
				time.Sleep(50 * time.Millisecond)
			}
			cli := harness.Start(t, "redis-incr", harness.WithNetns(src.A), harness.WithArgs("-server", fmtHostPort(sB, "6379"), "-src", cA))
			time.Sleep(300 * time.Millisecond)
			if n, st := incrState(t, cli); st != "up" || n < 2 {
				t.Fatalf("client before the move: n=%d state=%s", n, st)
			}

			rv := &Receiver{Dir: filepath.Join(work, "recv"), Criu: criu}
			res, err := Migrate(context.Background(), Options{
				Pid: cmd.Process.Pid, Dial: Local(rv), Netns: src.B, Rounds: 3, Pause: 200 * time.Millisecond, Criu: criu,
				DumpArgs: []string{"--tcp-established", "--network-lock", "nftables"}, NoRestore: true,
				AfterDump: func() error {
					select {
					case <-done:
						return nil
					case <-time.After(10 * time.Second):
						return fmt.Errorf("redis still alive after its dump")
					}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res.Rounds {
				t.Logf("redis round %d: written %d, criu read %d, sent %d, parent %d", r.Round, r.Written, r.Pages, r.Sent, r.Parent)
			}
			before, _ := incrState(t, cli)
			dC := filepath.Join(work, "client")
			dumpGone(t, cli, src.A, dC, "--tcp-established", "--network-lock", "nftables")

			m, err := addrmap.Parse(cA+"="+nA, sB+"="+nB)
			if err != nil {
				t.Fatal(err)
			}
			outC, outR := dC+".moved", res.Dir+".moved"
			for _, x := range []struct{ in, out, ns string }{{dC, outC, dst.A}, {res.Dir, outR, dst.B}} {
				if rep, err := netrw.Rewrite(x.in, netrw.RewriteOptions{Map: m, TargetNetns: x.ns, Output: netrw.Output{Dir: x.out}}); err != nil {
					t.Fatalf("rewrite %s: %v\n%+v", x.in, err, rep)
				}
			}
			g, err := GroupRestore(context.Background(), []Member{{outC, dst.A}, {outR, dst.B}}, criu, []string{"--tcp-established"})
			if g != nil {
				for _, pid := range g.Pids {
					p := &harness.Proc{Pid: pid}
					t.Cleanup(p.Kill)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			rcli := &harness.Proc{Pid: g.Pids[0], Dir: cli.Dir, Workload: "redis-incr"}
			for deadline := time.Now().Add(30 * time.Second); ; {
				n, st := incrState(t, rcli)
				if st != "up" {
					t.Fatalf("client after the move: n=%d state=%s", n, st)
				}
				if n > before+10 {
					t.Logf("INCR at %d when the client was dumped, %d after the move", before, n)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("INCR stuck at %d (dumped at %d)", n, before)
				}
				time.Sleep(200 * time.Millisecond)
			}
			out, _ := exec.Command("nsenter", "--net="+dst.B, "--", "redis-cli", "-h", nB, "get", "criukit-incr").CombinedOutput()
			if _, err := strconv.Atoi(strings.TrimSpace(string(out))); err != nil {
				t.Errorf("redis at its new address %s: %q", nB, out)
			}
		})
	}
}
