package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/criukit/criukit/cow"
)

// runCow runs the root command in-process (flags of the cow commands reset first).
func runCow(t *testing.T, args ...string) error {
	t.Helper()
	_ = cowDedupCmd.Flags().Set("in-place", "false")
	_ = cowDedupCmd.Flags().Set("json", "false")
	root.SetArgs(args)
	defer root.SetArgs(nil)
	return root.Execute()
}

func TestCowCLIRefusals(t *testing.T) {
	deduped := t.TempDir()
	if err := os.WriteFile(filepath.Join(deduped, cow.MarkerFile), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"restore", "-D", deduped, "-d", "--auto-dedup"}, "--auto-dedup"},
		{[]string{"restore", "--images-dir=" + deduped, "--stream"}, "--stream"},
		{[]string{"cow", "dedup", deduped}, "OUTDIR"},
		{[]string{"cow", "dedup", deduped, filepath.Join(t.TempDir(), "x")}, "already deduped"},
		{[]string{"cow", "materialize", t.TempDir(), filepath.Join(t.TempDir(), "y")}, "not deduped"},
		{[]string{"cow", "dump", "-D", deduped}, "need -t PID"},
		{[]string{"cow", "dump", "-t", "1", "-D", deduped, "--via", "magic"}, "--via"},
	} {
		err := runCow(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("criukit %s: error %v, want one mentioning %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
