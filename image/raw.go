package image

import (
	"fmt"
)

// iproute2 `ip ... save` dump magics (first u32 of ifaddr-, route-, route6-, rule- images).
const (
	IfaddrDumpMagic uint32 = 0x47361222
	RouteDumpMagic  uint32 = 0x45311224
	RuleDumpMagic   uint32 = 0x71706986
)

// NetlinkMsg is one netlink message of a raw dump (ip save output or a conntrack dump).
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

// ParseIPDump parses an ifaddr-/route-/route6-/rule- image: the iproute2 magic, then netlink messages.
// An empty file (nothing to save) gives no messages and no error.
func ParseIPDump(name string, raw []byte) (magic uint32, msgs []NetlinkMsg, err error) {
	d, err := Classify(name)
	if err != nil {
		return 0, nil, err
	}
	var want uint32
	switch d.Name {
	case "IFADDR":
		want = IfaddrDumpMagic
	case "ROUTE", "ROUTE6":
		want = RouteDumpMagic
	case "RULE":
		want = RuleDumpMagic
	default:
		return 0, nil, fmt.Errorf("%w: %s is not an ip dump image", ErrWrongMessage, name)
	}
	if len(raw) == 0 {
		return 0, nil, nil
	}
	if len(raw) < 4 {
		return 0, nil, &FormatError{File: name, Offset: 0, Entry: -1, Err: fmt.Errorf("%w: iproute2 magic cut", ErrTruncated)}
	}
	magic = order.Uint32(raw)
	if magic != want {
		return magic, nil, &FormatError{File: name, Offset: 0, Entry: -1, Err: fmt.Errorf("%w: iproute2 magic %#x, want %#x", ErrBadMagic, magic, want)}
	}
	msgs, err = ParseNetlink(raw[4:], 4)
	if err != nil {
		off := int64(4)
		if n := len(msgs); n > 0 {
			off = int64(msgs[n-1].Offset + 16 + len(msgs[n-1].Payload))
		}
		return magic, msgs, &FormatError{File: name, Offset: off, Entry: len(msgs), Err: err}
	}
	return magic, msgs, nil
}
