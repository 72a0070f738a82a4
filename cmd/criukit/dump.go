package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/criukit/criukit/ghosts"
	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/report/knownissues"
	"github.com/spf13/cobra"
)

var dumpCmd = &cobra.Command{
	Use:   "dump [criu dump options] -t PID -D DIR",
	Short: "criu dump with ghost limits and a total copy budget from the environment",
	Long: `Runs criu dump (CRIU >= 4.2, see internal/criurun) with -v4 -o DIR/dump.log, passing every
criu option through, and adds what CRIU lacks:

  CRIUKIT_GHOST_LIMIT=SIZE   per-file ghost limit given to criu (like --ghost-limit; K/M/G suffixes).
                             --ghost-limit on the command line wins over it.
  CRIUKIT_COPY_BUDGET=SIZE   total bytes of copies of file data stored with the images (ghost files,
                             memfd, tmpfs, SysV shm, pipe/socket queues). Enforced by a preflight
                             (criukit ghosts prediction: refuses before criu freezes anything) and by
                             an audit of the image sizes after the dump.

criukit's own options (everything else goes to criu):
  --ghost-limit-via flag|config  how the ghost limit reaches criu: --ghost-limit (default), or a
                             generated config file named by CRIU_CONFIG_FILE (what a container runtime
                             spawning criu would inherit; a CRIU_CONFIG_FILE you set is merged in)
  --copy-budget SIZE         like CRIUKIT_COPY_BUDGET
  --no-preflight             skip the prediction (criu decides; the audit still runs)
  --json                     print the prediction/audit as JSON

  --cow                      store a forked tree's copy-on-write pages once (same as
                             'criukit cow dump'; see its --help for --via page-server|post-dump).
                             CRIUKIT_GHOST_LIMIT is passed on as --ghost-limit; the copy budget is
                             not enforced on this path.

Without --network-lock, criukit passes --network-lock nftables (no iptables needed).`,
	Example: `  criukit dump -t 1234 -D /tmp/imgs --ghost-limit 8M
  CRIUKIT_GHOST_LIMIT=8M CRIUKIT_COPY_BUDGET=64M criukit dump -t 1234 -D /tmp/imgs --leave-running
  CRIUKIT_GHOST_LIMIT=8M criukit dump --ghost-limit-via config -t 1234 -D /tmp/imgs --tcp-established
  criukit dump --cow -t 1234 -D /tmp/imgs            # COW dedup while dumping (page server)`,
	DisableFlagParsing: true,
	RunE:               runDump,
}

func runDump(cmd *cobra.Command, args []string) error {
	stdout := cmd.OutOrStdout()
	gl, budget, err := ghosts.LimitsFromEnv(os.Getenv)
	if err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	if rest, ok := criurun.CutArg(args, "--cow"); ok {
		if gl > 0 && !criurun.HasArg(rest, "--ghost-limit") {
			rest = append(rest, "--ghost-limit", strconv.FormatInt(gl, 10))
		}
		cowDumpCmd.SetContext(cmd.Context())
		return runCowDump(cowDumpCmd, rest)
	}
	c := ghosts.DumpConfig{GhostLimit: gl, CopyBudget: budget, Via: ghosts.ViaFlag}
	p, err := criurun.ParseArgs(args, map[string]bool{"--ghost-limit": true, "--ghost-limit-via": true,
		"--copy-budget": true, "--no-preflight": false, "--json": false})
	if err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	if p.Help {
		return cmd.Help()
	}
	c.Pid, c.ImagesDir, c.LogFile, c.Args = p.Pid, p.ImagesDir, p.LogFile, p.Pass
	if v, ok := p.Own["--ghost-limit"]; ok {
		if c.GhostLimit, err = ghosts.ParseSize(v); err != nil {
			return fmt.Errorf("dump: --ghost-limit: %w", err)
		}
	}
	if v, ok := p.Own["--ghost-limit-via"]; ok {
		c.Via = v
	}
	if v, ok := p.Own["--copy-budget"]; ok {
		if c.CopyBudget, err = ghosts.ParseSize(v); err != nil {
			return fmt.Errorf("dump: --copy-budget: %w", err)
		}
	}
	_, c.NoPreflight = p.Own["--no-preflight"]
	_, asJSON := p.Own["--json"]
	if c.Pid == 0 || c.ImagesDir == "" {
		return fmt.Errorf("dump: -t PID and -D DIR are required (see criukit dump --help)")
	}
	res, err := ghosts.Dump(cmd.Context(), c)
	if asJSON && res != nil {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	}
	if err != nil {
		var ce *criurun.Error
		if errors.As(err, &ce) && ce.Log != "" {
			if kr, kerr := knownissues.Default().ScanFile(ce.Log); kerr == nil {
				for _, m := range kr.Matches {
					fmt.Fprintf(os.Stderr, "known issue %s: %s\n  why: %s\n  fix: %s\n", m.ID, m.Title, m.Explain, m.Fix)
				}
			}
		}
		return fmt.Errorf("dump: %w", err)
	}
	if !asJSON {
		fmt.Fprintf(stdout, "dump of pid %d done: %s (log %s)\n", c.Pid, c.ImagesDir, res.Log)
		if res.Via != "" {
			fmt.Fprintf(stdout, "ghost limit %d passed via %s\n", res.GhostLimit, res.Via)
		}
		if res.Report != nil {
			fmt.Fprintf(stdout, "predicted copies of file data: %s bytes\n", ghosts.FormatSize(res.Report.TotalImageBytes))
		}
		if res.Audit != nil {
			fmt.Fprintf(stdout, "audited copies of file data: %s bytes (budget %s)\n", ghosts.FormatSize(res.Audit.Total), ghosts.FormatSize(c.CopyBudget))
		}
	}
	return nil
}

func init() { root.AddCommand(dumpCmd) }
