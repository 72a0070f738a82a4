package tcplab

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/criukit/criukit/internal/testenv"
)

func TestCases(t *testing.T) {
	testenv.Root(t)
	testenv.File(t, "/dev/net/tun")
	var re *regexp.Regexp
	if f := os.Getenv("TCPLAB_FILTER"); f != "" {
		re = regexp.MustCompile(f)
	}
	for _, r := range Select(Cases(), re) {
		t.Run(Name(r.Case, r.Family), func(t *testing.T) {
			res := RunCase(r.Case, r.Family, RunOptions{PcapDir: os.Getenv("TCPLAB_PCAP")})
			t.Logf("%s %s %v hash=%s observed=%v", res.Name, res.Status, res.Duration.Round(1e6), res.Hash, res.Observed)
			if res.Status == "fail" {
				t.Errorf("%s: %s\n%s", res.Name, strings.Join(res.Errors, "\n"), strings.Join(res.Log, "\n"))
			} else if testing.Verbose() && os.Getenv("TCPLAB_TRACE") != "" {
				t.Log("\n" + strings.Join(res.Log, "\n"))
			}
		})
	}
}
