package pseudo

import (
	"bytes"
	"net"
	"net/netip"
)

// MAC maps a link-layer address: the I/G and U/L bits of the first byte are kept and the
// rest is keyed and injective. All-zero and broadcast addresses and lengths other than 6 are
// kept (other lengths are hashed byte-wise when 8 or 20 bytes long: EUI-64, InfiniBand).
func (m *Mapper) MAC(hw []byte) []byte {
	if len(hw) == 0 || bytes.Equal(hw, make([]byte, len(hw))) || bytes.Equal(hw, bytes.Repeat([]byte{0xff}, len(hw))) {
		return hw
	}
	if m.Kept(net.HardwareAddr(hw).String()) {
		return hw
	}
	t := m.Token(CatMAC, string(hw)) // same-length, injective over the token alphabet
	out := make([]byte, len(hw))
	h := m.mac([]byte("mac-bytes"), []byte(t))
	for i := range out {
		out[i] = h[i%len(h)]
	}
	out[0] = out[0]&^3 | hw[0]&3
	if bytes.Equal(out, hw) {
		out[len(out)-1] ^= 0x58 // keeps the I/G and U/L bits even for 1-byte addresses
	}
	m.mu.Lock()
	m.macs[net.HardwareAddr(hw).String()] = net.HardwareAddr(out).String()
	m.mu.Unlock()
	return out
}

// EUI64 returns the modified EUI-64 interface id of a 6-byte MAC.
func EUI64(mac []byte) [8]byte {
	return [8]byte{mac[0] ^ 2, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]}
}

// IP6WithMACs maps an IPv6 address whose interface id is the EUI-64 of one of macs: the
// prefix goes through IP and the interface id is recomputed from the mapped MAC. ok=false when
// no MAC matches (then use IP).
func (m *Mapper) IP6WithMACs(a netip.Addr, macs [][]byte) (netip.Addr, bool) {
	if !a.Is6() || a.Is4In6() {
		return a, false
	}
	b := a.As16()
	for _, mac := range macs {
		if len(mac) != 6 {
			continue
		}
		e := EUI64(mac)
		if !bytes.Equal(b[8:], e[:]) {
			continue
		}
		p := m.IP(a).As16()
		ne := EUI64(m.MAC(mac))
		copy(p[8:], ne[:])
		out := netip.AddrFrom16(p).WithZone(a.Zone())
		m.ips.mu.Lock()
		m.ips.fwd[a.String()] = out.String()
		m.ips.mu.Unlock()
		return out, true
	}
	return a, false
}
