package netrw

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	sk_opts "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-opts"
	"google.golang.org/protobuf/proto"

	"github.com/criukit/criukit/netrw/addrmap"
	"github.com/criukit/criukit/netrw/fwtext"
)

// Actions in a SocketReport.
const (
	ActUnchanged = "unchanged"
	ActRewrite   = "rewrite"
	ActClose     = "close"
	ActKeep      = "keep" // external connection whose 4-tuple changes and that is not closed: it will break
)

// Peer kinds in a SocketReport.
const (
	PeerInImages = "in-images"
	PeerExternal = "external"
)

// SocketReport is the fate of one inet socket.
type SocketReport struct {
	ID        uint32 `json:"id"`
	Ino       uint32 `json:"ino"`
	NsID      uint32 `json:"ns_id"`
	Proto     string `json:"proto"`
	State     string `json:"state"`
	Local     string `json:"local"`
	Remote    string `json:"remote,omitempty"`
	NewLocal  string `json:"new_local,omitempty"`
	NewRemote string `json:"new_remote,omitempty"`
	Peer      string `json:"peer,omitempty"`     // in-images, external, or empty when not connected
	PeerIno   uint32 `json:"peer_ino,omitempty"` // the other end when it is in the images
	Action    string `json:"action"`
	Note      string `json:"note,omitempty"`
	Queue     *Queue `json:"queue,omitempty"` // tcp-stream queues (closed sockets: data lost)
}

// FileReport says what changed in one image file.
type FileReport struct {
	Name    string   `json:"name"`
	Changes int      `json:"changes"`
	Details []string `json:"details,omitempty"`
	Removed bool     `json:"removed,omitempty"`
}

// Report is the outcome of Rewrite or Close. With Errors set nothing was written.
type Report struct {
	Images   string         `json:"images"`
	Output   string         `json:"output,omitempty"`
	Written  bool           `json:"written"`
	Rules    []string       `json:"map,omitempty"`
	Ports    []string       `json:"ports,omitempty"`
	Sockets  []SocketReport `json:"sockets"`
	Files    []FileReport   `json:"files"`
	DataLoss []SocketReport `json:"data_loss,omitempty"` // closed sockets whose queues held data
	Errors   []string       `json:"errors,omitempty"`
	Warnings []string       `json:"warnings,omitempty"`
}

type sockEdit struct {
	src, dst netip.AddrPort
	close    bool
	peer     *Socket
	note     string
	action   string
}

// plan is a set of edits on a loaded Dir.
type plan struct {
	d      *Dir
	edits  map[*Socket]*sockEdit
	newRaw map[string][]byte // rewritten raw files
	rep    *Report
}

func newPlan(d *Dir) *plan {
	p := &plan{d: d, edits: map[*Socket]*sockEdit{}, newRaw: map[string][]byte{}, rep: &Report{Images: d.Path}}
	peers := d.peers()
	for _, s := range d.Sockets {
		p.edits[s] = &sockEdit{src: s.Src, dst: s.Dst, peer: peers[s], action: ActUnchanged}
	}
	return p
}

func (p *plan) errorf(format string, args ...any) {
	p.rep.Errors = append(p.rep.Errors, fmt.Sprintf(format, args...))
}

func (p *plan) warnf(format string, args ...any) {
	p.rep.Warnings = append(p.rep.Warnings, fmt.Sprintf(format, args...))
}

func sockName(s *Socket) string {
	return fmt.Sprintf("socket ino %#x (id %d, %s %s %s", s.Ino, s.ID, s.Proto, s.State, s.Src) +
		map[bool]string{true: " -> " + s.Dst.String(), false: ""}[s.Dst.Port() != 0] + ")"
}

// closeSock marks s to be restored closed.
func (p *plan) closeSock(s *Socket, note string) {
	e := p.edits[s]
	e.close, e.action, e.note = true, ActClose, note
}

// mapAddrs applies the address and port maps to every socket.
func (p *plan) mapAddrs(m *addrmap.Map, ports addrmap.Ports, closeExternal bool) {
	mapAP := func(ap netip.AddrPort, mapPort bool) netip.AddrPort {
		a := ap.Addr()
		if !a.IsUnspecified() {
			a, _ = m.Addr(a)
		}
		port := ap.Port()
		if mapPort && port != 0 {
			port, _ = ports.Port(port)
		}
		return netip.AddrPortFrom(a, port)
	}
	for _, s := range p.d.Sockets {
		e := p.edits[s]
		e.src = mapAP(s.Src, true)
		if s.Dst.Port() != 0 || !s.Dst.Addr().IsUnspecified() {
			e.dst = mapAP(s.Dst, e.peer != nil) // a peer outside the images keeps its port
		}
		if e.src != s.Src || e.dst != s.Dst {
			e.action = ActRewrite
		}
	}
	for _, s := range p.d.Sockets {
		e := p.edits[s]
		switch {
		case e.peer != nil:
			e.note = fmt.Sprintf("both ends in the images (peer ino %#x): rewritten alike", e.peer.Ino)
		case s.Connected() && e.action == ActRewrite:
			if closeExternal {
				p.closeSock(s, fmt.Sprintf("peer %s is outside the images and would reset the moved connection: restored closed (EOF/EPIPE)", s.Dst))
				continue
			}
			e.action = ActKeep
			e.note = fmt.Sprintf("peer %s is outside the images: it will reset this connection after restore (4-tuple changed) unless NAT or a virtual IP keeps %s reachable; --close-external restores it closed", s.Dst, s.Src)
		case s.Connected():
			e.note = fmt.Sprintf("peer %s is outside the images; 4-tuple unchanged: survives only where %s exists and the peer still reaches it", s.Dst, s.Src.Addr())
		case s.Dst.Port() != 0 && e.action == ActRewrite:
			e.note = fmt.Sprintf("connected %s socket: datagrams to %s now come from %s", s.Proto, e.dst, e.src.Addr())
		}
	}
}

