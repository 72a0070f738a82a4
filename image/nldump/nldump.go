// Package nldump parses and rewrites the raw netlink dumps that CRIU stores for a dumped network
// namespace (ifaddr-*.img, route-*.img, route6-*.img, rule-*.img): the output of
// `ip addr|route|rule save`, a 4-byte iproute2 magic followed by RTM_NEWADDR, RTM_NEWROUTE or
// RTM_NEWRULE netlink messages. Addresses are rewritten in place (same length), so every other
// byte stays as the kernel wrote it.
package nldump

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// iproute2 magics (host byte order, as `ip ... save` writes them).
const (
	MagicAddr  uint32 = 0x47361222 // ip addr save
	MagicRoute uint32 = 0x45311224 // ip route save, ip -6 route save
	MagicRule  uint32 = 0x71706986 // ip rule save
)

// Netlink message types found in the dumps.
const (
	rtmNewAddr  = 20
	rtmNewRoute = 24
	rtmNewRule  = 32
)

// Attribute types that carry addresses.
const (
	ifaAddress   = 1
	ifaLocal     = 2
	ifaBroadcast = 4
	ifaAnycast   = 5
	ifaMulticast = 7

	rtaDst       = 1
	rtaSrc       = 2
	rtaGateway   = 5
	rtaPrefsrc   = 7
	rtaMultipath = 9
	rtaVia       = 18

	fraDst = 1
	fraSrc = 2
)

// Attribute types that carry interface names (NUL-terminated).
const (
	ifaLabel   = 3
	fraIifname = 3
	fraOifname = 17
)

const (
	nlmsgHdrLen = 16
	rtaHdrLen   = 4
	ifaMsgLen   = 8
	rtMsgLen    = 12 // struct rtmsg and struct fib_rule_hdr have the same size
	nhLen       = 8  // struct rtnexthop
)

// ErrFormat is wrapped by every parse error.
var ErrFormat = errors.New("bad iproute2 dump")

var ne = binary.NativeEndian

// Kind says which `ip ... save` produced a dump.
type Kind int

const (
	KindUnknown Kind = iota
	KindAddr
	KindRoute
	KindRule
)

func (k Kind) String() string {
	switch k {
	case KindAddr:
		return "addr"
	case KindRoute:
		return "route"
	case KindRule:
		return "rule"
	}
	return "unknown"
}

// Dump is a parsed dump. Its bytes are owned by the Dump (Parse copies its input).
type Dump struct {
	Kind Kind
	data []byte
	msgs []span // byte ranges of messages (aligned length)
}

type span struct{ off, len int }

// Field is one address-carrying attribute of a message.
type Field struct {
	Msg    int    // message index
	Offset int    // offset of the address bytes in the dump
	Name   string // "IFA_LOCAL", "RTA_GATEWAY", ...
	Addr   netip.Addr
	Bits   int // prefix length that applies to this address (-1 when it is a plain address)
}

// Parse checks the whole structure of a dump: magic, message lengths and attribute lengths.
func Parse(data []byte) (*Dump, error) {
	if len(data) < 4 {
		return nil, fmt.Errorf("%w: %d bytes, too short for the 4-byte magic", ErrFormat, len(data))
	}
	d := &Dump{data: append([]byte(nil), data...)}
	switch ne.Uint32(data) {
	case MagicAddr:
		d.Kind = KindAddr
	case MagicRoute:
		d.Kind = KindRoute
	case MagicRule:
		d.Kind = KindRule
	default:
		return nil, fmt.Errorf("%w: unknown magic %#08x at offset 0 (want addr %#x, route %#x or rule %#x)",
			ErrFormat, ne.Uint32(data), MagicAddr, MagicRoute, MagicRule)
	}
	off := 4
	for off < len(d.data) {
		if len(d.data)-off < nlmsgHdrLen {
			return nil, fmt.Errorf("%w: truncated netlink header at offset %d (%d bytes left)", ErrFormat, off, len(d.data)-off)
		}
		l := int(ne.Uint32(d.data[off:]))
		if l < nlmsgHdrLen || l > len(d.data)-off {
			return nil, fmt.Errorf("%w: message %d at offset %d has length %d (%d bytes left)", ErrFormat, len(d.msgs), off, l, len(d.data)-off)
		}
		al := align4(l)
		if al > len(d.data)-off { // a last message without padding
			al = l
		}
		typ := ne.Uint16(d.data[off+4:])
		want := map[Kind]uint16{KindAddr: rtmNewAddr, KindRoute: rtmNewRoute, KindRule: rtmNewRule}[d.Kind]
		if typ != want {
			return nil, fmt.Errorf("%w: message %d at offset %d has type %d, want %d in an %s dump", ErrFormat, len(d.msgs), off, typ, want, d.Kind)
		}
		d.msgs = append(d.msgs, span{off, l})
		if _, err := d.fields(len(d.msgs) - 1); err != nil {
			return nil, err
		}
		off += al
	}
	return d, nil
}

