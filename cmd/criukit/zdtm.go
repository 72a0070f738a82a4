package main

import (
	"encoding/json"
	"fmt"

	"github.com/criukit/criukit/zdtm"
	"github.com/spf13/cobra"
)

// criukit zdtm: the pieces scripts/zdtm and bench/zdtm call (CRIU's zdtm suite as conformance suite).

var zdtmCmd = &cobra.Command{
	Use:   "zdtm",
	Short: "Helpers for running CRIU's zdtm suite through criukit (scripts/zdtm)",
	Long: `scripts/zdtm runs CRIU's own test suite with criukit's transforms between dump and restore
(modes stock, roundtrip, cow-rewrite, cow-pageserver, netrw-identity, patched). These subcommands
are what its criu wrapper and bench/zdtm call:

  roundtrip DIR   every image of DIR -> crit JSON -> image, byte-exact or an error; the
                  re-encoded files replace the originals (so criu restores criukit's output)
  codec DIR...    the codec's corpus check of every dump dir under DIR: decode/encode exact,
                  JSON round trip, info, JSON vs crit 3.17 (known differences listed), ls,
                  x ps|fds|mems|rss|sk, every pagemap read back against its pages file`,
}

var zdtmRoundtripCmd = &cobra.Command{
	Use:     "roundtrip DIR",
	Short:   "Put every image of DIR through JSON and back (byte-exact), replacing the originals",
	Example: `  criukit zdtm roundtrip /tmp/dump && criu restore -D /tmp/dump`,
	Args:    cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		res, err := zdtm.Roundtrip(args[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%d images byte-exact through JSON (%d other files left alone)\n", res.Files, res.Skipped)
		return nil
	},
}

var zdtmCodecFlags struct {
	python string
	noCrit bool
	json   bool
}

var zdtmCodecCmd = &cobra.Command{
	Use:   "codec DIR...",
	Short: "Codec corpus check of every dump dir under DIR (exit 1 on any problem)",
	Example: `  criukit zdtm codec /tmp/zdtm-run/dumps
  criukit zdtm codec --json /tmp/dump | jq .problems`,
	Args: cobra.MinimumNArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		dirs, err := zdtm.DumpDirs(args...)
		if err != nil {
			return err
		}
		if len(dirs) == 0 {
			return fmt.Errorf("no dump dir (with pstree.img) under %v", args)
		}
		o := zdtm.CodecOptions{Python: zdtmCodecFlags.python}
		if zdtmCodecFlags.noCrit {
			o.Python = ""
		}
		var c zdtm.Corpus
		rs, err := zdtm.CheckDirs(dirs, o)
		if err != nil {
			return err
		}
		for _, r := range rs {
			c.Add(r)
		}
		if zdtmCodecFlags.json {
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			if err := enc.Encode(&c); err != nil {
				return err
			}
		} else {
			c.Write(cmd.OutOrStdout())
		}
		if len(c.Problems) > 0 {
			return fmt.Errorf("%d problems in %d of %d dump dirs", len(c.Problems), c.Dirs-c.DirsClean, c.Dirs)
		}
		return nil
	},
}

func init() {
	f := zdtmCodecCmd.Flags()
	f.StringVar(&zdtmCodecFlags.python, "crit-python", zdtm.DefaultPython, "python3 whose pycriu is the crit to compare with")
	f.BoolVar(&zdtmCodecFlags.noCrit, "no-crit", false, "skip the comparison with crit's JSON")
	f.BoolVar(&zdtmCodecFlags.json, "json", false, "print the counts and problems as JSON")
	zdtmCmd.AddCommand(zdtmRoundtripCmd, zdtmCodecCmd)
	root.AddCommand(zdtmCmd)
}

var zdtmPagecountCmd = &cobra.Command{
	Use:   "pagecount DIR",
	Short: "zdtm's page count check for a deduped dump: stored + deduped pages = criu's pages written",
	Args:  cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		pc, err := zdtm.CountPages(args[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%d pages written by criu = %d stored + %d deduped\n", pc.Written, pc.Stored, pc.Deduped)
		return nil
	},
}

func init() { zdtmCmd.AddCommand(zdtmPagecountCmd) }
