package migrate

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/criukit/criukit/cow"
	"github.com/criukit/criukit/internal/harness"
)

// A forked tree (the cow workload: 16 MiB, 3 children sharing it copy-on-write, each rewriting its
// own tenth) moves in 3 rounds to another netns: round 0 is deduplicated by cow's page server (the
// children's shared pages become a cow chain), later rounds chain onto it; after the restore every
// process' checksum is the one before the move.
func TestMigrateForkedTree(t *testing.T) {
	t.Run("eager", func(t *testing.T) { testForkedTree(t, false, false) })
	t.Run("lazy", func(t *testing.T) { testForkedTree(t, true, false) })
	t.Run("criu-tracking", func(t *testing.T) { testForkedTree(t, false, true) })
}

func testForkedTree(t *testing.T, lazy, criuTrack bool) {
	criu, tracking := harness.Criu(t), "relay"
	if criuTrack {
		criu, tracking = patchedCriu(t), "criu"
	}
	h := newHosts(t)
	p := harness.Start(t, "cow", harness.WithNetns(h.A), harness.WithArgs("-mib", "16", "-children", "3", "-mode", "div10"))
	before := p.Check(t)
	pids := cow.TreePids(p.Pid)
	rv := &Receiver{Dir: filepath.Join(t.TempDir(), "recv"), Netns: h.B, Criu: criu}
	t.Cleanup(rv.Close)
	res, err := Migrate(context.Background(), Options{
		Pid: p.Pid, Dial: Local(rv), Netns: h.A, Rounds: 3, Pause: 100 * time.Millisecond, Criu: criu,
		DumpArgs: []string{"--network-lock", "skip"}, Lazy: lazy, Tracking: tracking,
		AfterDump: func() error {
			p.Kill()
			for _, pid := range pids {
				if err := waitGone(pid, 10*time.Second); err != nil {
					return err
				}
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &harness.Proc{Pid: res.Pid, Dir: p.Dir, Workload: "cow"}
	t.Cleanup(r.Kill)
	for _, x := range res.Rounds {
		t.Logf("round %d: tracked %d processes, written %d, criu read %d, sent %d, parent %d, deduped %d",
			x.Round, x.Tracked, x.Written, x.Pages, x.Sent, x.Parent, x.Deduped)
	}
	if lazy && res.Flat != "used" {
		t.Errorf("lazy: flat copy not used: %s", res.Flat)
	}
	if !lazy && res.Rounds[0].Deduped == 0 { // lazy stores round 0 flat (no dedup)
		t.Errorf("round 0: nothing deduplicated in a forked tree")
	}
	if x := res.Rounds[len(res.Rounds)-1]; x.Tracked != len(pids) || x.Parent == 0 {
		t.Errorf("last round: %d of %d processes tracked, %d parent pages", x.Tracked, len(pids), x.Parent)
	}
	if after := r.Check(t); after != before {
		t.Fatalf("checksums changed:\nbefore %s\nafter  %s", before, after)
	}
}
