package pseudo

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"net/netip"
	"sync"
)

// ipMapper is a Crypto-PAn style prefix-preserving permutation: output bit i is input bit i
// XOR a keyed PRF of the i input bits before it. Two addresses sharing a k-bit prefix map to
// addresses sharing exactly a k-bit prefix.
type ipMapper struct {
	blk cipher.Block
	pad [16]byte
	mu  sync.Mutex
	fwd map[string]string
}

func newIPMapper(key []byte) *ipMapper {
	k := sha256.Sum256(append([]byte("criukit-ip:"), key...))
	blk, _ := aes.NewCipher(k[:16])
	m := &ipMapper{blk: blk, fwd: map[string]string{}}
	blk.Encrypt(m.pad[:], k[16:32])
	return m
}

// permute applies the prefix-preserving permutation to the bits from keepBits on.
func (m *ipMapper) permute(in []byte, keepBits int) []byte {
	n := len(in) * 8
	out := append([]byte(nil), in...)
	var buf, enc [16]byte
	for i := keepBits; i < n; i++ {
		// buf = first i bits of in, then pad bits
		for j := 0; j < 16; j++ {
			buf[j] = m.pad[j]
		}
		full := i / 8
		copy(buf[:full], in[:full])
		if r := i % 8; r > 0 {
			mask := byte(0xff << (8 - r))
			buf[full] = in[full]&mask | m.pad[full]&^mask
		}
		// domain-separate the families by the total length
		buf[15] ^= byte(n)
		m.blk.Encrypt(enc[:], buf[:])
		if enc[0]&0x80 != 0 {
			out[i/8] ^= 0x80 >> (i % 8)
		}
	}
	return out
}

type ipClass struct {
	pfx  netip.Prefix
	keep int // leading bits kept (== pfx.Bits() for "map inside"; 128/32 for "keep whole")
}

var v4Classes = classes(
	"0.0.0.0/8:32", "127.0.0.0/8:32", "255.255.255.255/32:32", "224.0.0.0/4:32", "240.0.0.0/4:32",
	"10.0.0.0/8:8", "172.16.0.0/12:12", "192.168.0.0/16:16", "169.254.0.0/16:16", "100.64.0.0/10:10",
	"192.0.2.0/24:24", "198.51.100.0/24:24", "203.0.113.0/24:24", "198.18.0.0/15:15",
)
var v6Classes = classes(
	"::/128:128", "::1/128:128", "ff00::/8:128", "fe80::/10:64", "fc00::/7:7", "2001:db8::/32:32",
	"64:ff9b::/96:96", "::ffff:0:0/96:96",
)

func classes(s ...string) []ipClass {
	var out []ipClass
	for _, x := range s {
		i := len(x) - 1
		for x[i] != ':' {
			i--
		}
		p := netip.MustParsePrefix(x[:i])
		k := 0
		for _, c := range x[i+1:] {
			k = k*10 + int(c-'0')
		}
		out = append(out, ipClass{p, k})
	}
	return out
}

func (m *ipMapper) mapAddr(a netip.Addr) netip.Addr {
	if a.Is4In6() {
		return netip.AddrFrom16(m.mapAddr(a.Unmap()).As16())
	}
	cls := v6Classes
	if a.Is4() {
		cls = v4Classes
	}
	b := a.AsSlice()
	for _, c := range cls {
		if c.pfx.Contains(a) {
			if c.keep >= len(b)*8 {
				return a
			}
			out, _ := netip.AddrFromSlice(m.permute(b, c.keep))
			return out.WithZone(a.Zone())
		}
	}
	// public: full permutation, cycle-walk out of special ranges so the class is kept
	x := b
	for try := 0; try < 64; try++ {
		x = m.permute(x, 0)
		out, _ := netip.AddrFromSlice(x)
		special := false
		for _, c := range cls {
			if c.pfx.Contains(out) {
				special = true
				break
			}
		}
		if !special {
			return out.WithZone(a.Zone())
		}
	}
	return a
}

// IP maps an address prefix-preservingly. Loopback, unspecified, multicast and broadcast are
// kept; private, link-local, CGNAT, documentation and ULA addresses stay in their range;
// fe80::/10 keeps its /64 (MAC-derived interface ids are handled by IP6LinkLocal);
// IPv4-mapped IPv6 maps the embedded IPv4.
func (m *Mapper) IP(a netip.Addr) netip.Addr {
	if m.Kept(a.String()) {
		return a
	}
	out := m.ips.mapAddr(a)
	m.ips.mu.Lock()
	m.ips.fwd[a.String()] = out.String()
	m.ips.mu.Unlock()
	return out
}

// IPBytes maps a 4- or 16-byte address in network order; other lengths are returned unchanged.
func (m *Mapper) IPBytes(b []byte) []byte {
	a, ok := netip.AddrFromSlice(b)
	if !ok {
		return b
	}
	return m.IP(a).AsSlice()
}

// IPString maps a textual address; it returns s unchanged (ok=false) when s is not an address.
func (m *Mapper) IPString(s string) (string, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return s, false
	}
	return m.IP(a).String(), true
}
