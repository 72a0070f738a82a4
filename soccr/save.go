package soccr

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Pause turns repair mode on (libsoccr_pause). Traffic to the socket must already be blocked.
func Pause(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, tcpRepair, repairOn); err != nil {
		return &Error{Op: "pause", Step: "setsockopt(TCP_REPAIR, ON)", Err: err}
	}
	return nil
}

// Resume turns repair mode off (libsoccr_resume). With probe=false it uses TCP_REPAIR_OFF_NO_WP
// so that no window probe is sent.
func Resume(fd int, probe bool) error {
	v, name := repairOff, "OFF"
	if !probe {
		v, name = repairOffNoWP, "OFF_NO_WP"
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, tcpRepair, v); err != nil {
		return &Error{Op: "resume", Step: "setsockopt(TCP_REPAIR, " + name + ")", Err: err}
	}
	return nil
}

// Info is the head of struct tcp_info that soccr and the lab use.
type Info struct {
	State     State
	Options   uint8
	SndWscale uint8
	RcvWscale uint8
	Rto       uint32 // µs
	SndMss    uint32
	RcvMss    uint32
	Unacked   uint32
	Retrans   uint32
}

// GetInfo reads TCP_INFO.
func GetInfo(fd int) (Info, error) {
	b := make([]byte, 104)
	n, err := getsockoptBytes(fd, unix.SOL_TCP, unix.TCP_INFO, b)
	if err != nil {
		return Info{}, err
	}
	if n < 32 {
		return Info{}, fmt.Errorf("soccr: short TCP_INFO (%d bytes)", n)
	}
	ne := binary.NativeEndian
	return Info{
		State: State(b[0]), Options: b[5], SndWscale: b[6] & 0xf, RcvWscale: b[6] >> 4,
		Rto: ne.Uint32(b[8:]), SndMss: ne.Uint32(b[16:]), RcvMss: ne.Uint32(b[20:]),
		Unacked: ne.Uint32(b[24:]), Retrans: ne.Uint32(b[32:]),
	}, nil
}

