package explore_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/image/explore"
	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/testenv"
)

func TestMain(m *testing.M) { harness.Main(m) }

// TestExplorers runs every explorer on every corpus dump and checks facts the workloads guarantee.
func TestExplorers(t *testing.T) {
	testenv.Root(t)
	for _, d := range harness.Corpus(t) {
		t.Run(d.Workload, func(t *testing.T) {
			x, err := explore.Open(d.Dir)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			ps, err := x.Ps()
			if err != nil || len(ps) == 0 {
				t.Fatalf("ps: %v %v", ps, err)
			}
			explore.WritePs(&buf, ps)
			fds, err := x.Fds()
			if err != nil {
				t.Fatalf("fds: %v", err)
			}
			for _, tf := range fds {
				if n := len(tf.FDs); n < 2 || tf.FDs[n-2].Fd != "cwd" || tf.FDs[n-1].Fd != "root" {
					t.Errorf("pid %d: fds do not end with cwd and root: %+v", tf.Pid, tf.FDs)
				}
			}
			explore.WriteFds(&buf, fds)
			mems, err := x.Mems()
			if err != nil {
				t.Fatalf("mems: %v", err)
			}
			explore.WriteMems(&buf, mems)
			rss, err := x.Rss()
			if err != nil {
				t.Fatalf("rss: %v", err)
			}
			// rss page counts come from CRIU 4.2's nr_pages: they must add up to the pagemap's.
			for _, tr := range rss {
				var got, want uint64
				for _, r := range tr.Ranges {
					got += r.Pages
				}
				m, err := image.OpenMemory(d.Dir, int(tr.Pid))
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range m.Ranges() {
					want += r.NrPages
				}
				m.Close()
				if got != want || got == 0 {
					t.Errorf("pid %d: rss counts %d pages, pagemap %d", tr.Pid, got, want)
				}
			}
			explore.WriteRss(&buf, rss)
			sks, err := x.Sk()
			if err != nil {
				t.Fatalf("sk: %v", err)
			}
			explore.WriteSk(&buf, sks)
			out := buf.String()
			switch d.Workload {
			case "tcp", "tcp6":
				if !strings.Contains(out, "ESTABLISHED") || !strings.Contains(out, "tcp") {
					t.Errorf("no established tcp socket in:\n%s", out)
				}
			case "files":
				if !strings.Contains(out, "unix") || !strings.Contains(out, "pipe[") {
					t.Errorf("no unix socket or pipe in:\n%s", out)
				}
			}
			t.Logf("%s:\n%s", d.Workload, out)
		})
	}
}

func TestOpenNotADump(t *testing.T) {
	if _, err := explore.Open(t.TempDir()); err == nil {
		t.Fatal("empty dir accepted")
	}
}
