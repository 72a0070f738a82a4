package knownissues

import (
	"bytes"
	"strings"
	"testing"
)

func TestRulesWellFormed(t *testing.T) {
	s, err := Parse(rulesJSON)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Rules) < 15 {
		t.Fatalf("only %d rules", len(s.Rules))
	}
	for _, r := range s.Rules {
		if r.Title == "" || r.Explain == "" || r.Fix == "" || r.Source == "" || len(r.Samples) == 0 {
			t.Errorf("rule %s lacks title, explain, fix, source or samples", r.ID)
		}
	}
}

// TestSamples pins every rule's sample lines (taken from real failing CRIU runs): each sample is
// matched by its own rule, first in order.
func TestSamples(t *testing.T) {
	s := Default()
	for _, r := range s.Rules {
		for _, line := range r.Samples {
			t.Run(r.ID, func(t *testing.T) {
				got := s.MatchLine(line)
				if got == nil || got.ID != r.ID {
					id := "<none>"
					if got != nil {
						id = got.ID
					}
					t.Fatalf("sample %q matched %s, want %s", line, id, r.ID)
				}
			})
		}
	}
}

func TestScan(t *testing.T) {
	log := strings.Join([]string{
		"(00.000000) CRIU run id = x",
		"(00.000100) Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted",
		"(00.100000) Dumping path for 5 fd via self 21 [/tmp/x (deleted)]",
		"(00.902346) Error (criu/files-reg.c:1031): Can't dump ghost file /tmp/a b/c.bin of 3002368 size, increase limit",
		"(00.902364) Error (criu/cr-dump.c:1545): Dump files (pid: 4559) failed with -1",
		"(00.902400) Error (criu/files-reg.c:1031): Can't dump ghost file /tmp/d of 8192 size, increase limit",
		"(00.902953) Error (criu/cr-dump.c:1975): Dumping FAILED.",
	}, "\n")
	res, err := Default().Scan(strings.NewReader(log), "dump.log")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Matches) != 1 || res.Matches[0].ID != "ghost-limit" || res.Matches[0].Count != 2 || res.Matches[0].LineNo != 4 {
		t.Fatalf("matches: %+v", res.Matches)
	}
	if f := res.Matches[0].Fields; f["path"] != "/tmp/a b/c.bin" || f["size"] != "3002368" {
		t.Errorf("fields: %v", f)
	}
	if res.Errors != 4 || len(res.Unmatched) != 2 {
		t.Errorf("errors %d unmatched %q", res.Errors, res.Unmatched)
	}
	// The harmless line alone gives nothing.
	res, _ = Default().Scan(strings.NewReader(strings.Split(log, "\n")[1]), "")
	if res.Errors != 0 || len(res.Matches) != 0 {
		t.Errorf("harmless line counted: %+v", res)
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{``, `{`, `{"rules":[{"id":"a"}]}`, `{"rules":[{"id":"a","pattern":"("}]}`,
		`{"rules":[{"id":"a","pattern":"x"},{"id":"a","pattern":"y"}]}`, `{"rules":[null]}`} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%q) accepted", in)
		}
	}
}

func TestLongLine(t *testing.T) {
	long := "Error (x): Can't fork for 12: File exists " + strings.Repeat("x", 3*MaxLine)
	res, err := Default().Scan(strings.NewReader(long+"\nError (y): Need to set the --tcp-close options.\n"), "")
	if err != nil || len(res.Matches) != 2 || len(res.Matches[0].Line) > MaxLine {
		t.Fatalf("%v %+v", err, res)
	}
}

func FuzzScan(f *testing.F) {
	for _, r := range Default().Rules {
		for _, s := range r.Samples {
			f.Add([]byte(s + "\n"))
		}
	}
	f.Add([]byte("Error (\n\x00BUG at criu/mem.c:\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := Default().Scan(bytes.NewReader(data), "fuzz")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range res.Matches {
			if m.Rule == nil || m.Count < 1 || !m.Rule.Regexp().MatchString(m.Line) && len(m.Line) < MaxLine {
				t.Fatalf("bad match %+v", m)
			}
		}
	})
}
