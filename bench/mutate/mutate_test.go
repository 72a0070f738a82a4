package main

import (
	"os"
	"testing"
	"time"

	"github.com/criukit/criukit/internal/testenv"
)

// TestFastSubset is the CI subset of the mutation harness: each Fast mutant (one per area:
// save options and queues, restore seq/options/FIN states, v4 packets) must be killed by a
// behavioural oracle. MUTATE_ALL=1 runs the whole catalogue instead (long: see bench/mutate).
func TestFastSubset(t *testing.T) {
	testenv.Root(t)
	testenv.File(t, "/dev/net/tun")
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	c := &Config{Root: root, Work: t.TempDir(), Timeout: 5 * time.Minute}
	ms := Select("", os.Getenv("MUTATE_ALL") == "")
	if len(ms) < 5 {
		t.Fatalf("only %d mutants selected", len(ms))
	}
	for _, o := range c.Mutate(ms, nil) {
		t.Logf("%-20s %-10s %5.1fs %s %s %s", o.ID, o.Status, o.Duration.Seconds(), o.CaughtBy, o.Oracle, o.Detail)
		if o.Status != "killed" && o.Status != "equivalent" {
			t.Errorf("mutant %s (%s) %s: %s", o.ID, o.What, o.Status, o.Detail)
		}
	}
}

func TestCatalogueFragments(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if len(Catalogue) < 30 {
		t.Errorf("catalogue has %d mutants, want >= 30", len(Catalogue))
	}
	seen := map[string]bool{}
	for _, m := range Catalogue {
		if seen[m.ID] {
			t.Errorf("duplicate mutant %s", m.ID)
		}
		seen[m.ID] = true
		b, err := os.ReadFile(root + "/" + m.File)
		if err != nil {
			t.Fatal(err)
		}
		if n := countOf(string(b), m.Old); n != 1 {
			t.Errorf("%s: fragment occurs %d times in %s", m.ID, n, m.File)
		}
	}
}
