package tcplab

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Dir is the direction of a packet.
type Dir int

// Directions.
const (
	AtoB Dir = iota
	BtoA
)

func (d Dir) String() string {
	if d == AtoB {
		return "A>B"
	}
	return "B>A"
}

// TCP flags.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
	URG = 0x20
)

// Pkt is one captured (or injected) TCP packet.
type Pkt struct {
	N       int // capture index within the case (1-based)
	Dir     Dir
	Raw     []byte
	Time    time.Time
	Src     netip.AddrPort
	Dst     netip.AddrPort
	Seq     uint32
	Ack     uint32
	Flags   uint8
	Win     uint16
	Len     int // payload bytes
	Payload []byte
	// Options
	MSS       int // 0 = absent
	Wscale    int // -1 = absent
	SackOK    bool
	HasTS     bool
	TSval     uint32
	TSecr     uint32
	Sack      [][2]uint32
	tcpOffset int
}

// SeqEnd is the sequence number after this segment (SYN and FIN count one).
func (p *Pkt) SeqEnd() uint32 {
	e := p.Seq + uint32(p.Len)
	if p.Flags&SYN != 0 {
		e++
	}
	if p.Flags&FIN != 0 {
		e++
	}
	return e
}

// Has reports whether all flags in f are set.
func (p *Pkt) Has(f uint8) bool { return p.Flags&f == f }

// IsData reports whether the packet carries payload.
func (p *Pkt) IsData() bool { return p.Len > 0 }

func flagString(f uint8) string {
	var b strings.Builder
	for _, x := range []struct {
		f uint8
		c byte
	}{{SYN, 'S'}, {FIN, 'F'}, {RST, 'R'}, {PSH, 'P'}, {URG, 'U'}, {ACK, '.'}} {
		if f&x.f != 0 {
			b.WriteByte(x.c)
		}
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// parsePkt parses an IPv4/IPv6 TCP packet; ok=false for anything else (ICMP, MLD, ...).
func parsePkt(raw []byte) (*Pkt, bool) {
	if len(raw) < 20 {
		return nil, false
	}
	p := &Pkt{Raw: raw, Wscale: -1}
	var off int
	switch raw[0] >> 4 {
	case 4:
		ihl := int(raw[0]&0xf) * 4
		if ihl < 20 || len(raw) < ihl+20 || raw[9] != 6 {
			return nil, false
		}
		tot := int(binary.BigEndian.Uint16(raw[2:]))
		if tot > len(raw) || tot < ihl+20 {
			return nil, false
		}
		raw = raw[:tot]
		p.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(raw[12:16])), 0)
		p.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(raw[16:20])), 0)
		off = ihl
	case 6:
		if len(raw) < 60 || raw[6] != 6 {
			return nil, false
		}
		pl := int(binary.BigEndian.Uint16(raw[4:]))
		if 40+pl > len(raw) || pl < 20 {
			return nil, false
		}
		raw = raw[:40+pl]
		p.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(raw[8:24])), 0)
		p.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(raw[24:40])), 0)
		off = 40
	default:
		return nil, false
	}
	t := raw[off:]
	be := binary.BigEndian
	doff := int(t[12]>>4) * 4
	if doff < 20 || doff > len(t) {
		return nil, false
	}
	p.Src = netip.AddrPortFrom(p.Src.Addr(), be.Uint16(t[0:]))
	p.Dst = netip.AddrPortFrom(p.Dst.Addr(), be.Uint16(t[2:]))
	p.Seq, p.Ack = be.Uint32(t[4:]), be.Uint32(t[8:])
	p.Flags, p.Win = t[13], be.Uint16(t[14:])
	p.Payload = t[doff:]
	p.Len = len(p.Payload)
	p.tcpOffset = off
	o := t[20:doff]
	for len(o) > 0 {
		k := o[0]
		if k == 0 {
			break
		}
		if k == 1 {
			o = o[1:]
			continue
		}
		if len(o) < 2 || int(o[1]) < 2 || int(o[1]) > len(o) {
			break
		}
		v := o[2:o[1]]
		switch {
		case k == 2 && len(v) == 2:
			p.MSS = int(be.Uint16(v))
		case k == 3 && len(v) == 1:
			p.Wscale = int(v[0])
		case k == 4:
			p.SackOK = true
		case k == 5:
			for i := 0; i+8 <= len(v); i += 8 {
				p.Sack = append(p.Sack, [2]uint32{be.Uint32(v[i:]), be.Uint32(v[i+4:])})
			}
		case k == 8 && len(v) == 8:
			p.HasTS, p.TSval, p.TSecr = true, be.Uint32(v), be.Uint32(v[4:])
		}
		o = o[o[1]:]
	}
	return p, true
}

// fixChecksum recomputes the TCP checksum after a modification.
func (p *Pkt) fixChecksum() {
	t := p.Raw[p.tcpOffset:]
	t[16], t[17] = 0, 0
	var ps []byte
	if p.Src.Addr().Is4() {
		s, d := p.Src.Addr().As4(), p.Dst.Addr().As4()
		ps = append(append(ps, s[:]...), d[:]...)
		ps = append(ps, 0, 6, byte(len(t)>>8), byte(len(t)))
	} else {
		s, d := p.Src.Addr().As16(), p.Dst.Addr().As16()
		ps = append(append(ps, s[:]...), d[:]...)
		ps = append(ps, 0, 0, byte(len(t)>>8), byte(len(t)), 0, 0, 0, 6)
	}
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(ps)
	add(t)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(t[16:], ^uint16(sum))
}

// SetSeq rewrites the sequence number (and the checksum).
func (p *Pkt) SetSeq(seq uint32) {
	binary.BigEndian.PutUint32(p.Raw[p.tcpOffset+4:], seq)
	p.Seq = seq
	p.fixChecksum()
}

// clone copies the packet (for duplication).
func (p *Pkt) clone() *Pkt {
	q, _ := parsePkt(append([]byte(nil), p.Raw...))
	q.Dir, q.Time = p.Dir, p.Time
	return q
}

// canon renders the packet with sequence numbers relative to each side's ISN and TS masked.
// With maskPSH the PSH flag (a segmentation artefact) is left out.
func (p *Pkt) canon(isn [2]uint32, maskPSH bool) string {
	me, peer := int(p.Dir), 1-int(p.Dir)
	var b strings.Builder
	f := p.Flags
	if maskPSH {
		f &^= PSH
	}
	fmt.Fprintf(&b, "%s [%s] seq=%d", p.Dir, flagString(f), p.Seq-isn[me])
	if p.Flags&ACK != 0 {
		fmt.Fprintf(&b, " ack=%d", p.Ack-isn[peer])
	}
	fmt.Fprintf(&b, " len=%d win=%d", p.Len, p.Win)
	var opts []string
	if p.MSS > 0 {
		opts = append(opts, fmt.Sprintf("mss %d", p.MSS))
	}
	if p.SackOK {
		opts = append(opts, "sackOK")
	}
	if p.HasTS {
		if p.TSecr == 0 {
			opts = append(opts, "TS ecr0")
		} else {
			opts = append(opts, "TS")
		}
	}
	if p.Wscale >= 0 {
		opts = append(opts, fmt.Sprintf("wscale %d", p.Wscale))
	}
	for _, s := range p.Sack {
		opts = append(opts, fmt.Sprintf("sack %d:%d", s[0]-isn[peer], s[1]-isn[peer]))
	}
	if len(opts) > 0 {
		fmt.Fprintf(&b, " <%s>", strings.Join(opts, ","))
	}
	return b.String()
}
