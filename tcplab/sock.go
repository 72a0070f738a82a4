package tcplab

import (
	"errors"
	"fmt"
	"github.com/criukit/criukit/internal/nsrun"
	"net/netip"

	"github.com/criukit/criukit/soccr"
	"golang.org/x/sys/unix"
)

// Ports used inside the lab's private namespaces.
const (
	PortA = 6000
	PortB = 5000
)

// Sock is one endpoint (A or B) of the connection. A restore replaces its fd, not its identity:
// the streams it wrote and read continue.
type Sock struct {
	l      *Lab
	Side   int
	fd     int
	out    *stream
	in     *stream
	Closed bool
}

func (s *Sock) close() {
	if s.fd >= 0 {
		unix.Close(s.fd)
		s.fd = -1
	}
}

// FD returns the socket's file descriptor (-1 after Close or Checkpoint).
func (s *Sock) FD() int { return s.fd }

func (s *Sock) name() string { return sideName[s.Side] }

func (l *Lab) newSock(side, fd int) *Sock {
	s := &Sock{l: l, Side: side, fd: fd, out: l.streams[side], in: l.streams[1-side]}
	l.socks = append(l.socks, s)
	return s
}

func (l *Lab) sockaddr(s, port int) unix.Sockaddr {
	a := l.sides[s].addr
	if a.Is6() {
		return &unix.SockaddrInet6{Port: port, Addr: a.As16()}
	}
	return &unix.SockaddrInet4{Port: port, Addr: a.As4()}
}

func (l *Lab) family() int {
	if l.o.Family == IPv6 {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

// socket creates a non-blocking TCP socket in side s with the lab's buffers and TCP_NODELAY.
func (l *Lab) socket(s int) (int, error) {
	fd := -1
	err := nsrun.Do(l.sides[s].ns, func() error {
		var err error
		fd, err = unix.Socket(l.family(), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return -1, fmt.Errorf("socket in %s: %w", sideName[s], err)
	}
	opts := [][3]int{{unix.SOL_TCP, unix.TCP_NODELAY, 1}, {unix.SOL_SOCKET, unix.SO_REUSEADDR, 1}}
	if !l.o.AutoBuf {
		opts = append(opts, [3]int{unix.SOL_SOCKET, unix.SO_SNDBUF, l.o.bufOf(s)}, [3]int{unix.SOL_SOCKET, unix.SO_RCVBUF, l.o.bufOf(s)})
	}
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, o[0], o[1], o[2]); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("setsockopt %v: %w", o, err)
		}
	}
	if m := l.o.SideMSS[s]; m > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_MAXSEG, m); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("setsockopt TCP_MAXSEG %d: %w", m, err)
		}
	}
	return fd, nil
}

// Handshake connects A (port PortA) to a listener on B (PortB) through the switch in lock-step
// and returns both established sockets. The listener is closed.
func (l *Lab) Handshake() (*Sock, *Sock, error) {
	lfd, err := l.socket(B)
	if err != nil {
		return nil, nil, err
	}
	defer unix.Close(lfd)
	if err := unix.Bind(lfd, l.sockaddr(B, PortB)); err != nil {
		return nil, nil, fmt.Errorf("bind B: %w", err)
	}
	if err := unix.Listen(lfd, 8); err != nil {
		return nil, nil, fmt.Errorf("listen B: %w", err)
	}
	a, err := l.Connect()
	if err != nil {
		return nil, nil, err
	}
	l.Settle()
	nfd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		return nil, nil, fmt.Errorf("accept on B: %w (handshake did not complete)", err)
	}
	l.Event("handshake done")
	return a, l.newSock(B, nfd), nil
}

// Connect starts a non-blocking connect from A to B:PortB (the SYN is captured, not settled).
func (l *Lab) Connect() (*Sock, error) {
	fd, err := l.socket(A)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, l.sockaddr(A, PortA)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind A: %w", err)
	}
	if err := unix.Connect(fd, l.sockaddr(B, PortB)); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		unix.Close(fd)
		return nil, fmt.Errorf("connect A: %w", err)
	}
	return l.newSock(A, fd), nil
}

