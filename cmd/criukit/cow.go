package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"text/tabwriter"

	"github.com/criukit/criukit/cow"
	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/outfile"
	"github.com/spf13/cobra"
)

var cowCmd = &cobra.Command{
	Use:   "cow",
	Short: "Store a forked tree's copy-on-write memory once (dedup images that stock criu restores)",
	Long: `A process that forks shares its memory copy-on-write with its children, but a CRIU dump stores
every process' pages again (100 MiB x 10 children = 1.1 GiB of pages-*.img). criukit cow rewrites
an images directory so that each page is stored once: a child's page equal to a page stored by
another process of the tree becomes a PE_PARENT entry, resolved through a small, self-contained
parent chain (parent -> cow-1 -> cow-2 ..., relative symlinks to the source pages files). Stock
criu restore reads this layout; restored memory is byte-identical.

Deduped directories carry the marker file ` + cow.MarkerFile + `. Never restore them with
--auto-dedup or --stream (use 'criukit restore', which refuses both), and never run 'criu dedup' on
them: materialize first.`,
}

// cowFlags holds the flags of the cow subcommands (bound with XxxVar, like every command).
var cowFlags struct {
	inPlace, json, statsJSON bool
	maxLevels                int
	svg                      string
}

var cowDedupCmd = &cobra.Command{
	Use:   "dedup DIR [OUTDIR]",
	Short: "Dedup a stock images directory into OUTDIR (or in place with --in-place)",
	Long: `Matches pages by content: the tree parent's page at the same address first, then a hash of every
page stored so far (any earlier process: siblings, moved/mremapped pages), always confirmed by a
byte comparison. Matches that are not in address order in their source go to deeper chain levels
(at most --max-levels); the rest is stored.

DIR is never modified unless --in-place is given. OUTDIR must not exist: it is built in a temporary
directory next to it and renamed at the end. With --in-place the rewritten directory is swapped in
atomically (renameat2 RENAME_EXCHANGE). Incremental dumps (pre-dump parent chains) are refused.`,
	Example: `  criukit cow dedup /tmp/imgs /tmp/imgs.cow
  criukit cow dedup --in-place /tmp/imgs
  criukit cow dedup /tmp/imgs /tmp/imgs.cow --json | jq .pages_bytes_after`,
	Args: cobra.RangeArgs(1, 2),
	RunE: func(cmd *cobra.Command, args []string) error {
		inPlace, asJSON, levels := cowFlags.inPlace, cowFlags.json, cowFlags.maxLevels
		opt := cow.Options{MaxLevels: levels}
		prog := newProgress(cmd, asJSON)
		defer prog.done()
		if prog != nil {
			opt.Progress = func(pid int, done, deduped int64) {
				prog.printf(false, "pid %d done: %d pages read, %d stored once", pid, done, deduped)
			}
		}
		var res *cow.Result
		var err error
		switch {
		case inPlace && len(args) == 2:
			return fmt.Errorf("cow dedup: give OUTDIR or --in-place, not both")
		case inPlace:
			res, err = cow.DedupInPlaceContext(cmd.Context(), args[0], opt)
		case len(args) == 2:
			res, err = cow.DedupContext(cmd.Context(), args[0], args[1], opt)
		default:
			return fmt.Errorf("cow dedup: give OUTDIR (a new directory) or --in-place")
		}
		prog.done()
		if err != nil {
			return fmt.Errorf("cow dedup: %w", err)
		}
		return printResult(cmd.OutOrStdout(), res, asJSON)
	},
}

var cowMaterializeCmd = &cobra.Command{
	Use:   "materialize DIR OUT",
	Short: "Write a stock (non-deduped) copy of a deduped images directory",
	Long: `Reads every process' pages through the parent chain and writes them into its own pages file
again, without the chain and the marker: the result is a plain CRIU images directory for tools
that cannot follow 'parent' (criu-image-streamer, criu dedup, third-party readers). OUT must not
exist; DIR is not modified.`,
	Example: `  criukit cow materialize /tmp/imgs.cow /tmp/imgs.stock`,
	Args:    cobra.ExactArgs(2),
	RunE: func(cmd *cobra.Command, args []string) error {
		stdout := cmd.OutOrStdout()
		if err := cow.MaterializeContext(cmd.Context(), args[0], args[1]); err != nil {
			return fmt.Errorf("cow materialize: %w", err)
		}
		fmt.Fprintf(stdout, "materialized %s into %s\n", args[0], args[1])
		return nil
	},
}

