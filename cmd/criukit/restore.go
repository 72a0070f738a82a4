package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/criukit/criukit/cow"
	"github.com/criukit/criukit/internal/criurun"
	"github.com/spf13/cobra"
)

var restoreCmd = &cobra.Command{
	Use:   "restore [criu restore options]",
	Short: "criu restore that refuses options which corrupt deduped (criukit cow) images",
	Long: `Runs stock 'criu restore' (CRIU >= 4.2: $CRIUKIT_CRIU, /usr/local/sbin/criu or PATH) with every
argument passed through unchanged, stdio and exit code included.

When the images directory (-D/--images-dir, default .) was deduped by 'criukit cow', it refuses:
  --auto-dedup  punches holes in pages files that other processes still read through the parent
                chain: criu exits 0 but the restored children get zeroed memory;
  --stream      criu-image-streamer cannot follow the parent chain;
  --lazy-pages  lazy restore through the parent chain is not verified.
Run 'criukit cow materialize DIR OUT' to get a stock directory for those.

When CRIU with criukit's COW patches is installed (scripts/build-criu: /opt/criukit/criu-cow, or
$CRIUKIT_CRIU_COW) and $CRIUKIT_CRIU is unset, that CRIU restores: children's memory stays shared
with their parent even where they moved it (mremap), children share the version of pages their
parent rewrote after fork (PE_SIB), and pages the dump marked PE_COW are neither read nor compared.
'criukit doctor' says which CRIU has which patches.` + restoreGroupHelp,
	Example: `  criukit restore -D /tmp/imgs.cow -d --pidfile /tmp/pid
  criukit restore -D /tmp/imgs.cow --restore-detached -v4 -o restore.log
  # both ends of a connection, dumped separately and rewritten, into their new netns
  criukit restore --group cli.moved@/run/netns/a2 --group srv.moved@/run/netns/b2 --tcp-established`,
	DisableFlagParsing: true,
	RunE: func(cmd *cobra.Command, args []string) error {
		stdout := cmd.OutOrStdout()
		for _, a := range args {
			if a == "--" {
				break
			}
			if a == "-h" || a == "--help" {
				return cmd.Help()
			}
		}
		if members, rest, asJSON, ok, err := groupMembers(args); ok || err != nil {
			if err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			return runGroupRestore(cmd, members, rest, asJSON)
		}
		if err := cow.CheckRestoreArgs(args); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		// The COW-patched CRIU (scripts/build-criu) when installed: it restores every image
		// stock CRIU does, and keeps forked trees' memory shared (docs/cow-criu.md).
		criu, _, _, err := criurun.FindCow()
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		c := exec.Command(criu, append([]string{"restore"}, args...)...)
		c.Stdin, c.Stdout, c.Stderr = os.Stdin, stdout, os.Stderr
		if err := c.Run(); err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				os.Exit(ee.ExitCode())
			}
			return fmt.Errorf("restore: %w", err)
		}
		return nil
	},
}

func init() { root.AddCommand(restoreCmd) }