// Listen opens a listener on B:PortB (the caller closes the returned fd).
func (l *Lab) Listen() (int, error) {
	lfd, err := l.socket(B)
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(lfd, l.sockaddr(B, PortB)); err != nil {
		unix.Close(lfd)
		return -1, err
	}
	if err := unix.Listen(lfd, 8); err != nil {
		unix.Close(lfd)
		return -1, err
	}
	return lfd, nil
}

// Template describes a connection built by the repair constructor (no handshake).
type Template struct {
	ISNA, ISNB uint32
	MSS        uint32 // default 1460
	Wscale     uint32 // both directions (default 7)
	Sack       bool
	Timestamps bool
	Window     uint32 // rcv_wnd/snd_wnd in bytes (default 65535)
}

// Construct builds both ends with TCP_REPAIR from t (like CRIU's soccr/test/tcp-constructor.c).
func (l *Lab) Construct(t Template) (*Sock, *Sock, error) {
	if t.MSS == 0 {
		t.MSS = 1460
	}
	if t.Window == 0 {
		t.Window = 65535
	}
	if t.Wscale == 0 && !l.o.NoWscale {
		t.Wscale = 7
	}
	mk := func(me int, isnMe, isnPeer uint32) *soccr.Snapshot {
		s := &soccr.Snapshot{Data: soccr.Data{State: soccr.Established,
			InqSeq: isnPeer + 1, OutqSeq: isnMe + 1, MssClamp: t.MSS,
			HasWindow: true, SndWl1: isnPeer + 1, SndWnd: t.Window, MaxWindow: t.Window, RcvWnd: t.Window, RcvWup: isnPeer + 1}}
		if !l.o.NoWscale {
			s.OptMask |= soccr.OptWscale
			s.SndWscale, s.RcvWscale = t.Wscale, t.Wscale
		}
		if t.Sack {
			s.OptMask |= soccr.OptSack
		}
		if t.Timestamps {
			s.OptMask |= soccr.OptTimestamps
			s.Timestamp = 1000
		}
		s.Src = netip.AddrPortFrom(l.sides[me].addr, [2]uint16{PortA, PortB}[me])
		s.Dst = netip.AddrPortFrom(l.sides[1-me].addr, [2]uint16{PortA, PortB}[1-me])
		return s
	}
	ws := int(t.Wscale)
	l.SetISN(A, t.ISNA, ws)
	l.SetISN(B, t.ISNB, ws)
	for i := range l.wire {
		l.wire[i].syn, l.wire[i].ts, l.wire[i].sack, l.wire[i].mss = true, t.Timestamps, t.Sack, int(t.MSS)
	}
	var socks [2]*Sock
	for me, isn := range [2][2]uint32{{t.ISNA, t.ISNB}, {t.ISNB, t.ISNA}} {
		s, err := l.restoreInto(me, mk(me, isn[0], isn[1]), nil, false, false)
		if err != nil {
			return nil, nil, err
		}
		socks[me] = s
	}
	for _, s := range socks { // both exist now: the window probes cross harmlessly
		if err := soccr.Resume(s.fd, true); err != nil {
			return nil, nil, err
		}
	}
	l.Event("constructed isnA=%d isnB=%d mss=%d wscale=%d sack=%v ts=%v", t.ISNA, t.ISNB, t.MSS, t.Wscale, t.Sack, t.Timestamps)
	l.Settle()
	return socks[A], socks[B], nil
}