func align4(n int) int { return (n + 3) &^ 3 }

// Bytes returns the (possibly rewritten) dump.
func (d *Dump) Bytes() []byte { return d.data }

// Len returns the number of messages.
func (d *Dump) Len() int { return len(d.msgs) }

func attrName(k Kind, t uint16) string {
	switch k {
	case KindAddr:
		return map[uint16]string{ifaAddress: "IFA_ADDRESS", ifaLocal: "IFA_LOCAL", ifaBroadcast: "IFA_BROADCAST",
			ifaAnycast: "IFA_ANYCAST", ifaMulticast: "IFA_MULTICAST"}[t]
	case KindRoute:
		return map[uint16]string{rtaDst: "RTA_DST", rtaSrc: "RTA_SRC", rtaGateway: "RTA_GATEWAY",
			rtaPrefsrc: "RTA_PREFSRC", rtaVia: "RTA_VIA"}[t]
	case KindRule:
		return map[uint16]string{fraDst: "FRA_DST", fraSrc: "FRA_SRC"}[t]
	}
	return ""
}

// fixedLen is the size of the fixed header after the nlmsghdr (ifaddrmsg, rtmsg or fib_rule_hdr).
func (d *Dump) fixedLen() int {
	if d.Kind == KindAddr {
		return ifaMsgLen
	}
	return rtMsgLen
}

