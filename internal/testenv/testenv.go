// Package testenv decides whether a test that needs the real machine (root, CRIU, namespaces,
// /dev/kvm, ...) can run. Outside CI a missing requirement skips the test with the reason;
// under CI=true it fails the test, so CI never passes by skipping live tests.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// InCI reports whether the CI environment variable asks for strict mode.
func InCI() bool { return os.Getenv("CI") == "true" }

// Unavailable skips the test (or fails it under CI=true) with a formatted reason.
func Unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		tb.Fatalf("required by this test but missing (CI=true makes this a failure): %s", msg)
	}
	tb.Skipf("skipped: %s", msg)
}

// Root requires uid 0.
func Root(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Unavailable(tb, "needs root (running as uid %d)", os.Geteuid())
	}
}

// Command requires an executable on PATH and returns its path.
func Command(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(tb, "needs %q on PATH: %v", name, err)
	}
	return p
}

// File requires a path to exist (for example /dev/kvm).
func File(tb testing.TB, path string) {
	tb.Helper()
	if _, err := os.Stat(path); err != nil {
		Unavailable(tb, "needs %s: %v", path, err)
	}
}

// Short skips long live tests under `go test -short`, never in CI.
func Short(tb testing.TB) {
	tb.Helper()
	if testing.Short() && !InCI() {
		tb.Skip("skipped in -short mode")
	}
}

// Env returns a clean description of why something is missing, for error messages.
func Env(keys ...string) string {
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%q ", k, os.Getenv(k))
	}
	return strings.TrimSpace(b.String())
}
