package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/criukit/criukit/ghosts"
	"github.com/spf13/cobra"
)

var ghostsFlags struct {
	pid   int
	json  bool
	limit string
}

var ghostsCmd = &cobra.Command{
	Use:   "ghosts --pid PID [--json] [--ghost-limit SIZE]",
	Short: "Predict the copies of file data a criu dump of a live tree will store",
	Long: `Predicts, for the live process tree rooted at PID, every copy of file data CRIU will store
beside the images, with the predicted image bytes of each:

  ghost       deleted-but-open (or mapped) file with no links left: ghost-file-N.img. CRIU fails
              the dump when its ALLOCATED size (st_blocks*512, so sparse files are cheap) is over
              --ghost-limit (default 1 MiB). Files of 12 KiB or more are stored as data chunks
              (holes skipped), smaller ones whole.
  memfd       memfd contents (shmem pages)               tmpfs     tmpfs mounts of its own mntns
  sysv-shm    SysV shared memory                          pipe/fifo unread pipe and FIFO data
  unix-queue  unix socket receive queues                  tcp-queue TCP queues (--tcp-established)

It also prints the smallest --ghost-limit that lets the dump pass. Run as root (like criu).
Only ghosts are limited by CRIU; criukit dump enforces a total budget (CRIUKIT_COPY_BUDGET).
Ghost image sizes are exact (FIEMAP extents, or SEEK_DATA/SEEK_HOLE on tmpfs, as CRIU 4.2 does);
values marked ~ are estimates. Note: on tmpfs a dump makes a sparse ghost whose first page is a
hole grow by one page (CRIU's build-id probe maps page 0): re-check after dumps with -R.`,
	Example: `  criukit ghosts --pid 1234
  criukit ghosts --pid 1234 --ghost-limit 4M     # exit status 1 if criu would refuse a ghost
  criukit ghosts --pid 1234 --json | jq .min_ghost_limit`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		stdout := cmd.OutOrStdout()
		if ghostsFlags.pid <= 0 {
			return fmt.Errorf("ghosts: --pid PID is required")
		}
		limit := int64(ghosts.DefaultGhostLimit)
		if ghostsFlags.limit != "" {
			l, err := ghosts.ParseSize(ghostsFlags.limit)
			if err != nil {
				return fmt.Errorf("ghosts: --ghost-limit: %w", err)
			}
			limit = l
		} else if v := os.Getenv(ghosts.EnvGhostLimit); v != "" {
			l, err := ghosts.ParseSize(v)
			if err != nil {
				return fmt.Errorf("ghosts: %s: %w", ghosts.EnvGhostLimit, err)
			}
			limit = l
		}
		r, err := ghosts.Scan(ghostsFlags.pid)
		if err != nil {
			return fmt.Errorf("ghosts: %w", err)
		}
		over := r.OverLimit(limit)
		if ghostsFlags.json {
			out := struct {
				*ghosts.Report
				GhostLimit int64         `json:"ghost_limit"`
				OverLimit  []ghosts.Item `json:"over_limit"`
				Pass       bool          `json:"pass"`
			}{r, limit, over, len(over) == 0}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(out); err != nil {
				return err
			}
		} else {
			printGhosts(stdout, r, limit, over)
		}
		if len(over) > 0 {
			return fmt.Errorf("ghosts: %d deleted file(s) over the ghost limit %d: criu dump would fail; use --ghost-limit %d", len(over), limit, r.MinGhostLimit)
		}
		return nil
	},
}

func printGhosts(stdout io.Writer, r *ghosts.Report, limit int64, over []ghosts.Item) {
	fmt.Fprintf(stdout, "tree of pid %d: %d process(es), %d copies of file data\n", r.Pid, len(r.Pids), len(r.Items))
	if len(r.Items) > 0 {
		tw := tabwriter.NewWriter(stdout, 0, 2, 2, ' ', 0)
		fmt.Fprintln(tw, "KIND\tPID\tWHERE\tSIZE\tALLOCATED\tIMAGE BYTES\tIMAGE\tPATH / NOTE")
		for _, it := range r.Items {
			img := fmt.Sprint(it.ImageBytes)
			if !it.Exact {
				img = "~" + img
			}
			note := it.Path
			if it.Note != "" {
				note += "  (" + it.Note + ")"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\t%s\t%s\n", it.Kind, it.Pid, it.Where, it.Size, it.Allocated, img, it.Image, note)
		}
		tw.Flush()
	}
	fmt.Fprintf(stdout, "total predicted image bytes of copies: %s\n", ghosts.FormatSize(r.TotalImageBytes))
	fmt.Fprintf(stdout, "smallest --ghost-limit that lets the dump pass: %d", r.MinGhostLimit)
	if r.MinGhostLimit <= ghosts.DefaultGhostLimit {
		fmt.Fprintf(stdout, " (CRIU's default %d is enough)", ghosts.DefaultGhostLimit)
	}
	fmt.Fprintln(stdout)
	if len(over) > 0 {
		fmt.Fprintf(stdout, "with ghost limit %d: FAIL, %d file(s) over it\n", limit, len(over))
	} else {
		fmt.Fprintf(stdout, "with ghost limit %d: pass\n", limit)
	}
	for _, w := range r.Warnings {
		fmt.Fprintln(stdout, "warning:", w)
	}
}

func init() {
	ghostsCmd.Flags().IntVar(&ghostsFlags.pid, "pid", 0, "root of the process tree")
	ghostsCmd.Flags().BoolVar(&ghostsFlags.json, "json", false, "print JSON")
	ghostsCmd.Flags().StringVar(&ghostsFlags.limit, "ghost-limit", "", "ghost limit to check against (default $"+ghosts.EnvGhostLimit+" or 1M)")
	root.AddCommand(ghostsCmd)
}
