// Command zdtm-bench runs CRIU's zdtm suite (scripts/zdtm) in every criukit mode and prints the
// table mode x (pass, fail, skip) with the failing tests named, the tests that pass in stock but
// fail in another mode, and the codec corpus counts of every kept dump dir (criukit zdtm codec).
//
//	go run ./bench/zdtm [-list all|ci|FILE] [-modes stock,roundtrip,...] [-j 3] [-out DIR]
//	go run ./bench/zdtm -results DIR     # only print the table of an earlier run (and DIR/rerun)
//
// After the run every failed test runs once more, alone (-rerun): a failure that passes then is
// counted as flaky (load: zdtm's start-up alarm, criu's freeze timeout), not as a criukit bug.
//
// The full run (-list all: every test `zdtm.py run -a` runs, minus scripts/zdtm.d/exclude.list,
// flavor h) takes about an hour on 2 cores; it needs root.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/criukit/criukit/zdtm"
)

var (
	list    = flag.String("list", "all", "tests: all, ci or a file with one test per line")
	modes   = flag.String("modes", strings.Join(zdtm.Modes, ","), "modes, comma-separated")
	jobs    = flag.Int("j", 3, "tests run at once (each runs its modes in turn)")
	out     = flag.String("out", "", "output dir (default: a new temp dir)")
	results = flag.String("results", "", "print the table of this earlier output dir and exit")
	noCodec = flag.Bool("nocodec", false, "skip the codec check of the kept dumps")
	rerun   = flag.Bool("rerun", true, "run every failed test once more, alone, after the run")
)

// rerunFails runs each "test\tmode" again into dir/rerun (one at a time).
func rerunFails(repo, dir string, fl []string) error {
	for _, tm := range fl {
		t, m, _ := strings.Cut(tm, "\t")
		cmd := exec.Command(filepath.Join(repo, "scripts/zdtm"), "run", "-m", m, "-o", filepath.Join(dir, "rerun"), t)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	flag.Parse()
	repo, err := repoRoot()
	if err != nil {
		fail(err)
	}
	dir := *results
	if dir == "" {
		dir = *out
		if dir == "" {
			if dir, err = os.MkdirTemp("", "criukit-zdtm-bench-"); err != nil {
				fail(err)
			}
		}
		start := time.Now()
		cmd := exec.Command(filepath.Join(repo, "scripts/zdtm"), "run", "-m", *modes, "-j", fmt.Sprint(*jobs), "-k", "-o", dir, "-l", *list)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "scripts/zdtm: %v (the table below still counts what ran)\n", err)
		}
		fmt.Printf("run time %s (-j %d)\n", time.Since(start).Round(time.Second), *jobs)
	}
	keep, err := testSet(repo, *list)
	if err != nil {
		fail(err)
	}
	rs, err := zdtm.ReadResults(filepath.Join(dir, "results.tsv"), keep)
	if err != nil {
		fail(err)
	}
	if *rerun && *results == "" {
		// every failed run once more, alone (-j 1): tells load-induced failures (zdtm's start-up
		// alarm, criu's freeze timeout) from real ones
		var fl []string
		for _, r := range rs {
			if r.Status == "FAIL" {
				fl = append(fl, r.Test+"\t"+r.Mode)
			}
		}
		if err := rerunFails(repo, dir, fl); err != nil {
			fmt.Fprintln(os.Stderr, "rerun:", err)
		}
	}
	if again, err := zdtm.ReadResults(filepath.Join(dir, "rerun", "results.tsv"), keep); err == nil {
		rs = zdtm.MergeRerun(rs, again)
	}
	zdtm.WriteTable(os.Stdout, rs)
	regs := zdtm.Regressions(rs)
	fmt.Printf("\npass in stock, fail in another mode: %d\n", len(regs))
	for _, r := range regs {
		fmt.Printf("  %-15s %s: %s\n", r.Mode, r.Test, r.Reason)
	}
	if *noCodec {
		return
	}
	dirs, err := zdtm.DumpDirs(filepath.Join(dir, "dumps"))
	if err != nil || len(dirs) == 0 {
		fmt.Printf("\ncodec: no kept dumps under %s\n", filepath.Join(dir, "dumps"))
		return
	}
	var c zdtm.Corpus
	reps, err := zdtm.CheckDirs(dirs, zdtm.CodecOptions{Python: zdtm.DefaultPython})
	if err != nil {
		fail(err)
	}
	for _, r := range reps {
		c.Add(r)
	}
	fmt.Printf("\ncodec corpus check of every kept dump dir (all modes):\n")
	c.Write(os.Stdout)
}

// testSet is the tests of the list (nil: all in the results).
func testSet(repo, l string) (map[string]bool, error) {
	b, err := exec.Command(filepath.Join(repo, "scripts/zdtm"), "list", l).Output()
	if err != nil {
		return nil, fmt.Errorf("scripts/zdtm list %s: %w", l, err)
	}
	m := map[string]bool{}
	for _, t := range strings.Fields(string(b)) {
		m[t] = true
	}
	return m, nil
}

func repoRoot() (string, error) {
	b, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m: %w (run from the criukit module)", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "zdtm-bench:", err)
	os.Exit(1)
}
