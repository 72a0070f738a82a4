package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/criukit/criukit/clone"
)

func newCloneCmd() *cobra.Command {
	var copies int
	var pool, out, prefix string
	var jsonOut, lintOnly, overlay bool
	c := &cobra.Command{
		Use:   "clone --copies N [--ip-pool CIDR] [-o OUTDIR] [--json] IMGDIR",
		Short: "Restore N copies of one dump side by side (lint, per-copy images, netns, pidns)",
		Long: `clone restores several copies of one dumped process tree at once.

First a lint lists every conflict between copies and refuses when one cannot be handled:
path-bound unix sockets (restore unlinks and rebinds the path), TCP connections to peers outside
the images (close them first with 'criukit net close --external'). It also reports what clone
handles itself (pids, abstract unix sockets, listeners on specific addresses) and warns about
ghost files, file locks and the shared hostname.

Then, per copy i:
  - DIR/copy-i: an image dir sharing pages-*.img by hard link; with --ip-pool the socket
    addresses are moved to the copy's own addresses (netrw rewrite, both ends of in-image pairs)
  - a named network namespace <prefix><i> with lo up and the copy's addresses
  - criu restore run as pid 1 of a new pid+mount namespace inside that netns (our own wrapper,
    not criu-ns -d, which reports success on failure); criu stays the tree's parent
  - a health check: the root task runs and every dumped listener listens in the copy's netns
Stop the copies with 'criukit clone stop OUTDIR' (SIGKILL to each copy's criu, which takes its
whole pid namespace with it, then the netns is deleted). By hand: 'kill -KILL <criu_pid>' and
'ip netns del <netns>'; a plain kill (SIGTERM) is ignored, as criu is pid 1 of the copy's pid
namespace. --lint exits 1 when it prints refuse lines.
With --rootfs-overlay each copy runs chrooted in an overlay of / (upper dir DIR/copy-N.root/upper),
with /proc, /dev and /sys of its own namespaces: copies no longer share files, so path-bound unix
sockets and ghost files stop being conflicts. Only the root filesystem is overlaid: files of other
mounts (besides /dev and /sys) are not visible to the copies.
Not yet: veth/bridge setup for traffic from outside the copies' netns.`,
		Example: `  criukit clone --copies 3 --ip-pool 10.30.0.0/24 img
  criukit clone --copies 2 img            # same addresses, each copy in its own netns
  criukit clone --copies 2 --rootfs-overlay img
  criukit clone --lint img            # only the conflict list`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if lintOnly {
				f, err := clone.Lint(args[0])
				if err != nil {
					return err
				}
				if err := printClone(cmd.OutOrStdout(), &clone.Result{Findings: f}, jsonOut); err != nil {
					return err
				}
				n := 0
				for _, x := range f {
					if x.Level == clone.Refuse {
						n++
					}
				}
				if n > 0 {
					return fmt.Errorf("clone --lint: %d conflict(s) clone refuses (see the refuse lines)", n)
				}
				return nil
			}
			o := clone.Options{Copies: copies, Out: out, NetnsPrefix: prefix, Overlay: overlay}
			if o.Out == "" {
				o.Out = args[0] + ".clones"
			}
			if pool != "" {
				p, err := netip.ParsePrefix(pool)
				if err != nil {
					return fmt.Errorf("--ip-pool: %w", err)
				}
				o.Pool = p.Masked()
			}
			res, err := clone.Clone(cmd.Context(), args[0], o)
			if res != nil {
				if perr := printClone(cmd.OutOrStdout(), res, jsonOut); perr != nil && err == nil {
					err = perr
				}
			}
			return err
		},
	}
	c.Flags().IntVar(&copies, "copies", 2, "number of copies")
	c.Flags().StringVar(&pool, "ip-pool", "", "network the copies' addresses come from (without it copies keep the dumped addresses, each in its own netns)")
	c.Flags().StringVarP(&out, "output", "o", "", "directory for per-copy images and logs (default IMGDIR.clones; must not exist)")
	c.Flags().StringVar(&out, "out", "", "same as --output (old spelling)")
	c.Flags().MarkHidden("out")
	c.Flags().StringVar(&prefix, "netns-prefix", "", "name prefix of the copies' network namespaces (default criukit-clone-<pid>-)")
	c.Flags().BoolVar(&jsonOut, "json", false, "print lint and status as JSON")
	c.Flags().BoolVar(&lintOnly, "lint", false, "only print the conflict list")
	c.Flags().BoolVar(&overlay, "rootfs-overlay", false, "give each copy an overlay of / as its root: its file changes go to DIR/copy-N.root/upper")
	return c
}

func printClone(w io.Writer, r *clone.Result, jsonOut bool) error {
	if jsonOut {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	for _, f := range r.Findings {
		fmt.Fprintf(w, "%-7s %s: %s\n", f.Level, f.What, f.Detail)
	}
	if len(r.Copies) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "\nCOPY\tNETNS\tADDRS\tCRIU PID\tROOT PID\tHEALTHY\tDETAIL")
		for _, c := range r.Copies {
			fmt.Fprintf(tw, "%d\t%s\t%v\t%d\t%d\t%v\t%s\n", c.Index, c.Netns, c.Addrs, c.CriuPid, c.RootPid, c.Healthy, c.Detail)
		}
		return tw.Flush()
	}
	return nil
}

func init() {
	c := newCloneCmd()
	c.AddCommand(&cobra.Command{
		Use:   "stop OUTDIR",
		Short: "Stop the copies a clone run started (SIGKILL to each copy's criu, netns deleted)",
		Long: `stop reads OUTDIR/clone-state.json (written by clone when its copies run) and stops every
copy: SIGKILL to its criu, which is pid 1 of the copy's pid namespace (SIGTERM is ignored there;
SIGKILL ends the whole namespace), then deletes its network namespace. Pids are checked against
their recorded start time: a pid reused since is never signalled.`,
		Example: `  criukit clone --copies 3 --out /tmp/c img && ... && criukit clone stop /tmp/c`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lines, err := clone.StopDir(args[0])
			for _, l := range lines {
				fmt.Fprintln(cmd.OutOrStdout(), l)
			}
			return err
		},
	})
	root.AddCommand(c)
}
