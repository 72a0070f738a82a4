package netrw

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/inventory"
	sk_inet "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-inet"
	tcp_stream "github.com/checkpoint-restore/go-criu/v8/crit/images/tcp-stream"

	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/image/nldump"
)

// Sentinel errors.
var (
	ErrNoImages     = errors.New("not a CRIU image directory")
	ErrChecks       = errors.New("checks failed, nothing written")
	ErrOutputExists = errors.New("output directory exists")
	ErrNothing      = errors.New("nothing selected")
)

// Linux socket constants as stored in inet_sk_entry.
const (
	afInet    = 2
	afInet6   = 10
	protoTCP  = 6
	protoUDP  = 17
	tcpListen = 10
	tcpClose  = 7
)

var tcpStates = map[uint32]string{1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
	6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}

// Socket is one inet socket of files.img.
type Socket struct {
	ID    uint32         `json:"id"`
	Ino   uint32         `json:"ino"`
	NsID  uint32         `json:"ns_id"`
	Proto string         `json:"proto"` // tcp, udp, raw/N
	State string         `json:"state"`
	Src   netip.AddrPort `json:"src"`
	Dst   netip.AddrPort `json:"dst"`

	entry int // index in files.img
	isk   *sk_inet.InetSkEntry
}

// Connected reports whether the socket is a TCP connection as CRIU sees it (restored with repair).
func (s *Socket) Connected() bool { return s.isk.GetProto() == protoTCP && s.isk.GetDstPort() != 0 }

// Queue is what a tcp-stream image says about one connection's queues.
type Queue struct {
	In     uint32 `json:"in"`     // bytes received, not read by the application
	Out    uint32 `json:"out"`    // bytes in the send queue (sent but not acked + unsent)
	Unsent uint32 `json:"unsent"` // of Out, never sent
	File   string `json:"file"`
}

// Dir is an image directory loaded for network edits.
type Dir struct {
	Path       string
	files      *image.Image
	Sockets    []*Socket
	Queues     map[uint32]Queue        // by socket ino
	Dumps      map[string]*nldump.Dump // ifaddr-N.img, route-N.img, route6-N.img, rule-N.img
	Text       map[string][]byte       // iptables-N.img, ip6tables-N.img, nftables-N.img
	LockMethod int                     // inventory network_lock_method (0 iptables, 1 nftables, 2 skip, -1 unknown)
	RunID      string                  // inventory dump_criu_run_id (names CRIU's nftables lock table)
	OwnNetns   bool                    // the dump contains network namespaces (netns-*.img)
}

