package criurun

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const sampleLog = `(00.000000) Version: 4.2.1 (gitid 0)
(00.001533) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted
(00.010000) Dumping pid 42
(00.043169) Error (criu/files-reg.c:1790): Can't lookup mount=24 for fd=10 path=/dev/null
(00.043183) Error (criu/cr-dump.c:1545): Dump files (pid: 42) failed with -1
Error (criu/util.c:642): execvp("iptables-restore", ...) failed: No such file or directory
(00.052838) Error (criu/cr-dump.c:1975): Dumping FAILED.
`

func TestLastErrors(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "dump.log")
	if err := os.WriteFile(log, []byte(sampleLog), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		n     int
		first string // substring of the first returned line
		count int
	}{
		{n: 0, first: "Can't lookup mount=24", count: 4},
		{n: 2, first: "execvp", count: 2},
		{n: 1, first: "Dumping FAILED", count: 1},
		{n: 10, first: "Can't lookup mount=24", count: 4},
	} {
		got := LastErrors(log, tc.n)
		if len(got) != tc.count || !strings.Contains(got[0], tc.first) {
			t.Errorf("LastErrors(n=%d) = %q, want %d lines starting with %q", tc.n, got, tc.count, tc.first)
		}
		if slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, "RLIMIT_NOFILE") }) {
			t.Errorf("LastErrors(n=%d) kept the harmless RLIMIT_NOFILE line", tc.n)
		}
	}
	if got := LastErrors(filepath.Join(dir, "missing.log"), 3); got != nil {
		t.Errorf("missing log: %q", got)
	}
}

func TestErrorMessage(t *testing.T) {
	e := &Error{Op: "dump", Log: "/x/dump.log", Lines: []string{"Error (a.c:1): boom"}, Err: errors.New("exit status 1")}
	msg := e.Error()
	for _, want := range []string{"criu dump failed", "boom", "/x/dump.log"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if !errors.Is(e, ErrFailed) {
		t.Error("Error does not match ErrFailed")
	}
	e2 := &Error{Op: "restore", Output: "unknown option --bogus", Err: errors.New("exit status 1")}
	if !strings.Contains(e2.Error(), "--bogus") {
		t.Errorf("output not shown when there are no log lines: %q", e2.Error())
	}
}

func TestVersion(t *testing.T) {
	for _, tc := range []struct {
		out, version string
		ok           bool
	}{
		{"Version: 4.2.1\n", "4.2.1", true},
		{"Version: 4.2\nGitID: v4.2\n", "4.2", true},
		{"Version: 5.0\n", "5.0", true},
		{"Version: 4.10.0\n", "4.10.0", true},
		{"Version: 3.17.1\n", "3.17.1", false},
		{"Version: 4.1.1\n", "4.1.1", false},
		{"Version: 4\n", "4", false},
		{"Version: x.y\n", "x.y", false},
	} {
		v, err := parseVersion([]byte(tc.out))
		if err != nil || v != tc.version {
			t.Errorf("parseVersion(%q) = %q, %v", tc.out, v, err)
		}
		if got := versionOK(v); got != tc.ok {
			t.Errorf("versionOK(%q) = %v, want %v", v, got, tc.ok)
		}
	}
	if _, err := parseVersion([]byte("criu: command not found")); err == nil {
		t.Error("parseVersion accepted output without a Version line")
	}
}

// writeFakeCriu writes an executable script printing a version: it tests Find's choice logic only.
func writeFakeCriu(t *testing.T, version string) string {
	p := filepath.Join(t.TempDir(), "criu")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho 'Version: "+version+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFindEnv(t *testing.T) {
	for _, tc := range []struct {
		name, env string
		want      error
	}{
		{"new enough", writeFakeCriu(t, "4.2.1"), nil},
		{"too old", writeFakeCriu(t, "3.17.1"), ErrTooOld},
		{"missing", filepath.Join(t.TempDir(), "nope"), ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvCriu, tc.env)
			p, v, err := Find()
			if !errors.Is(err, tc.want) {
				t.Fatalf("Find() = %q %q %v, want %v", p, v, err, tc.want)
			}
			if err == nil && p != tc.env {
				t.Errorf("Find() = %q, want %q", p, tc.env)
			}
			if err != nil && !strings.Contains(err.Error(), EnvCriu) {
				t.Errorf("error does not say what to do: %v", err)
			}
		})
	}
}

func FuzzLastErrors(f *testing.F) {
	f.Add([]byte(sampleLog), 3)
	f.Add([]byte("Error ("), 0)
	f.Add([]byte(""), -1)
	f.Add([]byte(strings.Repeat("x", 70000)+"\nError (a): b\n"), 1)
	f.Fuzz(func(t *testing.T, data []byte, n int) {
		got := lastErrors(bufio.NewReader(strings.NewReader(string(data))), n)
		if n > 0 && len(got) > n {
			t.Fatalf("got %d lines, limit %d", len(got), n)
		}
		for _, l := range got {
			if !IsErrorLine(l) {
				t.Fatalf("non-error line returned: %q", l)
			}
		}
	})
}

func FuzzParseVersion(f *testing.F) {
	f.Add([]byte("Version: 4.2.1\n"))
	f.Add([]byte("Version:\n"))
	f.Add([]byte("Version: 99999999999999999999.1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if v, err := parseVersion(data); err == nil {
			_ = versionOK(v)
		}
	})
}

// TestIsErrorLineBUG: one IsErrorLine for criukit: BUG reports are errors (knownissues counted
// them, criurun did not), the RLIMIT_NOFILE line is not.
func TestIsErrorLineBUG(t *testing.T) {
	for line, want := range map[string]bool{
		"(00.012345) Error (criu/cr-dump.c:1234): Dumping FAILED.":              true,
		"(00.100000) BUG at criu/mem.c:571":                                     true,
		"(00.000100) Error (criu/util.c:1): Can't setup RLIMIT_NOFILE for self": false,
		"(00.000200) Warn  (criu/kerndat.c:1): something":                       false,
	} {
		if got := IsErrorLine(line); got != want {
			t.Errorf("IsErrorLine(%q) = %v, want %v", line, got, want)
		}
	}
}
