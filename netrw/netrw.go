package netrw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/criukit/criukit/internal/outfile"
	"github.com/criukit/criukit/netrw/addrmap"
)

// Output says where results go. Exactly one of Dir and InPlace is used; DryRun writes nothing.
type Output struct {
	Dir     string // new image directory (must not exist); written to a temp dir and renamed
	InPlace bool   // replace the input directory; the original is kept as <dir>.orig
	DryRun  bool   // only report
}

// RewriteOptions are the settings of Rewrite.
type RewriteOptions struct {
	Map           *addrmap.Map
	Ports         addrmap.Ports
	CloseExternal bool           // restore closed the connections with a peer outside the images whose 4-tuple changes
	Present       []netip.Prefix // addresses known to exist where the tree is restored
	TargetNetns   string         // a netns (path like /run/netns/X) whose current addresses count as present
	Output
}

// Rewrite maps socket and netns addresses of the image directory dir. The report is returned
// also when checks fail (then err wraps ErrChecks and nothing is written).
func Rewrite(dir string, o RewriteOptions) (*Report, error) {
	return RewriteContext(context.Background(), dir, o)
}

// RewriteContext is Rewrite that stops when ctx is done (between files of the output), leaving no
// temporary directory and the input as it was.
func RewriteContext(ctx context.Context, dir string, o RewriteOptions) (*Report, error) {
	if o.Map.Empty() && len(o.Ports) == 0 {
		return nil, fmt.Errorf("%w: give --map OLD=NEW and/or --port OLD:NEW", ErrNothing)
	}
	d, err := Load(dir)
	if err != nil {
		return nil, err
	}
	p := newPlan(d)
	for _, r := range o.Map.Rules() {
		p.rep.Rules = append(p.rep.Rules, r.String())
	}
	for k, v := range o.Ports {
		p.rep.Ports = append(p.rep.Ports, fmt.Sprintf("%d:%d", k, v))
	}
	sort.Strings(p.rep.Ports)
	if o.Map == nil {
		o.Map = &addrmap.Map{}
	}
	present := o.Present
	if o.TargetNetns != "" {
		addrs, err := netnsAddrs(o.TargetNetns)
		if err != nil {
			return nil, err
		}
		present = append(present, addrs...)
	}
	p.mapAddrs(o.Map, o.Ports, o.CloseExternal)
	p.rewriteNetns(o.Map)
	p.check(present)
	changed := len(p.newRaw) > 0
	for _, e := range p.edits {
		changed = changed || e.action != ActUnchanged
	}
	if !changed {
		p.warnf("nothing in the images matched the map: the output is an unchanged copy")
	}
	if len(o.Ports) > 0 && len(d.Text) > 0 {
		p.warnf("--port changes sockets only: ports in the iptables/nftables images are not rewritten")
	}
	connected := false
	for _, s := range d.Sockets {
		connected = connected || s.Connected()
	}
	switch {
	case d.LockMethod == 0 && connected:
		p.warnf("the dump used --network-lock iptables: CRIU unlocks connections with rules built from the image addresses, " +
			"so rules for the old addresses stay on the source host; delete them by hand (or dump with --network-lock nftables)")
	case d.LockMethod == 1 && connected && !d.OwnNetns && d.RunID != "":
		table := ("inet CRIU-" + d.RunID)
		if len(table) > 31 { // CRIU builds the name in a 32-byte buffer
			table = table[:31]
		}
		p.warnf("restored in another netns, the source netns keeps CRIU's lock table for the old connections: "+
			"remove it there with 'nft delete table %s' (a restore in the source netns removes it itself)", table)
	}
	return p.finish(ctx, o.Output)
}

// netnsAddrs lists the addresses currently assigned in the netns at path.
func netnsAddrs(path string) ([]netip.Prefix, error) {
	h, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("target netns %s: %w", path, err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("target netns %s: %w", path, err)
	}
	defer nh.Close()
	list, err := nh.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("target netns %s: list addresses: %w", path, err)
	}
	var out []netip.Prefix
	for _, a := range list {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			ip = ip.Unmap()
			if ip.IsLoopback() && ip.Is4() {
				out = append(out, netip.PrefixFrom(ip, 8).Masked())
				continue
			}
			out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
		}
	}
	return out, nil
}

// CloseOptions select the TCP connections Close restores closed (their union).
type CloseOptions struct {
	External bool           // peer not in the images
	Ports    []uint16       // local or remote port
	Peers    []netip.Prefix // remote address
	All      bool           // every connection
	Output
}

