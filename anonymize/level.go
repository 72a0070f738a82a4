package anonymize

import (
	"errors"
	"fmt"
	"strings"
)

// Level says how much is replaced. Each level includes the ones before it.
type Level int

const (
	// Inventory writes no images: it reports what would be replaced, by category, with samples.
	Inventory Level = iota
	// Content replaces payloads (streams, queues, ghost files, memfd/shm pages, tmpfs files) with
	// same-length filler and rewrites argv/env values in memory. Restorable on the same host.
	Content
	// Identity (default) also pseudonymizes paths, names, hosts, IPs, MACs, ifnames, uids/gids in
	// images, raw dumps, tarballs and logs, and every dictionary value in memory pages.
	Identity
	// Structure also zeroes memory except vdso/vvar and registers except segment selectors and mode.
	// CRIU's restore (with --leave-stopped) still runs to "Restore finished successfully".
	Structure
	// Paranoid also drops payloads (lengths fixed), maps every path component, blanks
	// filters/policy blobs, maps ports and shifts timestamps. Decodable, not restorable.
	Paranoid
)

var levelNames = []string{"inventory", "content", "identity", "structure", "paranoid"}

func (l Level) String() string {
	if l >= 0 && int(l) < len(levelNames) {
		return levelNames[l]
	}
	return fmt.Sprintf("level(%d)", int(l))
}

// ErrLevel reports an unknown level name.
var ErrLevel = errors.New("unknown level")

// ParseLevel parses a level name (or its number 0-4).
func ParseLevel(s string) (Level, error) {
	for i, n := range levelNames {
		if strings.EqualFold(s, n) || s == fmt.Sprint(i) {
			return Level(i), nil
		}
	}
	return 0, fmt.Errorf("%w %q: use one of %s", ErrLevel, s, strings.Join(levelNames, ", "))
}
