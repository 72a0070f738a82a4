package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/criukit/criukit/tcplab"
	"github.com/spf13/cobra"
)

// tcplabFlags holds the flags of the tcplab subcommands (bound with XxxVar, like every command).
var tcplabFlags struct {
	filter, pcap, golden, engine    string
	repeat                          int
	runJSON, listJSON, goldenUpdate bool
}

var tcplabCmd = &cobra.Command{
	Use:   "tcplab",
	Short: "Deterministic TCP checkpoint/restore lab (two netns, a userspace switch, soccr)",
	Long: `tcplab runs two real kernel TCP sockets in two fresh network namespaces joined by TUN
devices. Every packet passes through a switch in this process, which can hold, drop, reorder,
duplicate or inject it, and either socket can be checkpointed and restored with soccr (a Go port
of CRIU's libsoccr) at any point. Cases follow the matrix of tcp.md section 5 (families E, R, W,
T, H, P, S, M), each in IPv4 and IPv6. Needs root and /dev/net/tun.

Delivery is lock-step and the namespaces are tuned for determinism (no TLP/RACK/F-RTO, quickack,
fixed buffers, every RTO = 1 s), so each case's canonical trace (sequence numbers relative to the
ISN, timestamps masked) hashes the same run after run.`,
}

var tcplabList = &cobra.Command{
	Use:   "list",
	Short: "List the cases with their expected outcome",
	Example: `  criukit tcplab list
  criukit tcplab list --json | jq '.[].id'`,
	RunE: func(cmd *cobra.Command, args []string) error {
		stdout := cmd.OutOrStdout()
		asJSON := tcplabFlags.listJSON
		cases := tcplab.Cases()
		if asJSON {
			type row struct {
				ID, Title, Expect string
				KernelDependent   bool
			}
			var rows []row
			for _, c := range cases {
				rows = append(rows, row{c.ID, c.Title, c.Expect, c.KernelDependent})
			}
			return json.NewEncoder(stdout).Encode(rows)
		}
		w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "ID\tKD\tTITLE\tEXPECTED")
		for _, c := range cases {
			kd := ""
			if c.KernelDependent {
				kd = "*"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", c.ID, kd, c.Title, c.Expect)
		}
		return w.Flush()
	},
}

