// Package units formats byte counts the one way criukit prints them (IEC units: KiB, MiB, GiB).
// crit-compatible output (critjson's --nopl sizes) keeps crit's own format and does not use it.
package units

import (
	"fmt"
	"strconv"
)

// Bytes formats n with an IEC unit: "512 B", "4.0 KiB", "2.9 MiB", "1.25 GiB", "3.00 TiB".
func Bytes(n int64) string {
	f := float64(n)
	switch {
	case n >= 1<<40 || n <= -(1<<40):
		return fmt.Sprintf("%.2f TiB", f/(1<<40))
	case n >= 1<<30 || n <= -(1<<30):
		return fmt.Sprintf("%.2f GiB", f/(1<<30))
	case n >= 1<<20 || n <= -(1<<20):
		return fmt.Sprintf("%.1f MiB", f/(1<<20))
	case n >= 1<<10 || n <= -(1<<10):
		return fmt.Sprintf("%.1f KiB", f/(1<<10))
	}
	return strconv.FormatInt(n, 10) + " B"
}

// BytesExact formats n as the exact count and, from 1 KiB on, its IEC value: "3002368 (2.9 MiB)".
func BytesExact(n int64) string {
	if n < 1<<10 && n > -(1<<10) {
		return strconv.FormatInt(n, 10)
	}
	return strconv.FormatInt(n, 10) + " (" + Bytes(n) + ")"
}