func (p *plan) socketReports() {
	for _, s := range p.d.Sockets {
		e := p.edits[s]
		r := SocketReport{ID: s.ID, Ino: s.Ino, NsID: s.NsID, Proto: s.Proto, State: s.State, Local: s.Src.String(),
			Action: e.action, Note: e.note}
		if s.Dst.Port() != 0 || !s.Dst.Addr().IsUnspecified() {
			r.Remote = s.Dst.String()
		}
		if s.Connected() {
			r.Peer = PeerExternal
			if e.peer != nil {
				r.Peer, r.PeerIno = PeerInImages, e.peer.Ino
			}
		}
		if !e.close && e.src != s.Src {
			r.NewLocal = e.src.String()
		}
		if !e.close && e.dst != s.Dst {
			r.NewRemote = e.dst.String()
		}
		if q, ok := p.d.Queues[s.Ino]; ok {
			q := q
			r.Queue = &q
			if e.close && (q.In > 0 || q.Out > 0) {
				p.rep.DataLoss = append(p.rep.DataLoss, r)
			}
		}
		p.rep.Sockets = append(p.rep.Sockets, r)
	}
}

// rewriteNetns rewrites the netlink dumps and firewall text.
func (p *plan) rewriteNetns(m *addrmap.Map) {
	names := make([]string, 0, len(p.d.Dumps))
	for n := range p.d.Dumps {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		nd := p.d.Dumps[n]
		fr := FileReport{Name: n}
		for _, c := range nd.Rewrite(m) {
			if c.Warning != "" {
				p.warnf("%s: %s %s", n, c.Name, c.Warning)
				continue
			}
			fr.Changes++
			fr.Details = append(fr.Details, fmt.Sprintf("%s %s -> %s", c.Name, c.Addr, c.New))
		}
		if fr.Changes > 0 {
			p.newRaw[n] = nd.Bytes()
			p.rep.Files = append(p.rep.Files, fr)
		}
	}
	names = names[:0]
	for n := range p.d.Text {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f := fwtext.Iptables
		if strings.HasPrefix(n, "nftables-") {
			f = fwtext.Nftables
		}
		out, ch := fwtext.Rewrite(p.d.Text[n], f, m)
		fr := FileReport{Name: n}
		for _, c := range ch {
			if c.Warning != "" {
				p.warnf("%s line %d: %s %s", n, c.Line, c.Old, c.Warning)
				continue
			}
			fr.Changes++
			fr.Details = append(fr.Details, fmt.Sprintf("line %d: %s -> %s", c.Line, c.Old, c.New))
		}
		if fr.Changes > 0 {
			p.newRaw[n] = out
			p.rep.Files = append(p.rep.Files, fr)
		}
	}
}

// present reports whether address a exists in netns ns after the rewrite.
func (p *plan) present(ns uint32, a netip.Addr, declared []netip.Prefix) (ok, known bool) {
	a = a.Unmap()
	for _, d := range declared {
		if d.Contains(a) {
			return true, true
		}
	}
	addrs, dumped := p.d.nsAddrs(ns)
	if !dumped {
		return a.IsLoopback(), a.IsLoopback()
	}
	for _, ia := range addrs {
		la := ia.Prefix.Addr().Unmap()
		if la == a || (a.IsLoopback() && la.IsLoopback() && ia.Prefix.Contains(a)) {
			return true, true
		}
	}
	return false, true
}

