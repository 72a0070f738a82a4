package soccr

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// BuildSegment returns an IPv4 or IPv6 packet holding a TCP header without options from src to
// dst (v4-mapped addresses give IPv4, like libsoccr's ipv6_addr_mapped). Checksums are filled in.
func BuildSegment(src, dst netip.AddrPort, seq, ack uint32, flags uint8, win uint16) []byte {
	tcp := make([]byte, 20)
	be := binary.BigEndian
	be.PutUint16(tcp[0:], src.Port())
	be.PutUint16(tcp[2:], dst.Port())
	be.PutUint32(tcp[4:], seq)
	be.PutUint32(tcp[8:], ack)
	tcp[12] = 5 << 4
	tcp[13] = flags
	be.PutUint16(tcp[14:], win)
	s, d := src.Addr().Unmap().WithZone(""), dst.Addr().Unmap().WithZone("")
	var pseudo []byte
	var pkt []byte
	if s.Is4() {
		s4, d4 := s.As4(), d.As4()
		pseudo = append(append(append([]byte{}, s4[:]...), d4[:]...), 0, unix.IPPROTO_TCP, 0, 20)
		ip := make([]byte, 20)
		ip[0] = 0x45
		be.PutUint16(ip[2:], 40)
		be.PutUint16(ip[4:], 242) // libsoccr's IP ID
		ip[8] = 64
		ip[9] = unix.IPPROTO_TCP
		copy(ip[12:], s4[:])
		copy(ip[16:], d4[:])
		be.PutUint16(ip[10:], checksum(ip, 0))
		pkt = ip
	} else {
		s16, d16 := s.As16(), d.As16()
		pseudo = append(append(append([]byte{}, s16[:]...), d16[:]...), 0, 0, 0, 20, 0, 0, 0, unix.IPPROTO_TCP)
		ip := make([]byte, 40)
		ip[0] = 0x60
		be.PutUint16(ip[4:], 20)
		ip[6] = unix.IPPROTO_TCP
		ip[7] = 64
		copy(ip[8:], s16[:])
		copy(ip[24:], d16[:])
		pkt = ip
	}
	be.PutUint16(tcp[16:], checksum(tcp, sum(pseudo)))
	return append(pkt, tcp...)
}

func sum(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func checksum(b []byte, initial uint32) uint16 {
	s := initial + sum(b)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// Mark is the SO_MARK CRIU's network lock lets through (SOCCR_MARK).
const Mark = 0xC114

// RawInjector sends fake peer packets through a raw IP socket marked with Mark in the caller's
// network namespace, like libsoccr does with libnet.
type RawInjector struct{}

// Inject implements Injector.
func (RawInjector) Inject(pkt []byte) error {
	if len(pkt) < 20 {
		return fmt.Errorf("soccr: packet too short (%d bytes)", len(pkt))
	}
	fam, off := unix.AF_INET, 16
	if pkt[0]>>4 == 6 {
		fam, off = unix.AF_INET6, 24
	}
	fd, err := unix.Socket(fam, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return fmt.Errorf("soccr: raw socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, Mark); err != nil {
		return fmt.Errorf("soccr: SO_MARK: %w", err)
	}
	var sa unix.Sockaddr
	if fam == unix.AF_INET {
		a := &unix.SockaddrInet4{}
		copy(a.Addr[:], pkt[off:off+4])
		sa = a
	} else {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_HDRINCL, 1); err != nil {
			return fmt.Errorf("soccr: IPV6_HDRINCL: %w", err)
		}
		a := &unix.SockaddrInet6{}
		copy(a.Addr[:], pkt[off:off+16])
		sa = a
	}
	if err := unix.Sendto(fd, pkt, 0, sa); err != nil {
		return fmt.Errorf("soccr: raw sendto: %w", err)
	}
	return nil
}