var cowStatsCmd = &cobra.Command{
	Use:   "stats DIR",
	Short: "Per process: pages, stored, deduped, shared with whom, moved, chain levels",
	Long: `Walks the parent chain of every process like criu restore would and reports where each deduped
page is read from. --svg draws one bar per process: grey = its own pages file, colors = pages read
from the process of that color.`,
	Example: `  criukit cow stats /tmp/imgs.cow
  criukit cow stats /tmp/imgs.cow --json
  criukit cow stats /tmp/imgs.cow --svg share.svg`,
	Args: cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		asJSON, svg := cowFlags.statsJSON, cowFlags.svg
		res, err := cow.Stats(args[0])
		if err != nil {
			return fmt.Errorf("cow stats: %w", err)
		}
		if svg != "" {
			if err := outfile.Write(svg, func(w io.Writer) error { return cow.WriteSVG(w, res) }); err != nil {
				return fmt.Errorf("cow stats --svg: %w", err)
			}
		}
		return printResult(cmd.OutOrStdout(), res, asJSON)
	},
}

var cowDumpCmd = &cobra.Command{
	Use:   "dump [criu dump options] -t PID -D DIR",
	Short: "criu dump that stores the tree's copy-on-write memory once (deduped layout)",
	Long: `Runs criu dump (every option passes through; --network-lock nftables unless given) and writes
the images directly in the deduped layout:

  --via page-server (default)  criu sends the pages over a socketpair to a page server inside
                               criukit (criu --page-server --ps-socket 3). When criu opens the
                               first process (the tree is frozen), criukit reads the tree's page
                               frames from /proc/PID/pagemap twice and keeps those both reads
                               agree on. A page whose frame an earlier process already sent is
                               the same physical page: it is spliced to /dev/null, never copied
                               or compared. Every other page is compared (parent and previous
                               sibling at the same address, then by hash, always byte by byte)
                               and stored only if no earlier process stored the same bytes. The
                               duplicates are never written. If the page server fails, criu dump
                               fails and the tree is resumed (not killed).
  --content-only               page server without the frame snapshot: every page is copied out
                               of the socket and matched by content only.
  --via post-dump              stock dump, then at CRIU's post-dump point (tree still frozen) a
                               snapshot of the tree's page frames from /proc/PID/pagemap, then an
                               in-place rewrite matching shared frames (and equal content). If the
                               rewrite fails, the stock images stay (exit status 3).

criukit's own options: --via, --content-only, --json. Pre-dump chains, lazy pages and --stream are not supported.
CRIU with criukit's COW patches (scripts/build-criu, docs/cow-criu.md) is used when installed and
$CRIUKIT_CRIU is unset: it records where children moved shared memory to, so 'criukit restore'
(same CRIU) keeps it shared.
'criukit dump --cow' (the ghost-limit dump command) may call the same code (package cow).`,
	Example: `  criukit cow dump -t 1234 -D /tmp/imgs
  criukit cow dump --via post-dump -t 1234 -D /tmp/imgs --leave-running
  criukit restore -D /tmp/imgs -d`,
	DisableFlagParsing: true,
	RunE:               runCowDump,
}

