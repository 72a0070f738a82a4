package tcplab

import (
	"regexp"
	"strings"
	"testing"

	"github.com/criukit/criukit/internal/testenv"
	"github.com/criukit/criukit/soccr"
)

// TestSeededFaults proves the suite catches known restore bugs: each fault, applied through the
// soccr test hook, must make at least one case fail.
func TestSeededFaults(t *testing.T) {
	testenv.Root(t)
	testenv.File(t, "/dev/net/tun")
	for _, tc := range []struct {
		name   string
		f      soccr.Faults
		filter string
	}{
		{"no-window", soccr.Faults{NoWindow: true}, `^(E01|E05|E06)/v4`},
		{"timestamp-16", soccr.Faults{TimestampDelta: -16}, `^(T01|T04)/v4`},
		{"fin-seq+1", soccr.Faults{FinSeqDelta: 1}, `^(H01|H03|H07)/v4`},
		{"unsent-split", soccr.Faults{UnsentDelta: 4096}, `^(E05|E06|H06)/v4`},
		{"unsent-split-neg", soccr.Faults{UnsentDelta: -4096}, `^(E05|E06|H06)/v4`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.f
			var failed []string
			for _, r := range Select(Cases(), regexp.MustCompile(tc.filter)) {
				res := RunCase(r.Case, r.Family, RunOptions{Faults: &f})
				if res.Status == "fail" {
					behaviour := false
					for _, e := range res.Errors {
						if !strings.HasPrefix(e, "[redump]") {
							behaviour = true
						}
					}
					failed = append(failed, res.Name)
					t.Logf("%s fails (behavioural: %v): %s", res.Name, behaviour, firstLine(res.Errors[0]))
				} else {
					t.Logf("%s %s despite the fault", res.Name, res.Status)
				}
			}
			if len(failed) == 0 {
				t.Errorf("fault %v was not caught by %s", f, tc.filter)
			}
		})
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
