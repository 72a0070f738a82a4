package netrw

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/testenv"
	"github.com/criukit/criukit/internal/workload"
)

// The tcp workload has unread data queued both ways on a loopback connection. net close --all
// reports it as lost, and the images restore WITHOUT --tcp-established (no criu flag at all):
// the application then reads EOF where its queued data was.
func TestLiveDataLoss(t *testing.T) {
	testenv.Short(t)
	testenv.Root(t)
	subreaper()
	for _, v6 := range []bool{false, true} {
		name := map[bool]string{false: "ipv4", true: "ipv6"}[v6]
		t.Run(name, func(t *testing.T) {
			var args []string
			if v6 {
				args = []string{"-6"}
			}
			p := harness.Start(t, "tcp", harness.WithArgs(args...))
			d := p.Dump(t) // harness adds --tcp-established for this workload
			out := filepath.Join(t.TempDir(), "closed")
			rep, err := Close(d.Dir, CloseOptions{All: true, Output: Output{Dir: out}})
			if err != nil {
				t.Fatalf("close: %v %v", err, rep.Errors)
			}
			lost := map[uint32]bool{}
			for _, s := range rep.DataLoss {
				lost[s.Queue.In] = true
			}
			// each side holds the other's unread message in its receive queue
			if len(rep.DataLoss) != 2 || !lost[uint32(len(workload.TCPClientData))] || !lost[uint32(len(workload.TCPServerData))] {
				var b strings.Builder
				rep.WriteTable(&b)
				t.Fatalf("data loss report:\n%s", b.String())
			}
			if m, _ := filepath.Glob(filepath.Join(out, "tcp-stream-*.img")); len(m) != 0 {
				t.Fatalf("tcp-stream images left: %v", m)
			}
			r := restoreIn(t, out, "", p) // no --tcp-established, no --tcp-close
			check := filepath.Join(p.Dir, workload.CheckFile)
			os.Remove(check)
			if err := syscall.Kill(r.Pid, syscall.SIGUSR1); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				b, err := os.ReadFile(check)
				if err == nil {
					if !strings.Contains(string(b), "connection closed") {
						t.Fatalf("restored closed socket: check says %q, want EOF (connection closed)", b)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no check answer")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