// check runs the checks that must pass before anything is written.
func (p *plan) check(declared []netip.Prefix) {
	// 1. in-image pairs stay mirrored
	for _, s := range p.d.Sockets {
		e := p.edits[s]
		if e.peer == nil {
			continue
		}
		pe := p.edits[e.peer]
		if e.close != pe.close {
			p.errorf("%s is closed but its peer ino %#x is not", sockName(s), e.peer.Ino)
		} else if !e.close && (!sameAP(e.dst, pe.src) || !sameAP(e.src, pe.dst)) {
			p.errorf("%s and its peer ino %#x would no longer match (%s -> %s vs %s -> %s)", sockName(s), e.peer.Ino, e.src, e.dst, pe.src, pe.dst)
		}
	}
	// 2. source addresses exist where the sockets are restored (one error per address and netns)
	type missKey struct {
		ns     uint32
		addr   netip.Addr
		dumped bool
	}
	miss := map[missKey][]string{}
	var order []missKey
	for _, s := range p.d.Sockets {
		e := p.edits[s]
		a := e.src.Addr()
		if e.close || a.IsUnspecified() || s.isk.GetIpOpts().GetFreebind() {
			continue
		}
		ok, known := p.present(s.NsID, a, declared)
		if ok || (!known && e.src.Addr() == s.Src.Addr()) {
			continue
		}
		k := missKey{s.NsID, a.Unmap(), known}
		if _, seen := miss[k]; !seen {
			order = append(order, k)
		}
		miss[k] = append(miss[k], fmt.Sprintf("%#x", s.Ino))
	}
	for _, k := range order {
		if !k.dumped {
			p.errorf("new source address %s (sockets %s) is not known to exist where they are restored: their netns (ns_id %d) is not in the images. "+
				"Make sure it exists in the target netns and declare it with --declare-present %s", k.addr, strings.Join(miss[k], ", "), k.ns, k.addr)
		} else {
			p.errorf("source address %s (sockets %s) is not an address of the dumped netns (ifaddr-%d.img) after the rewrite: CRIU's bind() would fail "+
				"(Cannot assign requested address). Map it too, or declare it with --declare-present if the restore adds it", k.addr, strings.Join(miss[k], ", "), k.ns)
		}
	}
	// 3. no 4-tuple (or listener) collisions created by the rewrite
	type key struct {
		ns       uint32
		proto    string
		src, dst string
	}
	groups := map[key][]*Socket{}
	for _, s := range p.d.Sockets {
		e := p.edits[s]
		if e.close || (e.src.Port() == 0) {
			continue
		}
		k := key{s.NsID, s.Proto, norm(e.src), norm(e.dst)}
		if !s.Connected() {
			k.dst = s.State
		}
		groups[k] = append(groups[k], s)
	}
	for k, g := range groups {
		if len(g) < 2 {
			continue
		}
		same := true
		for _, s := range g[1:] {
			if norm(s.Src) != norm(g[0].Src) || norm(s.Dst) != norm(g[0].Dst) {
				same = false
			}
		}
		if same && !g[0].Connected() {
			continue // several sockets shared the address before (SO_REUSEPORT groups): not our doing
		}
		var inos []string
		for _, s := range g {
			inos = append(inos, fmt.Sprintf("%#x", s.Ino))
		}
		p.errorf("duplicate %s %s %s -> %s in netns %d after the rewrite (sockets %s)", k.proto,
			map[bool]string{true: "4-tuple", false: "binding"}[g[0].Connected()], k.src, k.dst, k.ns, strings.Join(inos, ", "))
	}
}

func norm(ap netip.AddrPort) string { return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String() }

func sameAP(a, b netip.AddrPort) bool { return norm(a) == norm(b) }

// apply writes the socket edits into the files.img messages and returns the new image bytes
// plus the tcp-stream files to remove.
func (p *plan) apply() (files []byte, remove []string, err error) {
	changed := false
	for _, s := range p.d.Sockets {
		e := p.edits[s]
		isk := s.isk
		switch {
		case e.close:
			isk.State = proto.Uint32(tcpClose)
			isk.SrcPort, isk.DstPort = proto.Uint32(0), proto.Uint32(0)
			isk.SrcAddr = make([]uint32, len(isk.SrcAddr))
			isk.DstAddr = make([]uint32, len(isk.DstAddr))
			isk.Shutdown = sk_opts.SkShutdown_BOTH.Enum()
			if q, ok := p.d.Queues[s.Ino]; ok {
				remove = append(remove, q.File)
			}
			changed = true
		case e.src != s.Src || e.dst != s.Dst:
			isk.SrcAddr = addrToWords(e.src.Addr(), len(isk.SrcAddr))
			isk.DstAddr = addrToWords(e.dst.Addr(), len(isk.DstAddr))
			isk.SrcPort = proto.Uint32(uint32(e.src.Port()))
			isk.DstPort = proto.Uint32(uint32(e.dst.Port()))
			changed = true
		}
	}
	if !changed {
		return nil, remove, nil
	}
	var b strings.Builder
	if err := p.d.files.Encode(&b); err != nil {
		return nil, nil, fmt.Errorf("encode files.img: %w", err)
	}
	n := 0
	for _, s := range p.d.Sockets {
		if e := p.edits[s]; e.close || e.src != s.Src || e.dst != s.Dst {
			n++
		}
	}
	p.rep.Files = append([]FileReport{{Name: "files.img", Changes: n}}, p.rep.Files...)
	for _, r := range remove {
		p.rep.Files = append(p.rep.Files, FileReport{Name: r, Removed: true})
	}
	return []byte(b.String()), remove, nil
}
