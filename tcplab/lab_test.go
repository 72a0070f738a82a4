package tcplab

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/criukit/criukit/internal/testenv"
)

// TestCases runs the matrix. Environment knobs (used by bench/mutate):
// TCPLAB_FILTER (regexp of case names), TCPLAB_PCAP (dir for pcaps and traces),
// TCPLAB_RESULTS (append one JSON result per line to this file), TCPLAB_FAILFAST (skip the
// rest after the first case that fails on a behavioural oracle, i.e. not only on the re-dump).
func TestCases(t *testing.T) {
	testenv.Root(t)
	testenv.File(t, "/dev/net/tun")
	var re *regexp.Regexp
	if f := os.Getenv("TCPLAB_FILTER"); f != "" {
		re = regexp.MustCompile(f)
	}
	var out *json.Encoder
	if p := os.Getenv("TCPLAB_RESULTS"); p != "" {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		out = json.NewEncoder(f)
	}
	failfast := os.Getenv("TCPLAB_FAILFAST") != ""
	stop := false
	for _, r := range Select(Cases(), re) {
		if stop {
			break
		}
		t.Run(Name(r.Case, r.Family), func(t *testing.T) {
			res := RunCase(r.Case, r.Family, RunOptions{PcapDir: os.Getenv("TCPLAB_PCAP"), Engine: os.Getenv("TCPLAB_ENGINE")})
			if out != nil {
				_ = out.Encode(res)
			}
			t.Logf("%s %s %v hash=%s observed=%v", res.Name, res.Status, res.Duration.Round(1e6), res.Hash, res.Observed)
			if res.Status == "fail" {
				if failfast && Behavioural(res.Errors) {
					stop = true
				}
				t.Errorf("%s: %s\n%s", res.Name, strings.Join(res.Errors, "\n"), strings.Join(res.Log, "\n"))
			} else if testing.Verbose() && os.Getenv("TCPLAB_TRACE") != "" {
				t.Log("\n" + strings.Join(res.Log, "\n"))
			}
		})
	}
}
