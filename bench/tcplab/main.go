// Command tcplab-bench runs the whole tcplab suite once (or --repeat times) with each engine
// (soccr, CRIU's libsoccr) and prints cases per second and the suite time per engine and in
// total, overall and for the cases that wait for no timer, with the load average (the 2 CPUs
// may be shared).
package main

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/criukit/criukit/tcplab"
)

func main() {
	filter := flag.String("filter", "", "regexp of cases to run")
	repeat := flag.Int("repeat", 1, "runs of the suite")
	engines := flag.String("engines", "soccr,libsoccr", "comma-separated engines: soccr (Go port), libsoccr (CRIU's C library)")
	flag.Parse()
	for _, f := range []tcplab.Family{tcplab.IPv4, tcplab.IPv6} {
		const n = 20
		t0 := time.Now()
		for i := 0; i < n; i++ {
			l, err := tcplab.New(tcplab.Options{Family: f})
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			l.Close()
		}
		fmt.Printf("lab set-up + teardown (%v): %.1f ms\n", f, time.Since(t0).Seconds()*1000/n)
	}
	var re *regexp.Regexp
	if *filter != "" {
		re = regexp.MustCompile(*filter)
	}
	t0 := time.Now()
	var total int
	for _, eng := range strings.Split(*engines, ",") {
		if eng == tcplab.EngineLibsoccr {
			if _, err := os.Stat(tcplab.LibsoccrHelper()); err != nil {
				fmt.Printf("engine libsoccr: skipped (%v; run scripts/build-libsoccr)\n", err)
				continue
			}
		}
		rep := tcplab.RunAll(re, *repeat, tcplab.RunOptions{Engine: eng}, nil)
		n := len(rep.Results) * rep.Runs
		total += n
		var fast, fastN int
		var fastT time.Duration
		for _, r := range rep.Results {
			if r.Duration < 500*time.Millisecond && r.Status != "skip" {
				fast++
				fastT += r.Duration
				fastN++
			}
		}
		fmt.Printf("engine %s: %d case runs (v4+v6) in %v (%d repeats): %.1f cases/s, %.0f ms/case\n", eng, n, rep.Total.Round(time.Millisecond),
			rep.Runs, float64(n)/rep.Total.Seconds(), rep.Total.Seconds()*1000/float64(n))
		if fastN > 0 {
			fmt.Printf("  cases without timer waits (last run): %d in %v: %.0f ms/case (setup+teardown included)\n",
				fast, fastT.Round(time.Millisecond), fastT.Seconds()*1000/float64(fast))
		}
		fmt.Print(indent(tcplab.Summary(rep.Results)))
		fmt.Printf("  flaky: %d\n", len(rep.Flaky))
	}
	fmt.Printf("full suite, all engines: %d case runs in %v on %d CPUs (load average at the end: %s)\n", total,
		time.Since(t0).Round(time.Second), runtime.NumCPU(), loadavg())
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n  ") + "\n"
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
