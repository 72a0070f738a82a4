package cow

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ImagesDirArg returns the images directory named by criu restore/dump arguments (-D DIR, -DDIR,
// --images-dir DIR, --images-dir=DIR); "." (criu's default) when there is none.
func ImagesDirArg(args []string) string {
	dir := "."
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return dir
		case (a == "-D" || a == "--images-dir") && i+1 < len(args):
			dir = args[i+1]
			i++
		case strings.HasPrefix(a, "--images-dir="):
			dir = strings.TrimPrefix(a, "--images-dir=")
		case strings.HasPrefix(a, "-D") && len(a) > 2:
			dir = a[2:]
		}
	}
	return dir
}

// unsafeRestoreOpts are criu restore options that corrupt or cannot read deduped images (cow.md §4.4).
var unsafeRestoreOpts = map[string]string{
	"--auto-dedup": "punches holes in pages files that other processes still read through the parent chain (restore exits 0 with corrupted memory)",
	"--stream":     "the image streamer cannot follow the parent chain (`No parent for snapshot pagemap`)",
	"--lazy-pages": "lazy restore of pages shared through the parent chain is not verified (criu PR #2492 disabled dedup after fork for uffd)",
}

// CheckRestoreArgs returns an ErrUnsafeOpt error when args (criu restore arguments) restore a
// deduped directory with an option that breaks it. It returns nil for stock directories.
func CheckRestoreArgs(args []string) error {
	dir := ImagesDirArg(args)
	deduped := IsDeduped(dir)
	if !deduped {
		// A parent chain of ours without the marker (e.g. copied without it) counts too.
		if t, err := os.Readlink(filepath.Join(dir, "parent")); err == nil && strings.HasPrefix(t, "cow-") {
			deduped = true
		}
	}
	if !deduped {
		return nil
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		name, _, _ := strings.Cut(a, "=")
		if why, bad := unsafeRestoreOpts[name]; bad {
			return fmt.Errorf("%s is deduped by criukit cow: %s %w: it %s; restore without it, or run `criukit cow materialize %s OUT` and use OUT",
				dir, name, ErrUnsafeOpt, why, dir)
		}
	}
	return nil
}
