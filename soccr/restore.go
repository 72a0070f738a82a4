package soccr

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// TCP header flags used by the fake peer packets.
const (
	flagFIN = 0x01
	flagACK = 0x10
)

// NewSocket creates a non-blocking TCP socket of the snapshot's family (as CRIU does before restore).
func NewSocket(s *Snapshot) (int, error) {
	fam := unix.AF_INET
	if s.Src.Addr().Is6() { // includes v4-mapped: an AF_INET6 socket talking IPv4
		fam = unix.AF_INET6
	}
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, &Error{Op: "restore", Step: "socket", State: s.State, Err: err}
	}
	return fd, nil
}

type restorer struct {
	fd     int
	fam    int
	s      *Snapshot
	d      Data // working copy, mutated like libsoccr mutates its data
	o      RestoreOptions
	faults Faults
}

func (r *restorer) logf(format string, args ...any) {
	if r.o.Log != nil {
		r.o.Log(format, args...)
	}
}

func (r *restorer) err(step string, err error) error {
	return &Error{Op: "restore", Step: step, State: r.s.State, Err: err}
}

func (r *restorer) setInt(name string, opt, v int) error {
	if err := unix.SetsockoptInt(r.fd, unix.SOL_TCP, opt, v); err != nil {
		return r.err(fmt.Sprintf("setsockopt(%s, %d)", name, v), err)
	}
	return nil
}

func (r *restorer) repair(on bool) error {
	if on {
		return r.setInt("TCP_REPAIR", tcpRepair, repairOn)
	}
	return r.setInt("TCP_REPAIR", tcpRepair, repairOff)
}

func (r *restorer) queue(q int) error {
	if err := unix.SetsockoptInt(r.fd, unix.SOL_TCP, tcpRepairQueue, q); err != nil {
		return r.err("setsockopt(TCP_REPAIR_QUEUE, "+queueNames[q]+")", err)
	}
	return nil
}

// Restore re-creates the snapshot in fd, a fresh unbound TCP socket (see NewSocket), in
// libsoccr_restore's order. The socket is left in repair mode: call Resume when the network
// may see it. s is not modified.
func Restore(fd int, s *Snapshot, o *RestoreOptions) error {
	if s == nil {
		return &Error{Op: "restore", Step: "check snapshot", Err: fmt.Errorf("%w: nil snapshot", ErrBadSnapshot)}
	}
	r := &restorer{fd: fd, s: s, d: s.Data}
	if o != nil {
		r.o = *o
		if o.Faults != nil {
			r.faults = *o.Faults
		}
	}
	if !s.State.Supported() {
		return r.err("check state", fmt.Errorf("%w: %v", ErrUnknownState, s.State))
	}
	if uint32(len(s.InQ)) != s.InqLen || uint32(len(s.OutQ)) != s.OutqLen || s.UnsqLen > s.OutqLen {
		return r.err("check queues", fmt.Errorf("%w: inq %d/%d bytes, outq %d/%d bytes, unsent %d",
			ErrBadSnapshot, len(s.InQ), s.InqLen, len(s.OutQ), s.OutqLen, s.UnsqLen))
	}
	if !s.Src.IsValid() || !s.Dst.IsValid() || s.Dst.Port() == 0 {
		return r.err("check addresses", fmt.Errorf("%w: src %v dst %v (a CLOSE socket has no peer name: take it from sock_diag or the image)",
			ErrBadSnapshot, s.Src, s.Dst))
	}
	m := s.State.mask()
	if m&(rcvqFirstFin|rcvqSecondFin|sndqFinAcked) != 0 && r.o.Injector == nil {
		return r.err("check injector", ErrNoInjector)
	}
	fam, err := socketFamily(fd)
	if err != nil {
		return r.err("getsockopt(SO_DOMAIN)", err)
	}
	r.fam = fam
	// Buffers first: the unsent tail is written with repair off and must fit (tcp.md E1b).
	if s.SndBuf > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, s.SndBuf/2); err != nil {
			return r.err("setsockopt(SO_SNDBUFFORCE)", err)
		}
	}
	if s.RcvBuf > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, s.RcvBuf/2); err != nil {
			return r.err("setsockopt(SO_RCVBUFFORCE)", err)
		}
	}
	if err := r.repair(true); err != nil {
		return err
	}
	if err := r.setData(); err != nil {
		return err
	}
	// The queues are written while mss_cache still has its pre-connect value (524 on IPv4 right
	// after a repair connect, larger on IPv6), so the restored send queue is cut into many more
	// skbs than the original and their truesize overhead no longer fits the dumped SO_SNDBUF:
	// the unsent tail (written with repair off, non-blocking) then fails with EAGAIN (tcplab
	// E14/v4 with 1 MiB buffers). Grow the buffers while the queues are written and set the
	// dumped values afterwards: a smaller sndbuf than queued only blocks later writes.
	if ti, err := GetInfo(fd); err == nil {
		r.logf("mss_cache before the queues: snd_mss=%d", ti.SndMss)
	}
	if s.SndBuf > 0 && s.OutqLen > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, max(s.SndBuf/2, 4*int(s.OutqLen))); err != nil {
			return r.err("setsockopt(SO_SNDBUFFORCE, queue restore)", err)
		}
	}
	if err := r.restoreQueues(); err != nil {
		return err
	}
	if s.SndBuf > 0 && s.OutqLen > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, s.SndBuf/2); err != nil {
			return r.err("setsockopt(SO_SNDBUFFORCE)", err)
		}
	}
	if s.HasWindow && !r.faults.NoWindow {
		w := window{r.d.SndWl1, r.d.SndWnd, r.d.MaxWindow, r.d.RcvWnd, r.d.RcvWup}
		if m&(rcvqFirstFin|rcvqSecondFin) != 0 {
			w.rcvWup--
			w.rcvWnd++
		}
		r.logf("set window %+v", w)
		if err := setsockoptBytes(fd, unix.SOL_TCP, tcpRepairWindow, w.bytes()); err != nil {
			return r.err("setsockopt(TCP_REPAIR_WINDOW)", err)
		}
	}
	// FINs, in libsoccr's order.
	if m&sndqFirstFin != 0 {
		if err := r.finInSndQueue(m&sndqFinAcked != 0); err != nil {
			return err
		}
	}
	if m&(rcvqFirstFin|rcvqSecondFin) != 0 {
		if err := r.sendFake(flagFIN|flagACK, r.faults.FinSeqDelta); err != nil {
			return err
		}
	}
	if m&sndqSecondFin != 0 {
		if err := r.finInSndQueue(m&sndqFinAcked != 0); err != nil {
			return err
		}
	}
	if m&rcvqFinAcked != 0 {
		r.d.InqSeq++
	}
	if m&sndqFinAcked != 0 {
		r.d.OutqSeq++
		if err := r.sendFake(flagACK, 0); err != nil {
			return err
		}
	}
	return nil
}