// Close makes CRIU restore the selected TCP connections closed (read EOF, write EPIPE) by image
// rewrite: state CLOSE, no addresses or ports, shutdown both ways, no tcp-stream image. Listeners
// and the other connections are left alone; an in-images peer of a closed socket is closed too.
func Close(dir string, o CloseOptions) (*Report, error) {
	if !o.External && !o.All && len(o.Ports) == 0 && len(o.Peers) == 0 {
		return nil, fmt.Errorf("%w: give --external, --port, --peer or --all", ErrNothing)
	}
	d, err := Load(dir)
	if err != nil {
		return nil, err
	}
	p := newPlan(d)
	for _, s := range d.Sockets {
		if !s.Connected() {
			continue
		}
		e := p.edits[s]
		var why []string
		if o.All {
			why = append(why, "--all")
		}
		if o.External && e.peer == nil {
			why = append(why, fmt.Sprintf("peer %s is outside the images", s.Dst))
		}
		for _, port := range o.Ports {
			if s.Src.Port() == port || s.Dst.Port() == port {
				why = append(why, fmt.Sprintf("port %d", port))
			}
		}
		for _, pr := range o.Peers {
			if pr.Contains(s.Dst.Addr().Unmap()) || pr.Contains(s.Dst.Addr()) {
				why = append(why, fmt.Sprintf("peer in %s", pr))
			}
		}
		if len(why) > 0 {
			p.closeSock(s, "closed: "+strings.Join(why, ", "))
		}
	}
	for _, s := range d.Sockets {
		e := p.edits[s]
		if e.close && e.peer != nil && !p.edits[e.peer].close {
			p.closeSock(e.peer, fmt.Sprintf("closed because its peer ino %#x (in the images) is closed", s.Ino))
		}
	}
	for _, s := range d.Sockets {
		e := p.edits[s]
		if !e.close && s.Connected() {
			if e.peer != nil {
				e.note = fmt.Sprintf("kept: both ends in the images (peer ino %#x)", e.peer.Ino)
			} else {
				e.note = fmt.Sprintf("kept: peer %s outside the images", s.Dst)
			}
		}
	}
	n := 0
	for _, e := range p.edits {
		if e.close {
			n++
		}
	}
	if n == 0 {
		p.warnf("no TCP connection matched the selection")
	}
	p.check(nil)
	return p.finish(context.Background(), o.Output)
}

func (p *plan) finish(ctx context.Context, o Output) (*Report, error) {
	files, remove, err := p.apply()
	if err != nil {
		return p.rep, err
	}
	p.socketReports()
	if len(p.rep.Errors) > 0 {
		return p.rep, fmt.Errorf("%w: %d problem(s), first: %s", ErrChecks, len(p.rep.Errors), p.rep.Errors[0])
	}
	if o.DryRun {
		return p.rep, nil
	}
	if files != nil {
		p.newRaw["files.img"] = files
	}
	out := o.Dir
	if o.InPlace {
		out = p.d.Path
	}
	if out == "" {
		return p.rep, errors.New("no output: give OUTDIR, --in-place or --dry-run")
	}
	p.rep.Output = out
	if err := writeDir(ctx, p.d.Path, out, p.newRaw, remove, o.InPlace); err != nil {
		return p.rep, err
	}
	p.rep.Written = true
	return p.rep, nil
}

// writeDir builds the output in a temp dir next to out: changed files written fresh, removed ones
// left out, pages-*.img hard-linked when possible (CRIU only reads them), the rest copied. Then
// it renames the temp dir to out (in place: src moves to src.orig first).
func writeDir(ctx context.Context, src, out string, changed map[string][]byte, remove []string, inPlace bool) error {
	out = filepath.Clean(out)
	if !inPlace {
		if _, err := os.Lstat(out); err == nil {
			return fmt.Errorf("%w: %s (choose a new OUTDIR; inputs and existing dirs are never overwritten)", ErrOutputExists, out)
		}
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	skip := map[string]bool{}
	for _, r := range remove {
		skip[r] = true
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := e.Name()
		if skip[n] {
			continue
		}
		from, to := filepath.Join(src, n), filepath.Join(tmp, n)
		if b, ok := changed[n]; ok {
			mode := outfile.DefaultMode
			if st, err := os.Stat(from); err == nil {
				mode = st.Mode().Perm() // keep the original's mode (files.img is 0644 from criu)
			}
			if err := outfile.WriteMode(to, mode, func(w io.Writer) error { _, err := w.Write(b); return err }); err != nil {
				return err
			}
			continue
		}
		if err := copyEntry(from, to, strings.HasPrefix(n, "pages-")); err != nil {
			return fmt.Errorf("copy %s: %w", from, err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if inPlace {
		orig := out + ".orig"
		if _, err := os.Lstat(orig); err == nil {
			return fmt.Errorf("%w: %s (from an earlier --in-place run; remove it first)", ErrOutputExists, orig)
		}
		if err := os.Rename(out, orig); err != nil {
			return err
		}
		if err := os.Rename(tmp, out); err != nil {
			os.Rename(orig, out)
			return err
		}
	} else if err := os.Rename(tmp, out); err != nil {
		return err
	}
	ok = true
	return nil
}

func copyEntry(from, to string, link bool) error {
	fi, err := os.Lstat(from)
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		t, err := os.Readlink(from)
		if err != nil {
			return err
		}
		return os.Symlink(t, to)
	case fi.IsDir():
		if err := os.Mkdir(to, fi.Mode().Perm()); err != nil {
			return err
		}
		ents, err := os.ReadDir(from)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := copyEntry(filepath.Join(from, e.Name()), filepath.Join(to, e.Name()), link); err != nil {
				return err
			}
		}
		return nil
	case !fi.Mode().IsRegular():
		return nil
	}
	if link {
		if err := os.Link(from, to); err == nil {
			return nil
		}
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	o, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(o, in); err != nil {
		o.Close()
		return err
	}
	return o.Close()
}

// CopyDir copies an image directory to a new directory dst (temp dir + rename; pages-*.img
// hard-linked when possible).
func CopyDir(src, dst string) error { return writeDir(context.Background(), src, dst, nil, nil, false) }
