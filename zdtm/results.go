package zdtm

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Modes are scripts/zdtm's modes, in table order.
var Modes = []string{"stock", "roundtrip", "cow-rewrite", "cow-pageserver", "netrw-identity", "patched"}

// Result is one line of scripts/zdtm's results.tsv: a test run in one mode.
type Result struct {
	Test    string `json:"test"`
	Mode    string `json:"mode"`
	Status  string `json:"status"` // PASS, FAIL, SKIP
	Seconds int    `json:"seconds"`
	Reason  string `json:"reason,omitempty"`
}

// ReadResults reads results.tsv; a later line for the same test and mode replaces an earlier one
// (a rerun). Only tests in keep are returned when keep is not nil.
func ReadResults(path string, keep map[string]bool) ([]Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	idx := map[[2]string]int{}
	var out []Result
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		fs := strings.SplitN(sc.Text(), "\t", 5)
		if len(fs) < 4 {
			return nil, fmt.Errorf("%s line %d: want test, mode, status, seconds[, reason]", path, n)
		}
		secs, _ := strconv.Atoi(fs[3])
		r := Result{Test: fs[0], Mode: fs[1], Status: fs[2], Seconds: secs}
		if len(fs) == 5 {
			r.Reason = strings.TrimSpace(fs[4])
		}
		if keep != nil && !keep[r.Test] {
			continue
		}
		k := [2]string{r.Test, r.Mode}
		if i, ok := idx[k]; ok {
			out[i] = r
			continue
		}
		idx[k] = len(out)
		out = append(out, r)
	}
	return out, sc.Err()
}

// MergeRerun folds a rerun of failed runs into rs: a FAIL whose rerun passed becomes FLAKY (it
// failed once, e.g. a zdtm start-up alarm on a loaded machine, and passed when run again); a
// FAIL whose rerun failed too keeps FAIL with the rerun's reason.
func MergeRerun(rs, rerun []Result) []Result {
	again := map[[2]string]Result{}
	for _, r := range rerun {
		again[[2]string{r.Test, r.Mode}] = r
	}
	out := append([]Result(nil), rs...)
	for i, r := range out {
		a, ok := again[[2]string{r.Test, r.Mode}]
		if !ok || r.Status != "FAIL" {
			continue
		}
		switch a.Status {
		case "PASS":
			out[i].Status = "FLAKY"
			out[i].Reason = "failed once (" + r.Reason + "), passed when run again"
		case "FAIL":
			if a.Reason != "" {
				out[i].Reason = a.Reason
			}
		}
	}
	return out
}

// Regression is a test that passes in stock and fails in another mode.
type Regression struct {
	Test, Mode, Reason string
}

// Regressions lists the tests that PASS in stock and FAIL in another mode, sorted.
func Regressions(rs []Result) []Regression {
	stock := map[string]bool{}
	for _, r := range rs {
		if r.Mode == "stock" && (r.Status == "PASS" || r.Status == "FLAKY") {
			stock[r.Test] = true
		}
	}
	var out []Regression
	for _, r := range rs {
		if r.Mode != "stock" && r.Status == "FAIL" && stock[r.Test] {
			out = append(out, Regression{r.Test, r.Mode, r.Reason})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Mode != out[j].Mode {
			return out[i].Mode < out[j].Mode
		}
		return out[i].Test < out[j].Test
	})
	return out
}

// WriteTable prints mode x (pass, fail, skip, seconds) and, per mode, the failing tests with
// their reason; fails that also fail in stock are marked "(also stock)".
func WriteTable(w io.Writer, rs []Result) {
	type cnt struct{ pass, fail, skip, flaky, secs int }
	by := map[string]*cnt{}
	tests := map[string]bool{}
	stockFail := map[string]bool{}
	for _, r := range rs {
		c := by[r.Mode]
		if c == nil {
			c = &cnt{}
			by[r.Mode] = c
		}
		tests[r.Test] = true
		c.secs += r.Seconds
		switch r.Status {
		case "PASS":
			c.pass++
		case "FLAKY":
			c.pass++
			c.flaky++
		case "FAIL":
			c.fail++
			if r.Mode == "stock" {
				stockFail[r.Test] = true
			}
		default:
			c.skip++
		}
	}
	modes := append([]string(nil), Modes...)
	for m := range by {
		if !contains(modes, m) {
			modes = append(modes, m)
		}
	}
	fmt.Fprintf(w, "%d tests (flavor h)\n", len(tests))
	fmt.Fprintf(w, "%-16s %6s %6s %6s %8s  %s\n", "mode", "pass", "fail", "skip", "seconds", "(pass includes flaky: failed once, passed when rerun)")
	for _, m := range modes {
		c := by[m]
		if c == nil {
			continue
		}
		fmt.Fprintf(w, "%-16s %6d %6d %6d %8d  flaky %d\n", m, c.pass, c.fail, c.skip, c.secs, c.flaky)
	}
	for _, m := range modes {
		var fails []string
		for _, r := range rs {
			if r.Mode == m && r.Status == "FAIL" {
				s := r.Test
				if m != "stock" && stockFail[r.Test] {
					s += " (also stock)"
				}
				if r.Reason != "" {
					s += ": " + r.Reason
				}
				fails = append(fails, s)
			}
		}
		if len(fails) == 0 {
			continue
		}
		sort.Strings(fails)
		fmt.Fprintf(w, "\n%s fails (%d):\n", m, len(fails))
		for _, f := range fails {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
	for _, m := range modes {
		var fl []string
		for _, r := range rs {
			if r.Mode == m && r.Status == "FLAKY" {
				fl = append(fl, r.Test+": "+r.Reason)
			}
		}
		if len(fl) == 0 {
			continue
		}
		sort.Strings(fl)
		fmt.Fprintf(w, "\n%s flaky (%d):\n", m, len(fl))
		for _, f := range fl {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