func wordsToAddr(w []uint32, family uint32) (netip.Addr, error) {
	b := make([]byte, 4*len(w))
	for i, v := range w {
		binary.NativeEndian.PutUint32(b[4*i:], v) // CRIU stores in_addr words as they lie in memory
	}
	switch {
	case family == afInet && len(w) >= 1:
		a, _ := netip.AddrFromSlice(b[:4])
		return a, nil
	case family == afInet6 && len(w) == 4:
		a, _ := netip.AddrFromSlice(b)
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("family %d with %d address words", family, len(w))
}

func addrToWords(a netip.Addr, n int) []uint32 {
	b := a.AsSlice()
	w := make([]uint32, n)
	for i := range w {
		if 4*i+4 <= len(b) {
			w[i] = binary.NativeEndian.Uint32(b[4*i:])
		}
	}
	return w
}

func protoName(p uint32) string {
	switch p {
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	case 136:
		return "udplite"
	case 1:
		return "icmp"
	case 58:
		return "icmpv6"
	}
	return "proto-" + strconv.Itoa(int(p))
}

func stateName(proto, st uint32) string {
	if proto == protoTCP {
		if s, ok := tcpStates[st]; ok {
			return s
		}
	}
	if st == tcpClose {
		return "UNCONN"
	}
	if st == 1 {
		return "CONNECTED"
	}
	return "state-" + strconv.Itoa(int(st))
}

// Load reads files.img, tcp-stream-*.img and the netns dumps of dir.
func Load(dir string) (*Dir, error) {
	d := &Dir{Path: dir, Queues: map[uint32]Queue{}, Dumps: map[string]*nldump.Dump{}, Text: map[string][]byte{}, LockMethod: -1}
	if _, err := os.Stat(filepath.Join(dir, "inventory.img")); err != nil {
		return nil, fmt.Errorf("%w: %s has no inventory.img (%v)", ErrNoImages, dir, err)
	}
	if inv, err := image.ReadFile(filepath.Join(dir, "inventory.img")); err == nil && len(inv.Entries) > 0 {
		if ie, ok := inv.Entries[0].Msg.(*inventory.InventoryEntry); ok {
			if ie.NetworkLockMethod != nil {
				d.LockMethod = int(ie.GetNetworkLockMethod())
			}
			d.RunID = ie.GetDumpCriuRunId()
		}
	}
	fpath := filepath.Join(dir, "files.img")
	if _, err := os.Stat(fpath); err == nil {
		img, err := image.ReadFile(fpath)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", fpath, err)
		}
		d.files = img
		for i, e := range img.Entries {
			fe, ok := e.Msg.(*fdinfo.FileEntry)
			if !ok || fe.Isk == nil {
				continue
			}
			isk := fe.Isk
			src, err1 := wordsToAddr(isk.SrcAddr, isk.GetFamily())
			dst, err2 := wordsToAddr(isk.DstAddr, isk.GetFamily())
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("%s entry %d (socket id %d ino %#x): %v", fpath, i, isk.GetId(), isk.GetIno(), err)
			}
			d.Sockets = append(d.Sockets, &Socket{
				ID: isk.GetId(), Ino: isk.GetIno(), NsID: isk.GetNsId(),
				Proto: protoName(isk.GetProto()), State: stateName(isk.GetProto(), isk.GetState()),
				Src: netip.AddrPortFrom(src, uint16(isk.GetSrcPort())), Dst: netip.AddrPortFrom(dst, uint16(isk.GetDstPort())),
				entry: i, isk: isk,
			})
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		n := e.Name()
		p := filepath.Join(dir, n)
		switch {
		case matchNum(n, "netns-"):
			d.OwnNetns = true
		case strings.HasPrefix(n, "tcp-stream-") && strings.HasSuffix(n, ".img"):
			ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(n, "tcp-stream-"), ".img"), 16, 32)
			if err != nil {
				continue
			}
			img, err := image.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", p, err)
			}
			if len(img.Entries) == 0 {
				return nil, fmt.Errorf("%s: no tcp_stream entry", p)
			}
			ts, ok := img.Entries[0].Msg.(*tcp_stream.TcpStreamEntry)
			if !ok {
				return nil, fmt.Errorf("%s: entry 0 is %T, not a tcp_stream_entry", p, img.Entries[0].Msg)
			}
			d.Queues[uint32(ino)] = Queue{In: ts.GetInqLen(), Out: ts.GetOutqLen(), Unsent: ts.GetUnsqLen(), File: n}
		case matchNum(n, "ifaddr-"), matchNum(n, "route-"), matchNum(n, "route6-"), matchNum(n, "rule-"):
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			if len(b) == 0 {
				continue
			}
			nd, err := nldump.Parse(b)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			d.Dumps[n] = nd
		case matchNum(n, "iptables-"), matchNum(n, "ip6tables-"), matchNum(n, "nftables-"):
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			d.Text[n] = b
		}
	}
	sort.Slice(d.Sockets, func(i, j int) bool { return d.Sockets[i].entry < d.Sockets[j].entry })
	return d, nil
}

// matchNum matches PREFIX<decimal>.img.
func matchNum(name, prefix string) bool {
	if !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, ".img") {
		return false
	}
	_, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, prefix), ".img"), 10, 32)
	return err == nil
}

// nsAddrs returns the interface addresses of netns id from ifaddr-<id>.img (ok false when the
// netns was not dumped).
func (d *Dir) nsAddrs(id uint32) ([]nldump.IfAddr, bool) {
	nd, ok := d.Dumps[fmt.Sprintf("ifaddr-%d.img", id)]
	if !ok {
		return nil, false
	}
	return nd.Addrs(), true
}

func sameAddr(a, b netip.Addr) bool { return a.Unmap() == b.Unmap() }

// peers pairs connected TCP sockets whose 4-tuples mirror each other (both ends in the images).
func (d *Dir) peers() map[*Socket]*Socket {
	out := map[*Socket]*Socket{}
	for _, s := range d.Sockets {
		if !s.Connected() {
			continue
		}
		var best *Socket
		for _, t := range d.Sockets {
			if t == s || !t.Connected() || t.Src.Port() != s.Dst.Port() || t.Dst.Port() != s.Src.Port() ||
				!sameAddr(t.Src.Addr(), s.Dst.Addr()) || !sameAddr(t.Dst.Addr(), s.Src.Addr()) {
				continue
			}
			if best == nil || (t.NsID == s.NsID && best.NsID != s.NsID) {
				best = t
			}
		}
		if best != nil {
			out[s] = best
		}
	}
	return out
}
