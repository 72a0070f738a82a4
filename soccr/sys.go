package soccr

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Socket options and constants of the TCP repair API (uapi linux/tcp.h).
const (
	tcpRepair        = 19
	tcpRepairQueue   = 20
	tcpQueueSeq      = 21
	tcpRepairOptions = 22
	tcpTimestamp     = 24
	tcpRepairWindow  = 29

	repairOn      = 1
	repairOff     = 0
	repairOffNoWP = -1

	noQueue   = 0
	recvQueue = 1
	sendQueue = 2

	tcpoptMSS       = 2
	tcpoptWindow    = 3
	tcpoptSackPerm  = 4
	tcpoptTimestamp = 8

	siocInq     = 0x541B
	siocOutq    = 0x5411
	siocOutqNSD = 0x894B
)

var queueNames = [...]string{"NO_QUEUE", "RECV", "SEND"}

func getsockoptBytes(fd, level, opt int, buf []byte) (int, error) {
	l := uint32(len(buf))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, e
	}
	return int(l), nil
}

func setsockoptBytes(fd, level, opt int, buf []byte) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0)
	if e != 0 {
		return e
	}
	return nil
}

func ioctlInt(fd int, req uint) (int, error) { return unix.IoctlGetInt(fd, req) }

// sockaddr converts an address to a unix.Sockaddr of the socket's family (v4 addresses of
// AF_INET6 sockets become v4-mapped).
func sockaddr(ap netip.AddrPort, family int) unix.Sockaddr {
	if family == unix.AF_INET6 {
		sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
		if z := ap.Addr().Zone(); z != "" { // link-local scope: an interface index
			if idx, err := strconv.Atoi(z); err == nil {
				sa.ZoneId = uint32(idx)
			} else if ifi, err := net.InterfaceByName(z); err == nil {
				sa.ZoneId = uint32(ifi.Index)
			}
		}
		return sa
	}
	return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
}

// AddrPort converts a socket address (v4, or v6 with its zone) to a netip.AddrPort; other kinds give
// the zero value.
func AddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		ip := netip.AddrFrom16(a.Addr)
		if a.ZoneId != 0 {
			ip = ip.WithZone(strconv.Itoa(int(a.ZoneId)))
		}
		return netip.AddrPortFrom(ip, uint16(a.Port))
	}
	return netip.AddrPort{}
}

func socketFamily(fd int) (int, error) {
	return unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
}

// window is struct tcp_repair_window.
type window struct{ sndWl1, sndWnd, maxWindow, rcvWnd, rcvWup uint32 }

func (w window) bytes() []byte {
	b := make([]byte, 20)
	for i, v := range []uint32{w.sndWl1, w.sndWnd, w.maxWindow, w.rcvWnd, w.rcvWup} {
		binary.NativeEndian.PutUint32(b[4*i:], v)
	}
	return b
}
