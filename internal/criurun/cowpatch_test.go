package criurun_test

import (
	"os"
	"testing"

	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/testenv"
)

// TestCowFeatures: stock CRIU answers "Unknown feature" for the COW features, the build of
// scripts/build-criu has all three, and FindCow prefers it unless CRIUKIT_CRIU names a binary.
func TestCowFeatures(t *testing.T) {
	harness.Criu(t)
	const stock = "/usr/local/sbin/criu"
	testenv.File(t, stock)
	if f := criurun.Cow(stock); f.Any() || f.String() != "none" {
		t.Errorf("stock %s reports COW patches: %s", stock, f)
	}
	patched := os.Getenv(criurun.EnvCriuCow)
	if patched == "" {
		patched = criurun.CowDefaultBin
	}
	testenv.File(t, patched) // scripts/build-criu
	if f := criurun.Cow(patched); !f.MovedVMAs || !f.Hints || !f.Siblings {
		t.Fatalf("%s: features %s, want cow_moved_vmas, cow_hints and cow_siblings (rebuild with scripts/build-criu)", patched, f)
	}

	t.Setenv(criurun.EnvCriu, "")
	p, _, f, err := criurun.FindCow()
	if err != nil || p != patched || !f.Hints {
		t.Errorf("FindCow without %s: %s %s %v, want %s", criurun.EnvCriu, p, f, err, patched)
	}
	t.Setenv(criurun.EnvCriu, stock)
	p, _, f, err = criurun.FindCow()
	if err != nil || p != stock || f.Any() {
		t.Errorf("FindCow with %s=%s: %s %s %v, want the stock one", criurun.EnvCriu, stock, p, f, err)
	}
}