// setData is libsoccr_set_sk_data_noq: bind, sequence numbers, connect, options, timestamp.
func (r *restorer) setData() error {
	d := &r.d
	m := d.State.mask()
	if err := unix.Bind(r.fd, sockaddr(r.s.Src, r.fam)); err != nil {
		return r.err(fmt.Sprintf("bind(%v)", r.s.Src), err)
	}
	if m&(rcvqFirstFin|rcvqSecondFin) != 0 {
		d.InqSeq--
	}
	if m&(sndqFirstFin|sndqSecondFin) != 0 {
		d.OutqSeq--
	}
	if err := r.queue(recvQueue); err != nil {
		return err
	}
	r.logf("set RECV queue seq %d", d.InqSeq-d.InqLen)
	if err := r.setInt("TCP_QUEUE_SEQ RECV", tcpQueueSeq, int(int32(d.InqSeq-d.InqLen))); err != nil {
		return err
	}
	seq := d.OutqSeq - d.OutqLen
	if d.State == SynSent {
		seq--
	}
	if err := r.queue(sendQueue); err != nil {
		return err
	}
	r.logf("set SEND queue seq %d", seq)
	if err := r.setInt("TCP_QUEUE_SEQ SEND", tcpQueueSeq, int(int32(seq))); err != nil {
		return err
	}
	if d.State == SynSent {
		if err := r.repair(false); err != nil {
			return err
		}
	}
	// mss_cache is computed once, in connect(), from the clamp of that moment: 536 (IPv4) or
	// 1220 (IPv6), since TCP_REPAIR_OPTIONS comes later and does not resync it. libsoccr's
	// sockets then send 536-byte segments on IPv4 and, worse, 1220-byte segments on IPv6 even
	// when the peer announced a smaller MSS (tcplab X03/X04/X12). TCP_MAXSEG before connect
	// makes connect() use the dumped clamp (TCP_MAXSEG accepts at most MAX_TCP_WINDOW, 32767:
	// loopback's 65495 becomes 32767, still far better than 536).
	if d.State != SynSent && !r.o.LibsoccrMSS && d.MssClamp >= 88 {
		if err := r.setInt("TCP_MAXSEG", unix.TCP_MAXSEG, int(min(d.MssClamp, 32767))); err != nil {
			return err
		}
	}
	if err := unix.Connect(r.fd, sockaddr(r.s.Dst, r.fam)); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return r.err(fmt.Sprintf("connect(%v)", r.s.Dst), err)
	}
	if d.State == SynSent {
		if err := r.repair(true); err != nil {
			return err
		}
	}
	if d.State != SynSent {
		var opts []uint32 // pairs {code, val}
		if d.OptMask&OptSack != 0 {
			opts = append(opts, tcpoptSackPerm, 0)
		}
		if d.OptMask&OptWscale != 0 {
			opts = append(opts, tcpoptWindow, d.SndWscale+d.RcvWscale<<16)
		}
		if d.OptMask&OptTimestamps != 0 {
			opts = append(opts, tcpoptTimestamp, 0)
		}
		opts = append(opts, tcpoptMSS, d.MssClamp)
		b := make([]byte, 4*len(opts))
		for i, v := range opts {
			binary.NativeEndian.PutUint32(b[4*i:], v)
		}
		r.logf("set options %v", opts)
		if err := setsockoptBytes(r.fd, unix.SOL_TCP, tcpRepairOptions, b); err != nil {
			return r.err("setsockopt(TCP_REPAIR_OPTIONS)", err)
		}
	}
	if d.OptMask&OptTimestamps != 0 {
		ts := d.Timestamp + uint32(r.faults.TimestampDelta)
		r.logf("set timestamp %d", ts)
		if err := r.setInt("TCP_TIMESTAMP", tcpTimestamp, int(int32(ts))); err != nil {
			return err
		}
	}
	return nil
}