func runCowDump(cmd *cobra.Command, args []string) error {
	stdout := cmd.OutOrStdout()
	p, err := criurun.ParseArgs(args, map[string]bool{"--via": true, "--content-only": false, "--json": false})
	if err != nil {
		return fmt.Errorf("cow dump: %w", err)
	}
	if p.Help {
		return cmd.Help()
	}
	via, pid, dir, pass := "page-server", p.Pid, p.ImagesDir, p.Pass
	if v, ok := p.Own["--via"]; ok {
		via = v
	}
	_, asJSON := p.Own["--json"]
	_, contentOnly := p.Own["--content-only"]
	if pid <= 0 || dir == "" {
		return fmt.Errorf("cow dump: need -t PID and -D DIR (see --help)")
	}
	if via != "page-server" && via != "post-dump" {
		return fmt.Errorf("cow dump: --via %q: want page-server or post-dump", via)
	}
	criu, _, _, err := criurun.FindCow() // the COW-patched CRIU when installed (docs/cow-criu.md)
	if err != nil {
		return fmt.Errorf("cow dump: %w", err)
	}
	o := criurun.Opts{Criu: criu, ImagesDir: dir, LogFile: p.LogFile, Args: pass}
	var res *cow.DumpResult
	switch via {
	case "page-server":
		res, err = cow.DumpDedupPageServer(cmd.Context(), pid, o, cow.Options{NoFrames: contentOnly})
	case "post-dump":
		res, err = cow.DumpDedup(cmd.Context(), pid, o, cow.Options{})
	default:
		return fmt.Errorf("cow dump: --via %q: want page-server or post-dump", via)
	}
	if errors.Is(err, cow.ErrLeftStock) {
		fmt.Fprintln(os.Stderr, "criukit: cow dump:", err)
		os.Exit(3)
	}
	if err != nil {
		return fmt.Errorf("cow dump: %w", err)
	}
	if asJSON {
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		return e.Encode(res)
	}
	fmt.Fprintf(stdout, "dumped pid %d via %s in %.2fs (+%.2fs dedup)\n", pid, via, res.DumpSeconds, res.DedupSeconds)
	if res.SkippedPages > 0 {
		fmt.Fprintf(stdout, "%d pages shared a frame with a page already received: spliced away, not copied\n", res.SkippedPages)
	}
	return printResult(stdout, res.Result, false)
}

func printResult(stdout io.Writer, res *cow.Result, asJSON bool) error {
	if asJSON {
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		return e.Encode(res)
	}
	if res.PagesBefore > 0 {
		fmt.Fprintf(stdout, "%s: pages %s -> %s (%.2fx), %d chain levels\n", res.Dir, cow.Human(res.PagesBefore), cow.Human(res.PagesAfter),
			float64(res.PagesBefore)/float64(max(res.PagesAfter, 1)), res.Levels)
	} else {
		fmt.Fprintf(stdout, "%s: pages %s, %d chain levels\n", res.Dir, cow.Human(res.PagesAfter), res.Levels)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PID\tPPID\tPAGES\tSTORED\tDEDUPED\tMOVED\tLEVELS\tSOURCES (pid:pages)\t")
	for _, p := range res.Procs {
		src := ""
		for _, pid := range slices.Sorted(maps.Keys(p.Sources)) {
			src += fmt.Sprintf("%d:%d ", pid, p.Sources[pid])
		}
		if src == "" {
			src = "-"
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", p.Pid, p.Ppid, p.Pages, p.Stored, p.Deduped, p.Moved, p.Levels, src)
	}
	return tw.Flush()
}

func init() {
	cowDedupCmd.Flags().BoolVar(&cowFlags.inPlace, "in-place", false, "rewrite DIR itself (atomic swap at the end)")
	cowDedupCmd.Flags().BoolVar(&cowFlags.json, "json", false, "print the result as JSON")
	cowDedupCmd.Flags().IntVar(&cowFlags.maxLevels, "max-levels", cow.MaxLevels, "deepest parent chain level")
	cowStatsCmd.Flags().BoolVar(&cowFlags.statsJSON, "json", false, "print the result as JSON")
	cowStatsCmd.Flags().StringVar(&cowFlags.svg, "svg", "", "also draw who shares what into this SVG file")
	cowCmd.AddCommand(cowDumpCmd, cowDedupCmd, cowMaterializeCmd, cowStatsCmd)
	root.AddCommand(cowCmd)
}
