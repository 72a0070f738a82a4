// Command tcplab-bench runs the whole tcplab suite once (or --repeat times) and prints cases per
// second and the total suite time, overall and for the cases that wait for no timer.
package main

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"time"

	"github.com/criukit/criukit/tcplab"
)

func main() {
	filter := flag.String("filter", "", "regexp of cases to run")
	repeat := flag.Int("repeat", 1, "runs of the suite")
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
	rep := tcplab.RunAll(re, *repeat, tcplab.RunOptions{}, nil)
	n := len(rep.Results) * rep.Runs
	var fast, fastN int
	var fastT time.Duration
	for _, r := range rep.Results {
		if r.Duration < 500*time.Millisecond {
			fast++
			fastT += r.Duration
			fastN++
		}
	}
	fmt.Printf("suite: %d case runs in %v (%d repeats): %.1f cases/s, %.0f ms/case\n", n, rep.Total.Round(time.Millisecond),
		rep.Runs, float64(n)/rep.Total.Seconds(), rep.Total.Seconds()*1000/float64(n))
	if fastN > 0 {
		fmt.Printf("cases without timer waits (last run): %d in %v: %.1f cases/s, %.0f ms/case (setup+teardown included)\n",
			fast, fastT.Round(time.Millisecond), float64(fast)/fastT.Seconds(), fastT.Seconds()*1000/float64(fast))
	}
	fmt.Print(tcplab.Summary(rep.Results))
	fmt.Printf("flaky: %d\n", len(rep.Flaky))
	if len(rep.Flaky) > 0 {
		os.Exit(1)
	}
}
