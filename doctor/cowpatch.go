package doctor

import (
	"fmt"

	"github.com/criukit/criukit/internal/criurun"
)

// cowPatches reports whether the CRIU in use has criukit's COW patches (criu-patches/, built by
// scripts/build-criu; docs/cow-criu.md), as three features answered by `criu check --feature`, and
// which CRIU `criukit dump --cow` and `criukit restore` will run.
func (r *Report) cowPatches(o Options) {
	if o.NoCriu || r.Criu == "" {
		return
	}
	// A CRIU older than 4.2 cannot start here (old-criu-* findings): its checks are not trusted,
	// and the patches exist for 4.2 only.
	if maj, min := parseMajMin(r.CriuVersion); maj < 4 || maj == 4 && min < 2 {
		return
	}
	f := criurun.Cow(r.Criu)
	const need = "forked trees whose children moved or split shared memory to restore shared (criukit dump --cow, restore)"
	r.Features = append(r.Features,
		Feature{Name: criurun.FeatureCowMovedVMAs, OK: f.MovedVMAs, Source: "criu check --feature " + criurun.FeatureCowMovedVMAs,
			Detail: "criukit COW patch 1: VmaEntry.cow_src, sub-range inheritance", Needed: need},
		Feature{Name: criurun.FeatureCowHints, OK: f.Hints, Source: "criu check --feature " + criurun.FeatureCowHints,
			Detail: "criukit COW patch 2: PE_COW pages skipped on restore", Needed: "restore that skips reading pages shared with the parent"},
		Feature{Name: criurun.FeatureCowSiblings, OK: f.Siblings, Source: "criu check --feature " + criurun.FeatureCowSiblings,
			Detail: "criukit COW patch 3: PE_SIB, the children's shared version premapped before fork",
			Needed: "forked trees whose parent rewrote memory its children still share to restore shared"})
	if f.Any() {
		r.add(Finding{ID: "criu-cow-patches", Severity: SevInfo, Where: r.Criu,
			What: fmt.Sprintf("CRIU %s has criukit's COW patches (%s): restored trees share memory as before the dump", r.CriuVersion, f),
			Fix:  "nothing to do; its images restore with stock CRIU too (without the sharing)"})
		return
	}
	// Stock CRIU in use: say whether a patched one is there for dump --cow / restore.
	p, v, pf, err := criurun.FindCow()
	if err == nil && pf.Any() && p != r.Criu {
		r.add(Finding{ID: "criu-cow-patches", Severity: SevInfo, Where: p,
			What: fmt.Sprintf("CRIU %s at %s is stock; criukit dump --cow and restore use CRIU %s with the COW patches (%s) at %s", r.CriuVersion, r.Criu, v, pf, p),
			Fix:  "nothing to do; set CRIUKIT_CRIU to force one CRIU for everything"})
		return
	}
	r.add(Finding{ID: "criu-cow-patches", Severity: SevInfo, Where: r.Criu,
		What: fmt.Sprintf("CRIU %s has no COW patches: a forked child that moved (mremap) or split shared memory is restored with a private copy of it, and restore reads and compares every shared page", r.CriuVersion),
		Fix:  "build the patched CRIU with scripts/build-criu (installs into /opt/criukit/criu-cow; criukit dump --cow and restore then use it)"})
}
