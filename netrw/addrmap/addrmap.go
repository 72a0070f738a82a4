// Package addrmap parses and applies the address and port mappings of `criukit net rewrite`:
// OLD=NEW pairs of addresses or networks (IPv4 or IPv6, same family and prefix length; an IPv4
// rule also covers the IPv4-mapped IPv6 form ::ffff:a.b.c.d) and OLD:NEW port pairs.
package addrmap

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// ErrSyntax is wrapped by every parse error of this package.
var ErrSyntax = errors.New("bad mapping")

// Rule maps every address inside Old to the address inside New with the same host bits.
// Old and New have the same family and prefix length.
type Rule struct {
	Old netip.Prefix `json:"old"`
	New netip.Prefix `json:"new"`
}

func (r Rule) String() string { return fmtPrefix(r.Old) + "=" + fmtPrefix(r.New) }

func fmtPrefix(p netip.Prefix) string {
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

// Map is an ordered set of rules; lookups use the longest matching Old prefix.
// The zero Map maps nothing.
type Map struct {
	rules []Rule
}

// Parse reads "OLD=NEW[,OLD=NEW...]" where each side is an address (10.11.0.1, fd00::1) or a
// network (10.11.0.0/24=10.22.0.0/24). Several specs may be given (repeated flags).
func Parse(specs ...string) (*Map, error) {
	m := &Map{}
	for _, spec := range specs {
		for _, part := range strings.Split(spec, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			if err := m.Add(part); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func parseSide(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%s has host bits set (did you mean %s?)", s, p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%s: zones are not supported in mappings", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Add parses one "OLD=NEW" rule and adds it.
func (m *Map) Add(part string) error {
	old, nw, ok := strings.Cut(part, "=")
	if !ok {
		return fmt.Errorf("%w %q: want OLD=NEW (for example 10.11.0.1=10.22.0.1 or 10.11.0.0/24=10.22.0.0/24)", ErrSyntax, part)
	}
	po, err := parseSide(strings.TrimSpace(old))
	if err != nil {
		return fmt.Errorf("%w %q: old side: %v", ErrSyntax, part, err)
	}
	pn, err := parseSide(strings.TrimSpace(nw))
	if err != nil {
		return fmt.Errorf("%w %q: new side: %v", ErrSyntax, part, err)
	}
	for _, p := range []netip.Prefix{po, pn} {
		if p.Addr().Is4In6() {
			return fmt.Errorf("%w %q: write IPv4-mapped addresses in IPv4 form (%s); the rule then covers both forms", ErrSyntax, part, p.Addr().Unmap())
		}
	}
	if po.Addr().Is4() != pn.Addr().Is4() {
		return fmt.Errorf("%w %q: old and new must be the same family (socket images cannot change family)", ErrSyntax, part)
	}
	if po.Bits() != pn.Bits() {
		return fmt.Errorf("%w %q: old and new must have the same prefix length (/%d vs /%d)", ErrSyntax, part, po.Bits(), pn.Bits())
	}
	for _, r := range m.rules {
		if r.Old == po {
			return fmt.Errorf("%w %q: %s is mapped twice", ErrSyntax, part, fmtPrefix(po))
		}
	}
	m.rules = append(m.rules, Rule{Old: po, New: pn})
	// Longest prefix first so that lookups pick the most specific rule.
	sort.SliceStable(m.rules, func(i, j int) bool { return m.rules[i].Old.Bits() > m.rules[j].Old.Bits() })
	return nil
}

// Rules returns the rules, most specific first.
func (m *Map) Rules() []Rule {
	if m == nil {
		return nil
	}
	return append([]Rule(nil), m.rules...)
}

// Empty reports whether the map has no rules.
func (m *Map) Empty() bool { return m == nil || len(m.rules) == 0 }

func apply(r Rule, a netip.Addr) netip.Addr {
	ob := a.AsSlice()
	nb := r.New.Addr().AsSlice()
	bits := r.New.Bits()
	out := make([]byte, len(ob))
	for i := range out {
		var mask byte
		switch {
		case bits >= (i+1)*8:
			mask = 0xff
		case bits <= i*8:
			mask = 0
		default:
			mask = byte(0xff << (8 - (bits - i*8)))
		}
		out[i] = nb[i]&mask | ob[i]&^mask
	}
	na, _ := netip.AddrFromSlice(out)
	return na
}

// Addr maps one address. IPv4-mapped IPv6 addresses are mapped by the IPv4 rules and stay
// IPv4-mapped. It reports whether a rule matched.
func (m *Map) Addr(a netip.Addr) (netip.Addr, bool) {
	if m == nil || !a.IsValid() {
		return a, false
	}
	if a.Is4In6() {
		n, ok := m.Addr(a.Unmap())
		if !ok {
			return a, false
		}
		return netip.AddrFrom16(n.As16()), true
	}
	plain := a.WithZone("")
	for _, r := range m.rules {
		if r.Old.Contains(plain) {
			return apply(r, plain).WithZone(a.Zone()), true
		}
	}
	return a, false
}

// Prefix maps a network (a route destination, a firewall match). A network is mapped only when
// it lies inside one rule's Old network; ok is false otherwise. covers is true when the network
// is wider than a rule it contains (for example 10.0.0.0/8 around 10.11.0.0/24): such a network
// is left alone and callers should warn about it.
func (m *Map) Prefix(p netip.Prefix) (np netip.Prefix, ok, covers bool) {
	if m == nil || !p.IsValid() {
		return p, false, false
	}
	a := p.Addr()
	bits := p.Bits()
	mapped := a.Is4In6()
	if mapped {
		if bits < 96 {
			return p, false, false
		}
		a = a.Unmap()
		bits -= 96
	}
	q := netip.PrefixFrom(a, bits)
	for _, r := range m.rules {
		if r.Old.Addr().Is4() != a.Is4() {
			continue
		}
		if bits >= r.Old.Bits() && r.Old.Contains(a) {
			n := netip.PrefixFrom(apply(r, a), bits)
			if mapped {
				n = netip.PrefixFrom(netip.AddrFrom16(n.Addr().As16()), bits+96)
			}
			return n, true, false
		}
	}
	for _, r := range m.rules {
		if r.Old.Addr().Is4() == a.Is4() && bits < r.Old.Bits() && q.Contains(r.Old.Addr()) {
			return p, false, true
		}
	}
	return p, false, false
}

// Ports maps TCP/UDP port numbers (OLD:NEW pairs).
type Ports map[uint16]uint16

// ParsePorts reads "OLD:NEW" items (each flag value may hold several, comma separated).
func ParsePorts(specs ...string) (Ports, error) {
	p := Ports{}
	for _, spec := range specs {
		for _, part := range strings.Split(spec, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			o, n, ok := strings.Cut(part, ":")
			if !ok {
				return nil, fmt.Errorf("%w %q: want OLD:NEW ports (for example 8080:9090)", ErrSyntax, part)
			}
			ov, err1 := strconv.ParseUint(strings.TrimSpace(o), 10, 16)
			nv, err2 := strconv.ParseUint(strings.TrimSpace(n), 10, 16)
			if err1 != nil || err2 != nil || ov == 0 || nv == 0 {
				return nil, fmt.Errorf("%w %q: ports must be numbers 1-65535", ErrSyntax, part)
			}
			if _, dup := p[uint16(ov)]; dup {
				return nil, fmt.Errorf("%w %q: port %d is mapped twice", ErrSyntax, part, ov)
			}
			p[uint16(ov)] = uint16(nv)
		}
	}
	return p, nil
}

// Port maps one port; it reports whether a rule matched.
func (p Ports) Port(v uint16) (uint16, bool) {
	n, ok := p[v]
	if !ok {
		return v, false
	}
	return n, true
}
