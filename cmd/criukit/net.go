package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/criukit/criukit/netrw"
	"github.com/criukit/criukit/netrw/addrmap"
)

var netCmd = &cobra.Command{
	Use:   "net",
	Short: "Change socket addresses or close TCP connections in an image directory before restore",
	Long: `net edits the network state of a CRIU image directory so that restore works somewhere else:

  rewrite  map addresses (and ports) in files.img sockets, the netns ifaddr/route/rule dumps and the
           iptables/nftables text, after checking that the result can be restored
  close    make CRIU restore chosen TCP connections closed (read EOF, write EPIPE), keeping the rest

Inputs are never modified: results go to a new OUTDIR (written to a temp dir, then renamed), or
replace IMGDIR with --in-place (the original is kept as IMGDIR.orig). pages-*.img are hard-linked.`,
}

type netOut struct {
	inPlace, dryRun, jsonOut bool
}

func (o *netOut) flags(c *cobra.Command) {
	c.Flags().BoolVar(&o.inPlace, "in-place", false, "replace IMGDIR (the original is kept as IMGDIR.orig)")
	c.Flags().BoolVarP(&o.dryRun, "dry-run", "n", false, "only print the report")
	c.Flags().BoolVar(&o.jsonOut, "json", false, "print the report as JSON")
}

func (o *netOut) output(args []string) (netrw.Output, error) {
	out := netrw.Output{InPlace: o.inPlace, DryRun: o.dryRun}
	if len(args) == 2 {
		out.Dir = args[1]
	}
	switch {
	case out.Dir != "" && o.inPlace:
		return out, fmt.Errorf("give OUTDIR or --in-place, not both")
	case out.Dir == "" && !o.inPlace && !o.dryRun:
		return out, fmt.Errorf("no output: give OUTDIR (a new directory), --in-place or --dry-run; IMGDIR is never changed otherwise")
	}
	return out, nil
}

func (o *netOut) print(stdout io.Writer, rep *netrw.Report, err error) error {
	if rep != nil {
		if o.jsonOut {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			if e := enc.Encode(rep); e != nil {
				return e
			}
		} else {
			rep.WriteTable(stdout)
		}
	}
	return err
}

func parsePrefixes(vals []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if strings.Contains(s, "/") {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					return nil, err
				}
				out = append(out, p.Masked())
				continue
			}
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, err
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
	}
	return out, nil
}

func newNetRewriteCmd() *cobra.Command {
	var maps, ports, present []string
	var closeExt bool
	var target string
	var o netOut
	c := &cobra.Command{
		Use:   "rewrite --map OLD=NEW[,OLD=NEW...] [--port OLD:NEW]... [--close-external] [--declare-present ADDR]... IMGDIR [OUTDIR]",
		Short: "Map socket and netns addresses (and ports) so the images restore at a new address",
		Long: `rewrite changes addresses consistently in:
  files.img        inet sockets (IPv4, IPv6 and IPv4-mapped IPv6; wildcard addresses are kept)
  ifaddr/route/route6/rule-N.img   the raw 'ip ... save' dumps of a dumped netns
  iptables/ip6tables/nftables-N.img  firewall text (CRIU's own lock table CRIU-... is left alone)
OLD/NEW are addresses or networks of the same length (10.11.0.0/24=10.22.0.0/24 keeps host bits).
--port OLD:NEW changes the local port of every socket bound to OLD, and the remote port of
connections whose other end is in the images.

Before writing it checks, and refuses on any problem:
  - connections with both ends in the images stay mirrored (rewritten on both sides alike)
  - every new source address exists in the dumped netns (ifaddr-N.img after the rewrite), in the
    --target-netns, or was declared with --declare-present (when the netns is not in the dump)
  - no duplicate 4-tuples or listener bindings
Connections whose peer is outside the images are listed with their fate: after a move the peer
resets them unless NAT or a virtual IP hides it; --close-external restores those closed instead.
The report (table, or --json) lists every inet socket, the changed files and warnings.

Restore the result with criu restore --tcp-established in a netns that has the new addresses.

When the peer of a connection was dumped separately (the other end in another dump, e.g. a
client in netns A and a server in netns B, both rewritten), restore them together with
  criukit restore --group A.moved@/run/netns/A2 --group B.moved@/run/netns/B2 --tcp-established
Restored one after the other with plain criu, the first end sends to the second's new address
before it exists, that netns answers RST and the connection is reset; the group restore drops the
group's packets in every target netns until the last end is back.`,
		Example: `  # move a tree from 10.11.0.x to 10.22.0.x (target netns already has the addresses)
  criukit net rewrite --map 10.11.0.0/24=10.22.0.0/24 --declare-present 10.22.0.0/24 img img-moved
  criukit net rewrite --map 10.11.0.0/24=10.22.0.0/24 --target-netns /run/netns/B img img-moved
  nsenter --net=/run/netns/B criu restore -D img-moved --tcp-established -d

  # a container that owns its netns: ifaddr/route images are rewritten too, nothing to declare
  criukit net rewrite --map 10.44.0.1=10.55.0.1,fd00:44::1=fd00:55::1 img img-moved

  # see what would happen, closing the connections to outside peers
  criukit net rewrite -n --map 10.11.0.2=10.22.0.2 --close-external --json img`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := o.output(args)
			if err != nil {
				return err
			}
			m, err := addrmap.Parse(maps...)
			if err != nil {
				return err
			}
			pm, err := addrmap.ParsePorts(ports...)
			if err != nil {
				return err
			}
			pr, err := parsePrefixes(present)
			if err != nil {
				return fmt.Errorf("--declare-present: %w", err)
			}
			rep, err := netrw.RewriteContext(cmd.Context(), args[0], netrw.RewriteOptions{Map: m, Ports: pm, CloseExternal: closeExt, Present: pr,
				TargetNetns: target, Output: out})
			return o.print(cmd.OutOrStdout(), rep, err)
		},
	}
	c.Flags().StringSliceVar(&maps, "map", nil, "OLD=NEW address or network mapping (repeatable, comma separated)")
	c.Flags().StringArrayVar(&ports, "port", nil, "OLD:NEW port mapping (repeatable)")
	c.Flags().BoolVar(&closeExt, "close-external", false, "restore closed the connections with a peer outside the images whose 4-tuple changes")
	c.Flags().StringSliceVar(&present, "declare-present", nil, "address or network that exists where the images are restored (repeatable)")
	c.Flags().StringVar(&target, "target-netns", "", "netns (e.g. /run/netns/B) the images will be restored in: its current addresses count as present")
	o.flags(c)
	return c
}