// Save reads the state of a socket in repair mode (libsoccr_save, then the addresses and buffer
// sizes CRIU adds). The socket stays in repair mode: close it (a silent kill) or Resume it.
func Save(fd int) (*Snapshot, error) {
	s := &Snapshot{}
	fail := func(step string, err error) (*Snapshot, error) {
		return nil, &Error{Op: "save", Step: step, State: s.State, Err: err}
	}
	// refresh_sk
	ti, err := GetInfo(fd)
	if err != nil {
		return fail("getsockopt(TCP_INFO)", err)
	}
	s.State = ti.State
	if !s.State.Supported() {
		return fail("check state", fmt.Errorf("%w: %v", ErrUnknownState, s.State))
	}
	outq, err := ioctlInt(fd, siocOutq)
	if err != nil {
		return fail("ioctl(SIOCOUTQ)", err)
	}
	unsq, err := ioctlInt(fd, siocOutqNSD)
	if err != nil {
		return fail("ioctl(SIOCOUTQNSD)", err)
	}
	s.OutqLen, s.UnsqLen = uint32(outq), uint32(unsq)
	if s.State == Close {
		// A reset connection may keep data the user cannot read; libsoccr ignores it.
		s.OutqLen, s.UnsqLen = 0, 0
	}
	if s.State.mask()&(sndqFirstFin|sndqSecondFin) != 0 { // our FIN is not data
		if s.OutqLen > 0 {
			s.OutqLen--
		}
		if s.UnsqLen > 0 {
			s.UnsqLen--
		}
	}
	inq, err := ioctlInt(fd, siocInq)
	if err != nil {
		return fail("ioctl(SIOCINQ)", err)
	}
	s.InqLen = uint32(inq)

	// get_stream_options
	mss, err := unix.GetsockoptInt(fd, unix.SOL_TCP, unix.TCP_MAXSEG)
	if err != nil {
		return fail("getsockopt(TCP_MAXSEG)", err)
	}
	s.MssClamp = uint32(mss)
	s.OptMask = uint32(ti.Options)
	if ti.Options&OptWscale != 0 {
		s.SndWscale, s.RcvWscale = uint32(ti.SndWscale), uint32(ti.RcvWscale)
	}
	if ti.Options&OptTimestamps != 0 {
		ts, err := unix.GetsockoptInt(fd, unix.SOL_TCP, tcpTimestamp)
		if err != nil {
			return fail("getsockopt(TCP_TIMESTAMP)", err)
		}
		s.Timestamp = uint32(ts)
	}

	// get_window
	wb := make([]byte, 20)
	if _, err := getsockoptBytes(fd, unix.SOL_TCP, tcpRepairWindow, wb); err != nil {
		if !errors.Is(err, unix.ENOPROTOOPT) { // kernels < 4.8 have no TCP_REPAIR_WINDOW
			return fail("getsockopt(TCP_REPAIR_WINDOW)", err)
		}
	} else {
		ne := binary.NativeEndian
		s.HasWindow = true
		s.SndWl1, s.SndWnd, s.MaxWindow = ne.Uint32(wb[0:]), ne.Uint32(wb[4:]), ne.Uint32(wb[8:])
		s.RcvWnd, s.RcvWup = ne.Uint32(wb[12:]), ne.Uint32(wb[16:])
	}

	// get_queue(RECV), get_queue(SEND)
	if s.InqSeq, s.InQ, err = getQueue(fd, recvQueue, s.InqLen); err != nil {
		return fail(err.(stepErr).step, err.(stepErr).err)
	}
	if s.OutqSeq, s.OutQ, err = getQueue(fd, sendQueue, s.OutqLen); err != nil {
		return fail(err.(stepErr).step, err.(stepErr).err)
	}

	// Addresses and buffers (CRIU takes them from sock_diag and sk_opts).
	if sa, err := unix.Getsockname(fd); err == nil {
		s.Src = AddrPort(sa)
	} else {
		return fail("getsockname", err)
	}
	// SYN_SENT and CLOSE sockets have no peer name: Dst stays invalid and the caller fills it
	// in (CRIU takes both addresses from sock_diag).
	if sa, err := unix.Getpeername(fd); err == nil {
		s.Dst = AddrPort(sa)
	}
	if s.SndBuf, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF); err != nil {
		return fail("getsockopt(SO_SNDBUF)", err)
	}
	if s.RcvBuf, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF); err != nil {
		return fail("getsockopt(SO_RCVBUF)", err)
	}
	return s, nil
}

type stepErr struct {
	step string
	err  error
}

func (e stepErr) Error() string { return e.step + ": " + e.err.Error() }

func getQueue(fd, queue int, length uint32) (uint32, []byte, error) {
	q := queueNames[queue]
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, tcpRepairQueue, queue); err != nil {
		return 0, nil, stepErr{"setsockopt(TCP_REPAIR_QUEUE, " + q + ")", err}
	}
	seq, err := unix.GetsockoptInt(fd, unix.SOL_TCP, tcpQueueSeq)
	if err != nil {
		return 0, nil, stepErr{"getsockopt(TCP_QUEUE_SEQ, " + q + ")", err}
	}
	if length == 0 {
		return uint32(seq), nil, nil
	}
	buf := make([]byte, int(length)+1) // one more byte proves there are exactly length bytes
	n, _, err := unix.Recvfrom(fd, buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	if err != nil {
		return 0, nil, stepErr{"recv(MSG_PEEK, " + q + ")", err}
	}
	if n != int(length) {
		return 0, nil, stepErr{"recv(MSG_PEEK, " + q + ")", fmt.Errorf("%w: got %d bytes, want %d", ErrQueueChanged, n, length)}
	}
	return uint32(seq), buf[:n], nil
}