// Checkpoint dumps s like CRIU: repair on, save, close in repair mode (no packet leaves).
func (l *Lab) Checkpoint(s *Sock) (*soccr.Snapshot, error) {
	l.Settle()
	if err := soccr.Pause(s.fd); err != nil {
		return nil, err
	}
	snap, err := l.save(s.fd)
	if err != nil {
		return nil, err
	}
	s.close()
	if !snap.Dst.IsValid() { // CLOSE sockets have no peer name; CRIU takes it from sock_diag
		snap.Dst = netip.AddrPortFrom(l.sides[1-s.Side].addr, [2]uint16{PortA, PortB}[1-s.Side])
	}
	l.Event("checkpoint %s: %s", s.name(), snapSummary(l, snap))
	l.Settle()
	return snap, nil
}

// Pause+Save without closing (libsoccr_resume variant, E16).
func (l *Lab) Save(s *Sock) (*soccr.Snapshot, error) {
	if err := soccr.Pause(s.fd); err != nil {
		return nil, err
	}
	return l.save(s.fd)
}

// save runs the lab's engine on fd (in repair mode).
func (l *Lab) save(fd int) (*soccr.Snapshot, error) {
	if l.o.Engine == EngineLibsoccr || l.o.Engine == EngineLibsoccrSave {
		return libsoccrSave(fd)
	}
	return soccr.Save(fd)
}

func snapSummary(l *Lab, s *soccr.Snapshot) string {
	me := 0
	if s.Src.Addr().Unmap() == l.sides[B].addr {
		me = 1
	}
	rel := func(seq uint32, side int) string {
		if !l.isnSet[side] || (s.State == soccr.SynSent && side != me) {
			return "?"
		}
		return fmt.Sprint(seq - l.isn[side])
	}
	return fmt.Sprintf("%v inq=%d@%s outq=%d@%s unsq=%d opt=%#x mss=%d ws=%d/%d win=%v",
		s.State, s.InqLen, rel(s.InqSeq, 1-me), s.OutqLen, rel(s.OutqSeq, me), s.UnsqLen, s.OptMask,
		s.MssClamp, s.SndWscale, s.RcvWscale, s.HasWindow)
}

// Restore re-creates the snapshot as the new socket of s (side s.Side) with soccr, using the
// switch as the injector and dropping what the socket emits while in repair (the network lock);
// then it checks the re-dump against the snapshot and turns repair off (window probe).
func (l *Lab) Restore(s *Sock, snap *soccr.Snapshot) error {
	ns, err := l.restoreInto(s.Side, snap, s, true, true)
	if err != nil {
		return err
	}
	_ = ns
	return nil
}

