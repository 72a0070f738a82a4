package migrate

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/criukit/criukit/internal/harness"
)

func TestConvergedRule(t *testing.T) {
	rs := func(sent ...int64) []RoundStats {
		var out []RoundStats
		for i, s := range sent {
			out = append(out, RoundStats{Round: i, Sent: s})
		}
		return out
	}
	for _, c := range []struct {
		sent      []int64
		threshold int64
		stall     bool
		want      string
	}{
		{[]int64{5000}, 100, true, ""},               // round 0 never counts
		{[]int64{5000, 80}, 100, false, "threshold"}, // quiet
		{[]int64{5000, 800}, 100, false, ""},         // busy
		{[]int64{5000, 800, 700}, 100, true, ""},     // still shrinking
		{[]int64{5000, 800, 800}, 100, true, "stalled"},
		{[]int64{5000, 800, 900}, 0, true, "stalled"},
		{[]int64{5000, 800, 900}, 0, false, ""},
		{[]int64{5000, 100}, 100, false, "threshold"},
	} {
		got := converged(rs(c.sent...), c.threshold, c.stall)
		if (got == nil) != (c.want == "") || (got != nil && got.Reason != c.want) {
			t.Errorf("converged(%v, %d, %v) = %+v, want %q", c.sent, c.threshold, c.stall, got, c.want)
		}
		if got != nil && got.AfterRound != len(c.sent)-1 {
			t.Errorf("converged(%v): after round %d", c.sent, got.AfterRound)
		}
	}
}

// TestMigrateConverge: with --converge 300 and at most 6 rounds, a writer that writes 20 pages/s
// ends pre-copy after round 1 (3 rounds, "threshold" in the result), one that writes 8000 pages/s
// never gets under the threshold and runs all 6 rounds; with --converge-stall its pre-copy ends
// at the first round that sends no fewer pages than the one before.
func TestMigrateConverge(t *testing.T) {
	criu := harness.Criu(t)
	for _, c := range []struct {
		name   string
		rate   int
		rounds int
		stall  bool
	}{{"quiet", 20, 3, false}, {"busy", 8000, 6, false}, {"busy-stall", 8000, 0, true}} {
		t.Run(c.name, func(t *testing.T) {
			p := harness.Start(t, "migrate-writer", harness.WithArgs("8192", strconv.Itoa(c.rate)))
			rv := &Receiver{Dir: t.TempDir(), Criu: criu}
			res, err := Migrate(context.Background(), Options{
				Pid: p.Pid, Rounds: 6, Converge: 300, ConvergeStall: c.stall, Pause: 200 * time.Millisecond, Criu: criu,
				DumpArgs: []string{"--network-lock", "skip"}, NoRestore: true, Dial: Local(rv),
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res.Rounds {
				t.Logf("round %d final=%v written=%d sent=%d parent=%d", r.Round, r.Final, r.Written, r.Sent, r.Parent)
			}
			t.Logf("converged: %+v", res.Converged)
			if c.stall {
				// a steady writer's written set stops shrinking: pre-copy ends at the first round
				// that sent at least as much as the one before (timing decides which one)
				cv := res.Converged
				for k := 2; k < len(res.Rounds)-1 && k+1 < 5; k++ { // after round 4, round 5 is the last anyway
					if res.Rounds[k].Sent >= res.Rounds[k-1].Sent && (cv == nil || cv.AfterRound > k) {
						t.Fatalf("round %d sent %d >= %d but pre-copy went on (converged %+v)", k, res.Rounds[k].Sent, res.Rounds[k-1].Sent, cv)
					}
				}
				if cv != nil && (cv.Reason != "stalled" || cv.AfterRound != len(res.Rounds)-2 || cv.Sent < cv.Previous) {
					t.Fatalf("converged = %+v after %d rounds", cv, len(res.Rounds))
				}
				return
			}
			if len(res.Rounds) != c.rounds {
				t.Fatalf("%d rounds, want %d", len(res.Rounds), c.rounds)
			}
			if c.rounds < 6 {
				if cv := res.Converged; cv == nil || cv.Reason != "threshold" || cv.AfterRound != 1 || cv.Sent > 300 {
					t.Fatalf("converged = %+v, want threshold after round 1", cv)
				}
			} else if res.Converged != nil {
				t.Fatalf("busy writer converged: %+v", res.Converged)
			}
		})
	}
}