func newNetCloseCmd() *cobra.Command {
	var ext, all bool
	var ports []string
	var peers []string
	var o netOut
	c := &cobra.Command{
		Use:   "close [--external] [--port P]... [--peer ADDR]... [--all] IMGDIR [OUTDIR]",
		Short: "Restore chosen TCP connections closed (EOF/EPIPE), keep the others repaired",
		Long: `close rewrites the images so that CRIU restores the selected TCP connections as closed sockets:
the application reads EOF and gets EPIPE on write, exactly as with criu restore --tcp-close, but
only for these connections and without any criu flag. The others (and every listener) are restored
as usual (with --tcp-established if any connection is left). Only the restored side learns of the
close: an outside peer is sent nothing (no FIN, no RST) and finds out when it next sends (RST) or by
its own timeouts.

Selection (union of the flags): --external (the peer is not in the images), --port P (local or
remote port), --peer ADDR[/BITS] (remote address), --all. When one end of a connection whose both
ends are in the images is selected, the other end is closed too.

Each closed socket gets state CLOSE, no addresses or ports and shutdown both ways in files.img,
and its tcp-stream-<ino>.img is left out. The report lists the closed sockets whose queues held
data (bytes received but unread, bytes in the send queue): that data is lost.`,
		Example: `  # keep the connections inside the tree, close the ones to outside peers
  criukit net close --external img img-closed

  # close everything on port 5432 and show it as JSON
  criukit net close --port 5432 --json img img-closed`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := o.output(args)
			if err != nil {
				return err
			}
			var pv []uint16
			for _, s := range ports {
				for _, f := range strings.Split(s, ",") {
					v, err := strconv.ParseUint(strings.TrimSpace(f), 10, 16)
					if err != nil || v == 0 {
						return fmt.Errorf("--port %q: want a port number 1-65535", f)
					}
					pv = append(pv, uint16(v))
				}
			}
			pr, err := parsePrefixes(peers)
			if err != nil {
				return fmt.Errorf("--peer: %w", err)
			}
			rep, err := netrw.Close(args[0], netrw.CloseOptions{External: ext, All: all, Ports: pv, Peers: pr, Output: out})
			return o.print(cmd.OutOrStdout(), rep, err)
		},
	}
	c.Flags().BoolVar(&ext, "external", false, "close connections whose peer is not in the images")
	c.Flags().BoolVar(&all, "all", false, "close every TCP connection")
	c.Flags().StringArrayVar(&ports, "port", nil, "close connections with this local or remote port (repeatable)")
	c.Flags().StringArrayVar(&peers, "peer", nil, "close connections to this address or network (repeatable)")
	o.flags(c)
	return c
}

func init() {
	netCmd.AddCommand(newNetRewriteCmd(), newNetCloseCmd())
	root.AddCommand(netCmd)
}
