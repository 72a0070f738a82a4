package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestOneCLIStyle keeps the command line to one style: output through cmd.OutOrStdout() (never
// os.Stdout or fmt.Print*, so every command is testable in-process), flags bound to variables with
// XxxVar (no Flags().GetX with ignored errors), no hand-written criu argument parsing (use
// criurun.ParseArgs/HasArg/CutArg), no own signal handling (main's context), byte sizes through
// internal/units.
func TestOneCLIStyle(t *testing.T) {
	bad := map[string]*regexp.Regexp{
		"os.Stdout (use cmd.OutOrStdout())":                 regexp.MustCompile(`\bos\.Stdout\b`),
		"fmt.Print* (use fmt.Fprint* to cmd.OutOrStdout())": regexp.MustCompile(`\bfmt\.Print(f|ln)?\(`),
		"Flags().GetX (bind with XxxVar)":                   regexp.MustCompile(`Flags\(\)\.Get[A-Z]`),
		"signal.Notify (main's context is signal-aware)":    regexp.MustCompile(`signal\.Notify`),
		"own criu arg parser (use criurun.ParseArgs)":       regexp.MustCompile(`case "-t", "--tree"|a == "-t" \|\|`),
		"own size formatter (use internal/units)":           regexp.MustCompile(`"%\.1f [KMG]iB"`),
	}
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			for what, re := range bad {
				if f == "main.go" && strings.Contains(what, "signal") {
					continue
				}
				if re.MatchString(line) {
					t.Errorf("%s:%d: %s: %s", f, i+1, what, strings.TrimSpace(line))
				}
			}
		}
	}
}
