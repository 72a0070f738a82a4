package tcplab

import (
	"encoding/json"
	"os"
	"path/filepath"
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
	var all []Result
	for _, r := range Select(Cases(), re) {
		if stop {
			break
		}
		t.Run(Name(r.Case, r.Family), func(t *testing.T) {
			res := RunCase(r.Case, r.Family, RunOptions{PcapDir: os.Getenv("TCPLAB_PCAP"), Engine: os.Getenv("TCPLAB_ENGINE")})
			if out != nil {
				_ = out.Encode(res)
			}
			all = append(all, res)
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
	checkGolden(t, re, all)
}

// checkGolden compares a full run (no filter, soccr engine) with testdata/golden/<uname -r>
// when that kernel release was recorded (TCPLAB_GOLDEN_RECORD=1 records it); for another
// release the review list is only logged: traces legitimately change between kernels.
func checkGolden(t *testing.T, re *regexp.Regexp, all []Result) {
	record := os.Getenv("TCPLAB_GOLDEN_RECORD") != ""
	if re != nil || os.Getenv("TCPLAB_ENGINE") != "" || len(all) == 0 || t.Failed() {
		return
	}
	dir := "testdata/golden"
	if _, err := os.Stat(filepath.Join(dir, KernelRelease(), "index.json")); err != nil && !record {
		t.Logf("golden: no traces for kernel %s in %s (TCPLAB_GOLDEN_RECORD=1 records them)", KernelRelease(), dir)
		return
	}
	if !record { // compare in a scratch copy: a test never rewrites testdata
		tmp := t.TempDir()
		if err := os.CopyFS(filepath.Join(tmp, KernelRelease()), os.DirFS(filepath.Join(dir, KernelRelease()))); err != nil {
			t.Fatal(err)
		}
		dir = tmp
	}
	g, err := Golden(dir, all, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(g.String())
	if g.Mode == "compare" && len(g.Diffs) > 0 {
		t.Errorf("%d case runs differ from the golden traces of kernel %s:\n%s", len(g.Diffs), g.Release, g)
	}
}
