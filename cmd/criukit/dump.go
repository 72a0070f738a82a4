package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

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
	if rest, ok := cutFlag(args, "--cow"); ok {
		if gl > 0 && !hasFlag(rest, "--ghost-limit") {
			rest = append(rest, "--ghost-limit", strconv.FormatInt(gl, 10))
		}
		cowDumpCmd.SetContext(cmd.Context())
		return runCowDump(cowDumpCmd, rest)
	}
	c := ghosts.DumpConfig{GhostLimit: gl, CopyBudget: budget, Via: ghosts.ViaFlag}
	asJSON := false
	need := func(i int, name string) (string, error) {
		if i+1 >= len(args) {
			return "", fmt.Errorf("dump: %s needs a value", name)
		}
		return args[i+1], nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(a, "=")
		if !strings.HasPrefix(a, "--") {
			name, hasVal = a, false
		}
		value := func() (string, error) {
			if hasVal {
				return val, nil
			}
			v, err := need(i, name)
			i++
			return v, err
		}
		var v string
		switch name {
		case "-h", "--help":
			return cmd.Help()
		case "-t", "--tree":
			if v, err = value(); err != nil {
				return err
			}
			if c.Pid, err = strconv.Atoi(v); err != nil || c.Pid <= 0 {
				return fmt.Errorf("dump: bad pid %q", v)
			}
		case "-D", "--images-dir":
			if v, err = value(); err != nil {
				return err
			}
			c.ImagesDir = v
		case "-o", "--log-file":
			if v, err = value(); err != nil {
				return err
			}
			c.LogFile = v
		case "--ghost-limit":
			if v, err = value(); err != nil {
				return err
			}
			if c.GhostLimit, err = ghosts.ParseSize(v); err != nil {
				return fmt.Errorf("dump: --ghost-limit: %w", err)
			}
		case "--ghost-limit-via":
			if v, err = value(); err != nil {
				return err
			}
			c.Via = v
		case "--copy-budget":
			if v, err = value(); err != nil {
				return err
			}
			if c.CopyBudget, err = ghosts.ParseSize(v); err != nil {
				return fmt.Errorf("dump: --copy-budget: %w", err)
			}
		case "--no-preflight":
			c.NoPreflight = true
		case "--json":
			asJSON = true
		default:
			if strings.HasPrefix(a, "-v") || a == "--verbosity" || strings.HasPrefix(a, "--verbosity=") {
				continue // criukit always logs with -v4
			}
			c.Args = append(c.Args, a)
		}
	}
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

// cutFlag returns args without every occurrence of the boolean flag name, and whether it was there.
func cutFlag(args []string, name string) ([]string, bool) {
	out, found := make([]string, 0, len(args)), false
	for _, a := range args {
		if a == name {
			found = true
			continue
		}
		out = append(out, a)
	}
	return out, found
}

// hasFlag reports whether args hold name as "--name" or "--name=value".
func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

func init() { root.AddCommand(dumpCmd) }
