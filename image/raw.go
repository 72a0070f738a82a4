package image

import (
	"fmt"
)

// NetlinkMsg is one netlink message of a raw dump (a conntrack dump; the iproute2 dumps of a
// network namespace are parsed by package image/nldump).
type NetlinkMsg struct {
	Offset  int    // offset of the nlmsghdr in the file
	Type    uint16 // nlmsg_type (RTM_NEWADDR, RTM_NEWROUTE, IPCTNL_MSG_CT_NEW | NFNL_SUBSYS_CTNETLINK<<8, ...)
	Flags   uint16
	Seq     uint32
	Pid     uint32
	Payload []byte // nlmsg_len - 16 bytes after the header (ifaddrmsg/rtmsg/nfgenmsg + attributes)
}

// ParseNetlink splits a stream of netlink messages, each written with exactly nlmsg_len bytes (as
// CRIU writes conntrack dumps and iproute2 writes `ip save` output). base is added to the offsets.
func ParseNetlink(b []byte, base int) ([]NetlinkMsg, error) {
	var out []NetlinkMsg
	off := 0
	for off < len(b) {
		if len(b)-off < 16 {
			return out, fmt.Errorf("%w: netlink header cut at offset %d", ErrTruncated, base+off)
		}
		l := int(order.Uint32(b[off:]))
		if l < 16 || l > len(b)-off {
			return out, fmt.Errorf("%w: netlink message at offset %d says %d bytes, %d left", ErrTruncated, base+off, l, len(b)-off)
		}
		out = append(out, NetlinkMsg{
			Offset: base + off, Type: order.Uint16(b[off+4:]), Flags: order.Uint16(b[off+6:]),
			Seq: order.Uint32(b[off+8:]), Pid: order.Uint32(b[off+12:]), Payload: b[off+16 : off+l],
		})
		off += l
	}
	return out, nil
}
