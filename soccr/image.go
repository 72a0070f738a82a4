package soccr

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	fown "github.com/checkpoint-restore/go-criu/v8/crit/images/fown"
	skinet "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-inet"
	skopts "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-opts"
	tcpstream "github.com/checkpoint-restore/go-criu/v8/crit/images/tcp-stream"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// ToTcpStream converts the snapshot to CRIU's tcp_stream_entry. The queue bytes that follow the
// entry in tcp-stream-<ino>.img are s.InQ then s.OutQ.
func (s *Snapshot) ToTcpStream() *tcpstream.TcpStreamEntry {
	e := &tcpstream.TcpStreamEntry{
		InqLen: proto.Uint32(s.InqLen), InqSeq: proto.Uint32(s.InqSeq),
		OutqLen: proto.Uint32(s.OutqLen), OutqSeq: proto.Uint32(s.OutqSeq),
		OptMask: proto.Uint32(s.OptMask), SndWscale: proto.Uint32(s.SndWscale),
		MssClamp: proto.Uint32(s.MssClamp), RcvWscale: proto.Uint32(s.RcvWscale),
		UnsqLen: proto.Uint32(s.UnsqLen),
	}
	if s.OptMask&OptTimestamps != 0 {
		e.Timestamp = proto.Uint32(s.Timestamp)
	}
	if s.HasWindow {
		e.SndWl1, e.SndWnd, e.MaxWindow = proto.Uint32(s.SndWl1), proto.Uint32(s.SndWnd), proto.Uint32(s.MaxWindow)
		e.RcvWnd, e.RcvWup = proto.Uint32(s.RcvWnd), proto.Uint32(s.RcvWup)
	}
	return e
}

// FromImages builds a snapshot from CRIU's entries: the tcp_stream_entry with the queue bytes
// that follow it (inq then outq, exactly InqLen+OutqLen bytes) and the socket's inet_sk_entry
// (state, addresses, ports, buffer sizes).
func FromImages(ts *tcpstream.TcpStreamEntry, queues []byte, ie *skinet.InetSkEntry) (*Snapshot, error) {
	if ts == nil || ie == nil {
		return nil, fmt.Errorf("%w: missing tcp_stream or inet_sk entry", ErrBadSnapshot)
	}
	if ie.GetProto() != unix.IPPROTO_TCP || ie.GetType() != unix.SOCK_STREAM {
		return nil, fmt.Errorf("%w: inet_sk entry id %d is not a TCP stream socket (type %d proto %d)",
			ErrBadSnapshot, ie.GetId(), ie.GetType(), ie.GetProto())
	}
	if ie.GetState() > 0xff {
		return nil, fmt.Errorf("%w: inet_sk entry id %d has state %d", ErrBadSnapshot, ie.GetId(), ie.GetState())
	}
	s := &Snapshot{Data: Data{
		State: State(ie.GetState()), InqLen: ts.GetInqLen(), InqSeq: ts.GetInqSeq(),
		OutqLen: ts.GetOutqLen(), OutqSeq: ts.GetOutqSeq(), UnsqLen: ts.GetUnsqLen(),
		OptMask: ts.GetOptMask(), MssClamp: ts.GetMssClamp(), SndWscale: ts.GetSndWscale(),
		RcvWscale: ts.GetRcvWscale(), Timestamp: ts.GetTimestamp(),
		HasWindow: ts.SndWl1 != nil && ts.SndWnd != nil && ts.MaxWindow != nil && ts.RcvWnd != nil && ts.RcvWup != nil,
		SndWl1:    ts.GetSndWl1(), SndWnd: ts.GetSndWnd(), MaxWindow: ts.GetMaxWindow(),
		RcvWnd: ts.GetRcvWnd(), RcvWup: ts.GetRcvWup(),
	}}
	if uint64(len(queues)) != uint64(s.InqLen)+uint64(s.OutqLen) {
		return nil, fmt.Errorf("%w: tcp_stream entry wants %d+%d queue bytes, image has %d",
			ErrBadSnapshot, s.InqLen, s.OutqLen, len(queues))
	}
	if s.UnsqLen > s.OutqLen {
		return nil, fmt.Errorf("%w: unsq_len %d > outq_len %d", ErrBadSnapshot, s.UnsqLen, s.OutqLen)
	}
	s.InQ = append([]byte(nil), queues[:s.InqLen]...)
	s.OutQ = append([]byte(nil), queues[s.InqLen:]...)
	var err error
	if s.Src, err = inetAddr(ie.GetFamily(), ie.SrcAddr, ie.GetSrcPort()); err != nil {
		return nil, fmt.Errorf("inet_sk entry id %d src: %w", ie.GetId(), err)
	}
	if s.Dst, err = inetAddr(ie.GetFamily(), ie.DstAddr, ie.GetDstPort()); err != nil {
		return nil, fmt.Errorf("inet_sk entry id %d dst: %w", ie.GetId(), err)
	}
	if o := ie.GetOpts(); o != nil {
		s.SndBuf, s.RcvBuf = int(o.GetSoSndbuf()), int(o.GetSoRcvbuf())
	}
	return s, nil
}