// fields lists the address attributes of message i (and checks its attribute structure).
func (d *Dump) fields(i int) ([]Field, error) {
	m := d.msgs[i]
	body := m.off + nlmsgHdrLen
	end := m.off + m.len
	fixed := d.fixedLen()
	if end-body < fixed {
		return nil, fmt.Errorf("%w: message %d at offset %d: %d bytes, too short for its %d-byte header", ErrFormat, i, m.off, m.len, nlmsgHdrLen+fixed)
	}
	family := d.data[body]
	var dstLen, srcLen, addrLen int = -1, -1, -1
	if d.Kind == KindAddr {
		addrLen = int(d.data[body+1])
	} else {
		dstLen, srcLen = int(d.data[body+1]), int(d.data[body+2])
	}
	var out []Field
	err := walkAttrs(d.data, body+fixed, end, func(t uint16, p, l int) error {
		name := attrName(d.Kind, t)
		if name == "" && !(d.Kind == KindRoute && t == rtaMultipath) {
			return nil
		}
		switch {
		case d.Kind == KindRoute && t == rtaMultipath:
			return walkNexthops(d.data, p, p+l, func(t2 uint16, p2, l2 int) error {
				if t2 != rtaGateway && t2 != rtaVia {
					return nil
				}
				f, ok := addrField(d.data, i, family, t2 == rtaVia, p2, l2, attrName(KindRoute, t2)+"(nexthop)", -1)
				if ok {
					out = append(out, f)
				}
				return nil
			})
		default:
			bits := -1
			switch {
			case d.Kind == KindAddr && (t == ifaAddress || t == ifaLocal):
				bits = addrLen
			case d.Kind != KindAddr && (t == rtaDst): // RTA_DST == FRA_DST
				bits = dstLen
			case d.Kind != KindAddr && (t == rtaSrc): // RTA_SRC == FRA_SRC
				bits = srcLen
			}
			f, ok := addrField(d.data, i, family, d.Kind == KindRoute && t == rtaVia, p, l, name, bits)
			if ok {
				out = append(out, f)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: message %d at offset %d: %v", ErrFormat, i, m.off, err)
	}
	return out, nil
}

// addrField reads an address payload; RTA_VIA payloads start with a 2-byte family.
func addrField(b []byte, msg int, family byte, via bool, p, l int, name string, bits int) (Field, bool) {
	if via {
		if l < 2 {
			return Field{}, false
		}
		p, l = p+2, l-2
	}
	if l != 4 && l != 16 {
		return Field{}, false
	}
	a, _ := netip.AddrFromSlice(b[p : p+l])
	if bits > a.BitLen() {
		bits = a.BitLen()
	}
	_ = family
	return Field{Msg: msg, Offset: p, Name: name, Addr: a, Bits: bits}, true
}

func walkAttrs(b []byte, off, end int, fn func(t uint16, p, l int) error) error {
	for off < end {
		if end-off < rtaHdrLen {
			return fmt.Errorf("truncated attribute header at offset %d", off)
		}
		l := int(ne.Uint16(b[off:]))
		t := ne.Uint16(b[off+2:]) & 0x3fff // drop NLA_F_NESTED / NLA_F_NET_BYTEORDER
		if l < rtaHdrLen || l > end-off {
			return fmt.Errorf("attribute type %d at offset %d has length %d (%d bytes left)", t, off, l, end-off)
		}
		if err := fn(t, off+rtaHdrLen, l-rtaHdrLen); err != nil {
			return err
		}
		off += align4(l)
	}
	return nil
}

func walkNexthops(b []byte, off, end int, fn func(t uint16, p, l int) error) error {
	for off < end {
		if end-off < nhLen {
			return fmt.Errorf("truncated rtnexthop at offset %d", off)
		}
		l := int(ne.Uint16(b[off:]))
		if l < nhLen || l > end-off {
			return fmt.Errorf("rtnexthop at offset %d has length %d (%d bytes left)", off, l, end-off)
		}
		if err := walkAttrs(b, off+nhLen, off+l, fn); err != nil {
			return err
		}
		off += align4(l)
	}
	return nil
}

// Fields lists every address attribute of the dump, in file order.
func (d *Dump) Fields() []Field {
	var out []Field
	for i := range d.msgs {
		f, _ := d.fields(i) // checked by Parse
		out = append(out, f...)
	}
	return out
}

// NameField is one interface-name attribute of a message (IFA_LABEL, FRA_IIFNAME, FRA_OIFNAME).
type NameField struct {
	Msg    int    // message index
	Offset int    // offset of the attribute payload in the dump
	Len    int    // payload length: the name, its NUL and any padding the attribute holds
	Name   string // "IFA_LABEL", ...
	Value  string // the name, up to its first NUL
}

// Names lists every interface-name attribute of the dump, in file order.
func (d *Dump) Names() []NameField {
	var out []NameField
	for i, m := range d.msgs {
		_ = walkAttrs(d.data, m.off+nlmsgHdrLen+d.fixedLen(), m.off+m.len, func(t uint16, p, l int) error { // checked by Parse
			name := ""
			switch {
			case d.Kind == KindAddr && t == ifaLabel:
				name = "IFA_LABEL"
			case d.Kind == KindRule && t == fraIifname:
				name = "FRA_IIFNAME"
			case d.Kind == KindRule && t == fraOifname:
				name = "FRA_OIFNAME"
			default:
				return nil
			}
			v := d.data[p : p+l]
			if i := bytes.IndexByte(v, 0); i >= 0 {
				v = v[:i]
			}
			out = append(out, NameField{Msg: i, Offset: p, Len: l, Name: name, Value: string(v)})
			return nil
		})
	}
	return out
}

// IfAddr is one interface address of an addr dump.
type IfAddr struct {
	Index  uint32       `json:"ifindex"`
	Prefix netip.Prefix `json:"prefix"`
}

// Addrs lists the interface addresses (IFA_LOCAL, or IFA_ADDRESS when there is no IFA_LOCAL) of
// an addr dump.
func (d *Dump) Addrs() []IfAddr {
	if d.Kind != KindAddr {
		return nil
	}
	var out []IfAddr
	for i, m := range d.msgs {
		fs, _ := d.fields(i)
		idx := ne.Uint32(d.data[m.off+nlmsgHdrLen+4:])
		var local, addr *Field
		for j := range fs {
			switch fs[j].Name {
			case "IFA_LOCAL":
				local = &fs[j]
			case "IFA_ADDRESS":
				addr = &fs[j]
			}
		}
		if local == nil {
			local = addr
		}
		if local != nil {
			out = append(out, IfAddr{Index: idx, Prefix: netip.PrefixFrom(local.Addr, local.Bits)})
		}
	}
	return out
}

// Mapper is what Rewrite needs from an address map (addrmap.Map implements it).
type Mapper interface {
	Addr(netip.Addr) (netip.Addr, bool)
	Prefix(netip.Prefix) (np netip.Prefix, ok, covers bool)
}

// Change is one rewritten (or deliberately kept) field.
type Change struct {
	Field
	New     netip.Addr `json:"new"`
	Warning string     `json:"warning,omitempty"` // set when the field was kept on purpose
}

// Rewrite maps every address attribute in place and returns what changed. Networks (route and
// rule destinations/sources with a prefix length) are mapped only when they lie inside a mapped
// network; wider networks are kept and reported with a Warning.
func (d *Dump) Rewrite(m Mapper) []Change {
	var out []Change
	for _, f := range d.Fields() {
		var na netip.Addr
		var ok, covers bool
		if f.Bits >= 0 && f.Bits < f.Addr.BitLen() && d.Kind != KindAddr {
			var np netip.Prefix
			np, ok, covers = m.Prefix(netip.PrefixFrom(f.Addr, f.Bits))
			na = np.Addr()
		} else {
			na, ok = m.Addr(f.Addr)
		}
		switch {
		case covers:
			out = append(out, Change{Field: f, New: f.Addr, Warning: fmt.Sprintf("%s/%d is wider than a mapped network: kept", f.Addr, f.Bits)})
		case ok && na != f.Addr:
			copy(d.data[f.Offset:], na.AsSlice())
			out = append(out, Change{Field: f, New: na})
		}
	}
	return out
}