func (l *Lab) restoreInto(side int, snap *soccr.Snapshot, into *Sock, check, resume bool) (*Sock, error) {
	fd := -1
	err := nsrun.Do(l.sides[side].ns, func() error {
		var err error
		fd, err = soccr.NewSocket(snap)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_NODELAY, 1); err != nil {
		unix.Close(fd)
		return nil, err
	}
	var s *Sock
	if into != nil {
		into.close()
		into.fd = fd
		s = into
	} else {
		s = l.newSock(side, fd)
	}
	if snap.SndBuf == 0 && !l.o.AutoBuf {
		snap.SndBuf, snap.RcvBuf = 2*l.o.bufOf(side), 2*l.o.bufOf(side)
	}
	if into != nil {
		l.restoring(side)
	}
	l.lock[side] = true
	if l.o.Engine == EngineLibsoccr {
		err = l.libsoccrRestore(fd, side, snap)
	} else {
		err = soccr.Restore(fd, snap, &soccr.RestoreOptions{Injector: injector{l, side}, Faults: l.Faults, PeerWindow: l.o.PeerWindow, LibsoccrMSS: l.o.LibsoccrMSS,
			Log: func(f string, a ...any) {
				l.Note("soccr: "+f, a...)
				if l.duringRestore != nil {
					l.duringRestore(fmt.Sprintf(f, a...))
				}
			}})
	}
	l.Settle()
	if err != nil {
		l.lock[side] = false
		return nil, err
	}
	if check {
		again, err := soccr.Save(fd)
		if err == nil && !again.Dst.IsValid() {
			again.Dst = snap.Dst
		}
		if err == nil && snap.State.Supported() && injectsFin(snap.State) && !l.o.PeerWindow &&
			again.SndWnd != snap.SndWnd && again.SndWnd == uint32(uint16(snap.RcvWnd))<<snap.SndWscale {
			// libsoccr's fake FIN advertises rcv_wnd: known, reported by case H15.
			l.Note("snd_wnd %d -> %d from the fake FIN's window (libsoccr quirk)", snap.SndWnd, again.SndWnd)
			again.SndWnd, again.MaxWindow = snap.SndWnd, max(snap.MaxWindow, again.MaxWindow)
			if again.MaxWindow != snap.MaxWindow {
				again.MaxWindow = snap.MaxWindow
			}
		}
		if err != nil {
			l.violation("redump", "re-dump of restored %s: %v", sideName[side], err)
		} else if d := diffSnap(snap, again); d != "" {
			l.violation("redump", "re-dump of restored %s differs: %s", sideName[side], d)
		}
	}
	l.lock[side] = false
	if into != nil {
		l.Event("restore %s %v", sideName[side], snap.State)
	}
	if !resume {
		return s, nil
	}
	if err := soccr.Resume(fd, true); err != nil {
		return nil, err
	}
	l.Settle()
	return s, nil
}

// diffSnap compares a re-dump with the original, ignoring the timestamp (a clock).
func diffSnap(a, b *soccr.Snapshot) string {
	x, y := a.Data, b.Data
	x.Timestamp, y.Timestamp = 0, 0
	if x == y && string(a.InQ) == string(b.InQ) && string(a.OutQ) == string(b.OutQ) {
		return ""
	}
	return fmt.Sprintf("\n  dump   %+v\n  redump %+v", x, y)
}

// Write sends p (non-blocking) and settles; it returns the bytes accepted.
func (s *Sock) Write(p []byte) (int, error) {
	n, err := unix.Write(s.fd, p)
	if n > 0 {
		s.out.written = append(s.out.written, p[:n]...)
	}
	s.l.Settle()
	if n < 0 {
		n = 0
	}
	return n, err
}

// Fill writes until the socket refuses more (EAGAIN); it returns the total.
func (s *Sock) Fill(chunk int) int {
	total := 0
	buf := make([]byte, chunk)
	for i := 0; ; i++ {
		for j := range buf {
			buf[j] = byte(len(s.out.written) + j)
		}
		n, err := s.Write(buf)
		total += n
		if err != nil || n == 0 {
			return total
		}
	}
}

// Read reads everything available now; eof reports an end of stream.
func (s *Sock) Read() (data []byte, eof bool, err error) {
	s.l.Settle()
	buf := make([]byte, 65536)
	for {
		n, err := unix.Read(s.fd, buf)
		if n > 0 {
			data = append(data, buf[:n]...)
			s.in.read = append(s.in.read, buf[:n]...)
			continue
		}
		if n == 0 && err == nil {
			s.in.eof = true
			return data, true, nil
		}
		if errors.Is(err, unix.EAGAIN) {
			return data, false, nil
		}
		return data, false, err
	}
}

// Shutdown sends our FIN (SHUT_WR) and settles.
func (s *Sock) Shutdown() error {
	err := unix.Shutdown(s.fd, unix.SHUT_WR)
	s.l.Settle()
	return err
}

// Close closes the socket normally (FIN or RST as the kernel decides) and settles.
func (s *Sock) Close() {
	s.close()
	s.Closed = true
	s.l.Settle()
}

// State is the kernel's TCP state of the socket.
func (s *Sock) State() soccr.State {
	ti, err := soccr.GetInfo(s.fd)
	if err != nil {
		return 0
	}
	return ti.State
}

// Info is TCP_INFO.
func (s *Sock) Info() soccr.Info {
	ti, _ := soccr.GetInfo(s.fd)
	return ti
}

func injectsFin(s soccr.State) bool {
	switch s {
	case soccr.CloseWait, soccr.LastAck, soccr.Close, soccr.Closing, soccr.FinWait2:
		return true
	}
	return false
}
