package criurun

import (
	"os"
	"os/exec"
	"strings"
)

// CRIU built by scripts/build-criu with criukit's COW patches (criu-patches/, docs/cow-criu.md).
// The patches are backward compatible both ways, so criukit prefers such a CRIU for the commands
// that gain from it (dump --cow, restore) when one is installed and CRIUKIT_CRIU does not name
// another binary.
const (
	// EnvCriuCow names the patched CRIU explicitly (default: CowDefaultBin when it exists).
	EnvCriuCow = "CRIUKIT_CRIU_COW"
	// CowDefaultBin is where scripts/build-criu installs it.
	CowDefaultBin = "/opt/criukit/criu-cow/sbin/criu"
)

// The `criu check --feature` names the patches add (stock CRIU answers "Unknown feature").
const (
	FeatureCowMovedVMAs = "cow_moved_vmas" // patch 1: COW kept for split, shrunk and mremap'ed VMAs
	FeatureCowHints     = "cow_hints"      // patch 2: PE_COW pages are neither read nor compared on restore
	FeatureCowSiblings  = "cow_siblings"   // patch 3: the children's shared version of pages the parent rewrote (PE_SIB)
)

// CowFeatures says which of criukit's COW patches a CRIU binary has.
type CowFeatures struct {
	MovedVMAs bool `json:"moved_vmas"`
	Hints     bool `json:"hints"`
	Siblings  bool `json:"siblings"`
}

// Any reports whether the binary has at least one of the patches.
func (f CowFeatures) Any() bool { return f.MovedVMAs || f.Hints || f.Siblings }

func (f CowFeatures) String() string {
	var s []string
	if f.MovedVMAs {
		s = append(s, FeatureCowMovedVMAs)
	}
	if f.Hints {
		s = append(s, FeatureCowHints)
	}
	if f.Siblings {
		s = append(s, FeatureCowSiblings)
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// HasFeature runs `criu check --feature NAME` (root only; false otherwise or on any error).
func HasFeature(criu, name string) bool {
	if os.Geteuid() != 0 {
		return false
	}
	return exec.Command(criu, "check", "--feature", name).Run() == nil
}

// Cow asks criu which COW patches it has.
func Cow(criu string) CowFeatures {
	return CowFeatures{MovedVMAs: HasFeature(criu, FeatureCowMovedVMAs), Hints: HasFeature(criu, FeatureCowHints),
		Siblings: HasFeature(criu, FeatureCowSiblings)}
}

// FindCow returns the CRIU to use where the COW patches help: the one CRIUKIT_CRIU names if set
// (whatever it has), else the patched build ($CRIUKIT_CRIU_COW, else CowDefaultBin) if it runs and
// has the patches, else Find's choice (stock, no patches).
func FindCow() (path, version string, feat CowFeatures, err error) {
	if os.Getenv(EnvCriu) == "" {
		if cand, v, ok := patchedBuild(); ok {
			if f := Cow(cand); f.Any() {
				return cand, v, f, nil
			}
		}
	}
	path, version, err = Find()
	if err != nil {
		return "", "", CowFeatures{}, err
	}
	return path, version, Cow(path), nil
}

// patchedBuild returns scripts/build-criu's CRIU ($CRIUKIT_CRIU_COW, else CowDefaultBin) when it
// exists and runs as CRIU >= 4.2 (whatever patches it has).
func patchedBuild() (path, version string, ok bool) {
	path = os.Getenv(EnvCriuCow)
	if path == "" {
		path = CowDefaultBin
	}
	return usable(path)
}

// usable returns path's CRIU version when path exists and runs as CRIU >= 4.2.
func usable(path string) (_, version string, ok bool) {
	if _, err := os.Stat(path); err != nil {
		return path, "", false
	}
	v, err := Version(path)
	if err != nil || !versionOK(v) {
		return path, "", false
	}
	return path, v, true
}