var tcplabRun = &cobra.Command{
	Use:   "run",
	Short: "Run cases and print result, time, trace hash and flakiness",
	Long: `Runs the selected cases (each in IPv4 and IPv6) one after the other in fresh namespaces and
prints a table: case, result (pass, fail, observed = kernel-dependent outcome recorded), time,
trace hash and, with --repeat N, whether the result or the trace hash differed between runs.
--pcap DIR writes one pcap (open it in Wireshark) and one readable trace per case.
--golden DIR keeps per-kernel-release golden traces (DIR/<uname -r>/index.json and one canonical
trace per case): the first run on a kernel records them, later runs print the first differing
packet of each case whose trace changed (exit 1), and a run on a kernel without traces records
them and prints a review list against the most recent other release.
--engine libsoccr runs every save/restore through CRIU's C libsoccr (differential testing).
While running, a progress line is shown on stderr when stderr is a terminal (not with --json).
The exit status is 1 if a case failed or was flaky.`,
	Example: `  criukit tcplab run
  criukit tcplab run --filter '^H0[1-4]' --pcap /tmp/tcplab
  criukit tcplab run --repeat 20 --json > report.json
  criukit tcplab run --golden testdata/golden      # first run records, later runs compare
  criukit tcplab run --engine libsoccr --filter '^H'`,
	RunE: func(cmd *cobra.Command, args []string) error {
		stdout := cmd.OutOrStdout()
		filter, repeat, pcap, asJSON := tcplabFlags.filter, tcplabFlags.repeat, tcplabFlags.pcap, tcplabFlags.runJSON
		golden, goldenUpdate, engine := tcplabFlags.golden, tcplabFlags.goldenUpdate, tcplabFlags.engine
		if os.Geteuid() != 0 {
			return fmt.Errorf("tcplab needs root (network namespaces, TUN, TCP_REPAIR)")
		}
		var re *regexp.Regexp
		if filter != "" {
			var err error
			if re, err = regexp.Compile(filter); err != nil {
				return fmt.Errorf("--filter: %w", err)
			}
		}
		if pcap != "" {
			if err := os.MkdirAll(pcap, 0o755); err != nil {
				return err
			}
		}
		n := 0
		// The \r progress line is for a person watching: only on a terminal.
		progress := !asJSON && isTerminal(os.Stderr)
		if engine != tcplab.EngineSoccr && engine != tcplab.EngineLibsoccr {
			return fmt.Errorf("--engine %q: want soccr or libsoccr", engine)
		}
		rep := tcplab.RunAll(re, repeat, tcplab.RunOptions{PcapDir: pcap, Engine: engine}, func(r tcplab.Result) {
			n++
			if progress {
				fmt.Fprintf(os.Stderr, "\r%d runs done (%s %s)          ", n, r.Name, r.Status)
			}
		})
		if progress {
			fmt.Fprintln(os.Stderr)
		}
		if asJSON {
			if err := json.NewEncoder(stdout).Encode(rep); err != nil {
				return err
			}
		} else {
			w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "CASE\tRESULT\tTIME\tHASH\tFLAKY\tNOTE")
			for _, r := range rep.Results {
				note := ""
				if len(r.Errors) > 0 {
					note = strings.SplitN(r.Errors[0], "\n", 2)[0]
				} else if len(r.Observed) > 0 {
					note = strings.Join(r.Observed, "; ")
				}
				flaky := "-"
				if repeat > 1 {
					flaky = "no"
					if rep.IsFlaky(r.Name) {
						flaky = "YES"
					}
				}
				fmt.Fprintf(w, "%s\t%s\t%v\t%s\t%s\t%s\n", r.Name, r.Status, r.Duration.Round(time.Millisecond), r.Hash, flaky, note)
			}
			w.Flush()
			fmt.Fprint(stdout, tcplab.Summary(rep.Results))
			fmt.Fprintf(stdout, "%d case runs x %d in %v; %d flaky\n", len(rep.Results), rep.Runs, rep.Total.Round(time.Millisecond), len(rep.Flaky))
		}
		if golden != "" {
			g, err := tcplab.Golden(golden, rep.Results, goldenUpdate)
			if err != nil {
				return fmt.Errorf("--golden: %w", err)
			}
			fmt.Fprint(cmd.ErrOrStderr(), g.String())
			if g.Mode == "compare" && len(g.Diffs) > 0 && !goldenUpdate {
				return fmt.Errorf("%d cases differ from the golden traces of kernel %s (--golden-update re-records them)", len(g.Diffs), g.Release)
			}
		}
		for _, r := range rep.Results {
			if r.Status == "fail" {
				return fmt.Errorf("some cases failed")
			}
		}
		if len(rep.Flaky) > 0 {
			return fmt.Errorf("%d cases were flaky", len(rep.Flaky))
		}
		return nil
	},
}

func init() {
	tcplabRun.Flags().StringVar(&tcplabFlags.filter, "filter", "", "run only cases whose name (e.g. H03/v6) or title matches this regexp")
	tcplabRun.Flags().IntVar(&tcplabFlags.repeat, "repeat", 1, "run the selection N times and report cases whose result or trace hash differed")
	tcplabRun.Flags().StringVar(&tcplabFlags.pcap, "pcap", "", "write <case>.pcap and <case>.txt (readable trace) into this directory")
	tcplabRun.Flags().BoolVar(&tcplabFlags.runJSON, "json", false, "print the report as JSON")
	tcplabRun.Flags().StringVar(&tcplabFlags.golden, "golden", "", "compare with (or record) the golden traces of this kernel release in DIR/<uname -r>; another release's traces give a review list")
	tcplabRun.Flags().BoolVar(&tcplabFlags.goldenUpdate, "golden-update", false, "with --golden: re-record the cases that differ")
	tcplabRun.Flags().StringVar(&tcplabFlags.engine, "engine", tcplab.EngineSoccr, "save/restore with soccr (the Go port) or libsoccr (CRIU's C library, built by scripts/build-libsoccr)")
	tcplabList.Flags().BoolVar(&tcplabFlags.listJSON, "json", false, "print the cases as JSON")
	tcplabCmd.AddCommand(tcplabRun, tcplabList)
	root.AddCommand(tcplabCmd)
}