func (r *restorer) restoreQueues() error {
	d := &r.d
	if d.InqLen > 0 {
		if err := r.queue(recvQueue); err != nil {
			return err
		}
		r.logf("restore RECV queue %d bytes", d.InqLen)
		if err := r.sendChunks("RECV", r.s.InQ); err != nil {
			return err
		}
	}
	if d.OutqLen == 0 {
		return nil
	}
	ulen := int64(d.UnsqLen) + int64(r.faults.UnsentDelta)
	ulen = max(0, min(ulen, int64(d.OutqLen)))
	sent := d.OutqLen - uint32(ulen)
	if sent > 0 {
		if err := r.queue(sendQueue); err != nil {
			return err
		}
		r.logf("restore SEND queue %d sent bytes (repair on)", sent)
		if err := r.sendChunks("SEND", r.s.OutQ[:sent]); err != nil {
			return err
		}
	}
	if ulen > 0 {
		r.logf("restore SEND queue %d unsent bytes (repair off)", ulen)
		if err := r.repair(false); err != nil {
			return err
		}
		if err := r.sendChunks("SEND unsent", r.s.OutQ[sent:]); err != nil {
			return err
		}
		if err := r.repair(true); err != nil {
			return err
		}
	}
	return nil
}

// sendChunks is libsoccr's __send_queue: on failure halve the chunk, down to 1 KiB.
func (r *restorer) sendChunks(q string, buf []byte) error {
	maxChunk := len(buf)
	for len(buf) > 0 {
		chunk := min(len(buf), maxChunk)
		n, err := unix.Write(r.fd, buf[:chunk])
		if n <= 0 || err != nil {
			if maxChunk > 1024 {
				maxChunk >>= 1
				continue
			}
			if err == nil {
				err = unix.EIO
			}
			return r.err(fmt.Sprintf("send(%s queue, %d of %d bytes left)", q, chunk, len(buf)), err)
		}
		buf = buf[n:]
	}
	return nil
}

// finInSndQueue is restore_fin_in_snd_queue: shutdown(SHUT_WR), with the SEND queue selected
// when the FIN must count as sent.
func (r *restorer) finInSndQueue(acked bool) error {
	if acked {
		if err := r.queue(sendQueue); err != nil {
			return err
		}
	}
	r.logf("shutdown(SHUT_WR) acked=%v", acked)
	if err := unix.Shutdown(r.fd, unix.SHUT_WR); err != nil {
		return r.err("shutdown(SHUT_WR)", err)
	}
	if acked {
		return r.queue(noQueue)
	}
	return nil
}

// sendFake is libsoccr's send_fin: a segment from the peer with seq=inq_seq, ack=snd_una and
// window=rcv_wnd (truncated to 16 bits, as libnet does).
func (r *restorer) sendFake(flags uint8, seqDelta int32) error {
	d := &r.d
	seq := d.InqSeq + uint32(seqDelta)
	ack := d.OutqSeq - d.OutqLen
	win := uint16(d.RcvWnd) // libsoccr: rcv_wnd, truncated; A' reads it scaled by snd_wscale
	if r.o.PeerWindow {
		win = uint16(min(d.SndWnd>>d.SndWscale, 0xffff))
	}
	pkt := BuildSegment(r.s.Dst, r.s.Src, seq, ack, flags, win)
	r.logf("inject flags=%#x seq=%d ack=%d", flags, seq, ack)
	if err := r.o.Injector.Inject(pkt); err != nil {
		return r.err(fmt.Sprintf("inject fake peer segment (flags %#x)", flags), err)
	}
	return nil
}