// inetAddr decodes CRIU's address words (the in-memory bytes of in_addr/in6_addr as native u32).
func inetAddr(family uint32, words []uint32, port uint32) (netip.AddrPort, error) {
	b := make([]byte, 4*len(words))
	for i, w := range words {
		binary.NativeEndian.PutUint32(b[4*i:], w)
	}
	var a netip.Addr
	switch {
	case family == unix.AF_INET && len(words) >= 1:
		a = netip.AddrFrom4([4]byte(b[:4]))
	case family == unix.AF_INET6 && len(words) == 4:
		a = netip.AddrFrom16([16]byte(b))
	default:
		return netip.AddrPort{}, fmt.Errorf("%w: family %d with %d address words", ErrBadSnapshot, family, len(words))
	}
	if port > 0xffff {
		return netip.AddrPort{}, fmt.Errorf("%w: port %d", ErrBadSnapshot, port)
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}

func addrWords(a netip.Addr, family uint32) []uint32 {
	var b []byte
	if family == unix.AF_INET {
		x := a.Unmap().As4()
		b = x[:]
	} else {
		x := a.As16()
		b = x[:]
	}
	w := make([]uint32, len(b)/4)
	for i := range w {
		w[i] = binary.NativeEndian.Uint32(b[4*i:])
	}
	return w
}

// Family is AF_INET or AF_INET6 for the snapshot's source address.
func (s *Snapshot) Family() uint32 {
	if s.Src.Addr().Is4() { // v4-mapped addresses belong to AF_INET6 sockets
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// FillInetSk writes the snapshot's state, family, addresses, ports and buffer sizes into an
// inet_sk_entry; other fields (id, ino, fown, options) are kept. A nil entry gets a new minimal
// one with id and ino.
func (s *Snapshot) FillInetSk(ie *skinet.InetSkEntry, id, ino uint32) *skinet.InetSkEntry {
	if ie == nil {
		ie = &skinet.InetSkEntry{
			Id: proto.Uint32(id), Ino: proto.Uint32(ino),
			Type: proto.Uint32(unix.SOCK_STREAM), Proto: proto.Uint32(unix.IPPROTO_TCP),
			Flags: proto.Uint32(unix.O_RDWR), Backlog: proto.Uint32(0),
			Fown: &fown.FownEntry{Uid: proto.Uint32(0), Euid: proto.Uint32(0), Signum: proto.Uint32(0),
				PidType: proto.Uint32(0), Pid: proto.Uint32(0)},
			Opts: &skopts.SkOptsEntry{SoSndbuf: proto.Uint32(0), SoRcvbuf: proto.Uint32(0),
				SoSndTmoSec: proto.Uint64(0), SoSndTmoUsec: proto.Uint64(0), SoRcvTmoSec: proto.Uint64(0), SoRcvTmoUsec: proto.Uint64(0)},
		}
	}
	fam := s.Family()
	ie.Family = proto.Uint32(fam)
	ie.State = proto.Uint32(uint32(s.State))
	ie.SrcAddr, ie.DstAddr = addrWords(s.Src.Addr(), fam), addrWords(s.Dst.Addr(), fam)
	ie.SrcPort, ie.DstPort = proto.Uint32(uint32(s.Src.Port())), proto.Uint32(uint32(s.Dst.Port()))
	if ie.Opts != nil && s.SndBuf > 0 {
		ie.Opts.SoSndbuf = proto.Uint32(uint32(s.SndBuf))
	}
	if ie.Opts != nil && s.RcvBuf > 0 {
		ie.Opts.SoRcvbuf = proto.Uint32(uint32(s.RcvBuf))
	}
	return ie
}
