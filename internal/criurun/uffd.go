package criurun

import "os"

// FeatureTrackMemUffd is the `criu check --feature` name of criu-patches/0010: `criu dump
// --track-mem-uffd` takes pages that userfaultfd write-protection says were not written since the
// previous dump from the parent images without reading them (iterative dumps without soft-dirty).
const FeatureTrackMemUffd = "track_mem_uffd"

// FindTrackMemUffd returns a CRIU with --track-mem-uffd: $CRIUKIT_CRIU if set (and it has the
// feature), else the patched build ($CRIUKIT_CRIU_COW, else CowDefaultBin). ok is false when none
// has it (stock CRIU); path is then empty.
func FindTrackMemUffd() (path string, ok bool) {
	var usableOK bool
	if c := os.Getenv(EnvCriu); c != "" {
		path, _, usableOK = usable(c)
	} else {
		path, _, usableOK = patchedBuild()
	}
	if usableOK && HasFeature(path, FeatureTrackMemUffd) {
		return path, true
	}
	return "", false
}
