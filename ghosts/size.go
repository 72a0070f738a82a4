package ghosts

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/criukit/criukit/internal/units"
)

// DefaultGhostLimit is CRIU's default --ghost-limit (DEFAULT_GHOST_LIMIT, 1 MiB).
const DefaultGhostLimit = 1 << 20

// ParseSize parses a size the way CRIU parses --ghost-limit: a decimal number, optionally followed
// by K, M or G (powers of 1024). Unlike CRIU (which uses atol and ignores junk) it rejects bad input.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	switch {
	case strings.HasSuffix(t, "K"):
		mult, t = 1<<10, strings.TrimSuffix(t, "K")
	case strings.HasSuffix(t, "M"):
		mult, t = 1<<20, strings.TrimSuffix(t, "M")
	case strings.HasSuffix(t, "G"):
		mult, t = 1<<30, strings.TrimSuffix(t, "G")
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%w: %q (want bytes, or a number with K, M or G suffix, e.g. 4M)", ErrBadSize, s)
	}
	return n * mult, nil
}

// FormatSize prints n in bytes with a human-readable IEC value, e.g. "3002368 (2.9 MiB)".
func FormatSize(n int64) string { return units.BytesExact(n) }
