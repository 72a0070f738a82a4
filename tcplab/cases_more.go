package tcplab

import (
	"errors"
	"fmt"
	"github.com/criukit/criukit/internal/nsrun"
	"net"
	"os"
	"strings"
	"time"
	"unsafe"

	"github.com/criukit/criukit/soccr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// sendSegs makes s write n segments of size bytes each (one write per segment, TCP_NODELAY).
func (c *C) sendSegs(s *Sock, n, size int) string {
	var all strings.Builder
	for i := 0; i < n; i++ {
		d := strings.Repeat(string(rune('a'+i)), size)
		c.Write(s, d)
		all.WriteString(d)
	}
	return all.String()
}

func init() {
	register(
		&Case{ID: "R01", TraceVaries: true, Title: "A's out-of-order queue lost (seg1 dropped, seg2,3 SACKed)", Expect: "ofo data lost at restore; B recovers through SACK reneging / RTO; stream intact", KernelDependent: true,
			Run: func(c *C) {
				c.Handshake()
				c.HoldDir(BtoA)
				all := c.sendSegs(c.B, 3, 100)
				segs := c.NeedHeld(BtoA, 3)
				c.Hold(nil)
				c.Deliver(segs[1], segs[2])
				snap := c.Checkpoint(c.A)
				c.Drop(segs[0])
				c.Restore(c.A, snap)
				t0 := time.Now()
				got := c.ReadAll(c.A, 300, 8*time.Second)
				if string(got) != all {
					c.Fatalf("stream differs")
				}
				c.Note("recovered in %v", time.Since(t0).Round(time.Millisecond))
				c.Observe("B TCPSACKReneging=%d", c.Netstat(B)["TcpExtTCPSACKReneging"])
			}},
		&Case{ID: "R02", TraceVaries: true, Title: "as R01, the hole is filled after restore", Expect: "A' accepts seg1, then needs seg2,3 again; B retransmits; no stall > 2 RTO", KernelDependent: true,
			Run: func(c *C) {
				c.Handshake()
				c.HoldDir(BtoA)
				c.sendSegs(c.B, 3, 100)
				segs := c.NeedHeld(BtoA, 3)
				c.Hold(nil)
				c.Deliver(segs[1], segs[2])
				snap := c.Checkpoint(c.A)
				c.Restore(c.A, snap)
				c.Deliver(segs[0])
				t0 := time.Now()
				c.ReadAll(c.A, 300, 8*time.Second)
				c.Observe("recovered within 2.5 RTO: %v; B TCPSACKReneging=%d", time.Since(t0) < 2500*time.Millisecond, c.Netstat(B)["TcpExtTCPSACKReneging"])
			}},
		&Case{ID: "R03", TraceVaries: true, Title: "B checkpointed with SACK scoreboard state", Expect: "B' forgets SACKs and retransmits SACKed data spuriously; A DSACKs; no corruption",
			Run: func(c *C) {
				c.Handshake()
				c.HoldDir(BtoA)
				all := c.sendSegs(c.B, 3, 100)
				segs := c.NeedHeld(BtoA, 3)
				c.Hold(nil)
				c.Deliver(segs[1], segs[2])
				snap := c.Checkpoint(c.B)
				c.Drop(segs[0])
				c.Restore(c.B, snap)
				if got := c.ReadAll(c.A, 300, 5*time.Second); string(got) != all {
					c.Fatalf("stream differs")
				}
			}},
		&Case{ID: "R04", Title: "A in fast recovery (dupacks received, retransmission in flight)", Expect: "CA state lost; A' retransmits by timer; stream intact",
			Run: func(c *C) {
				c.Handshake()
				c.HoldDir(AtoB)
				c.sendSegs(c.A, 5, 100)
				segs := c.NeedHeld(AtoB, 5)
				c.Deliver(segs[1:]...) // 4 dupacks with SACK: fast retransmit of seg1 (held)
				rtx := c.HeldIn(AtoB)
				c.Event("held after dupacks: %d", len(rtx))
				snap := c.Checkpoint(c.A)
				c.Drop(segs[0])
				c.Drop(rtx...)
				c.Hold(nil)
				c.Restore(c.A, snap)
				c.ReadAll(c.B, 500, 5*time.Second)
			}},
		&Case{ID: "R05", Title: "A in RTO backoff (two timeouts)", Expect: "backoff reset; A' retransmits at the (restored) RTO",
			Run: func(c *C) {
				c.Handshake()
				c.HoldDir(AtoB)
				c.Write(c.A, "backoff")
				for i := 0; i < 2; i++ {
					c.WaitPkt(AtoB, 3*time.Second, "retransmission", dataPkt)
				}
				c.Event("backoff %d", c.A.Info().Retrans)
				held := c.HeldIn(AtoB)
				snap := c.Checkpoint(c.A)
				c.Drop(held...)
				c.Hold(nil)
				c.Restore(c.A, snap)
				c.WaitPkt(AtoB, 3*time.Second, "retransmission after restore", dataPkt)
				c.ExpectRead(c.B, "backoff")
			}},
		&Case{ID: "R06", Title: "restored retransmission delivered before the old in-flight copy", Expect: "B gets a duplicate and DSACKs; stream intact", KernelDependent: true,
			Run: func(c *C) {
				c.Handshake()
				c.HoldDir(AtoB)
				c.Write(c.A, "twice")
				old := c.NeedHeld(AtoB, 1)
				snap := c.Checkpoint(c.A)
				c.Restore(c.A, snap)
				c.WaitPkt(AtoB, 3*time.Second, "retransmission", dataPkt)
				rtx := c.HeldIn(AtoB)
				c.Hold(nil)
				c.Deliver(rtx[len(rtx)-1])
				c.Deliver(old...)
				c.Drop(rtx[:len(rtx)-1]...)
				c.ExpectRead(c.B, "twice")
				var dsack bool
				for _, p := range c.captured {
					if p.Dir == BtoA && len(p.Sack) > 0 {
						dsack = true
					}
				}
				c.Observe("B sent SACK/DSACK blocks: %v", dsack)
			}},
		&Case{ID: "R11", Title: "restored with SACK off in the image while the peer negotiated SACK", Expect: "B still sends SACK blocks; A' ignores them; stream intact",
			Run: func(c *C) {
				c.Handshake()
				c.HoldDir(AtoB)
				all := c.sendSegs(c.A, 3, 100)
				segs := c.NeedHeld(AtoB, 3)
				snap := c.Checkpoint(c.A)
				snap.OptMask &^= soccr.OptSack
				c.Allow("redump")
				c.Hold(nil)
				c.Restore(c.A, snap)
				c.Drop(segs[0])
				c.Deliver(segs[1], segs[2])
				if got := c.ReadAll(c.B, 300, 5*time.Second); string(got) != all {
					c.Fatalf("stream differs")
				}
			}},
		&Case{ID: "W01", TraceVaries: true, Title: "B advertises a zero window, A has unsent data", Expect: "restored snd_wnd=0; A' keeps probing; when B reads, all data flows",
			Opts: Options{Buf: 16384},
			Run: func(c *C) {
				c.Handshake()
				n := c.A.Fill(4096)
				snap := c.Checkpoint(c.A)
				if snap.SndWnd != 0 {
					c.Observe("snd_wnd at dump %d (not 0)", snap.SndWnd)
				}
				c.Restore(c.A, snap)
				c.WaitPkt(AtoB, 3*time.Second, "zero-window probe", nil)
				c.ReadAll(c.B, n, 10*time.Second)
			}},
		&Case{ID: "W02", TraceVaries: true, Title: "A advertised a zero window (A not reading)", Expect: "A' restores rcv_wnd; B's probes answered; all data read; whether A's right edge retracts is recorded",
			Opts: Options{Buf: 16384}, KernelDependent: true,
			Run: func(c *C) {
				c.Handshake()
				n := c.B.Fill(4096)
				before := c.retracted[A]
				snap := c.Checkpoint(c.A)
				c.Restore(c.A, snap)
				c.ReadAll(c.A, n, 10*time.Second)
				c.Observe("A's right edge retracted before C/R %v, at any time %v", before, c.retracted[A])
			}},
		&Case{ID: "W04", TraceVaries: true, Title: "smaller SO_RCVBUF at restore than at dump", Expect: "the advertised right edge must not retract", KernelDependent: true,
			Opts: Options{Buf: 65536},
			Run: func(c *C) {
				c.Allow("redump", "drop") // the smaller buffer (and what it drops) is the subject
				c.Handshake()
				c.Write(c.B, "x")
				snap := c.Checkpoint(c.A)
				snap.RcvBuf /= 8
				c.Restore(c.A, snap)
				c.ExpectRead(c.A, "x")
				n := c.B.Fill(4096)
				c.ReadAll(c.A, n, 10*time.Second)
				c.Observe("right edge retracted: %v", c.retracted[A])
			}},
		&Case{ID: "W08", Title: "smaller path MTU at restore (route mtu 1000)", Expect: "A' segments respect the new PMTU; mss_clamp unchanged",
			Run: func(c *C) {
				c.Handshake()
				snap := c.Checkpoint(c.A)
				c.Must(c.setRouteMTU(A, 1000), "route mtu")
				c.Restore(c.A, snap)
				n0 := c.n
				c.Write(c.A, repeat("p", 5000))
				c.ReadAll(c.B, 5000, 3*time.Second)
				for _, p := range c.packetsSince(n0) {
					if p.Dir == AtoB && len(p.Raw) > 1000 {
						c.Fatalf("packet of %d bytes > mtu 1000", len(p.Raw))
					}
				}
			}},
		&Case{ID: "T02", TraceVaries: true, Title: "timestamps on, restore 300 ms after the dump", Expect: "libsoccr restores the clock as dumped: TSval continues from the dumped value (jump < 100 ticks, not 300); B accepts",
			Opts: Options{Timestamps: true},
			Run: func(c *C) {
				c.Handshake()
				c.Write(c.A, "a")
				c.ExpectRead(c.B, "a")
				last := c.lastTS[A]
				snap := c.Checkpoint(c.A)
				time.Sleep(300 * time.Millisecond)
				c.Restore(c.A, snap)
				c.Write(c.A, "b")
				c.ExpectRead(c.B, "b")
				if d := int32(c.lastTS[A] - last); d >= 100 || d < -1 {
					c.Fatalf("TSval moved by %d ticks across a 300 ms pause, want the dumped clock (< 100)", d)
				}
			}},
		&Case{ID: "T07", Title: "TCP-MD5 keys set on both ends", Expect: "libsoccr does not restore MD5 keys: B drops A's unsigned segments unless the key is re-added before REPAIR_OFF", KernelDependent: true,
			V4Only: true,
			Run: func(c *C) {
				c.Allow("incomplete", "redump")
				lfd, err := c.Listen()
				c.Must(err, "listen")
				defer closeFD(lfd)
				c.Must(setMD5(lfd, c.Addr(A), "secret"), "md5 on listener")
				fd, err := c.socket(A)
				c.Must(err, "socket")
				c.Must(setMD5(fd, c.Addr(B), "secret"), "md5 on A")
				c.Must(unix.Bind(fd, c.sockaddr(A, PortA)), "bind")
				if err := unix.Connect(fd, c.sockaddr(B, PortB)); err != nil && !errors.Is(err, unix.EINPROGRESS) {
					c.Fatalf("connect: %v", err)
				}
				c.A = c.newSock(A, fd)
				c.Settle()
				nfd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
				c.Must(err, "accept")
				c.B = c.newSock(B, nfd)
				snap := c.Checkpoint(c.A)
				c.Restore(c.A, snap)
				c.Write(c.A, "unsigned?")
				got, _, _ := c.B.Read()
				c.Observe("B read %q; TCPMD5NotFound at B %d", got, c.Netstat(B)["TcpExtTCPMD5NotFound"])
			}},
		&Case{ID: "T08", Title: "ECN negotiated", Expect: "ECN state is not in libsoccr's image: A' does not set ECT after restore", KernelDependent: true,
			Opts: Options{ECN: true},
			Run: func(c *C) {
				c.Allow("redump") // the ECN bit of opt_mask cannot be restored
				c.Handshake()
				c.Write(c.A, "e1")
				c.ExpectRead(c.B, "e1")
				snap := c.Checkpoint(c.A)
				c.Observe("opt_mask has ECN: %v", snap.OptMask&soccr.OptECN != 0)
				c.Restore(c.A, snap)
				n0 := c.n
				c.Write(c.A, "e2")
				c.ExpectRead(c.B, "e2")
				ect := false
				for _, p := range c.packetsSince(n0) {
					if p.Dir == AtoB && p.Len > 0 && ecnBits(p) != 0 {
						ect = true
					}
				}
				c.Observe("ECT on data after restore: %v", ect)
			}},
		&Case{ID: "H15", Title: "CLOSE_WAIT with rcv_wnd >= 64 KiB (libsoccr's fake FIN window)", Expect: "the fake FIN carries rcv_wnd truncated to 16 bits: A' may see a tiny or zero peer window and stall until a probe", KernelDependent: true,
			Opts: Options{Buf: 1 << 20},
			Run: func(c *C) {
				c.Allow("redump", "window")
				c.Handshake()
				c.Must(c.B.Shutdown(), "B shutdown")
				snap := c.Checkpoint(c.A)
				c.Observe("rcv_wnd >= 65536: %v; fake window %d << %d", snap.RcvWnd >= 65536, uint16(snap.RcvWnd), snap.SndWscale)
				c.Restore(c.A, snap)
				c.Write(c.A, "reply")
				got, _, _ := c.B.Read()
				c.Observe("B got the reply at once: %v", string(got) == "reply")
				if string(got) != "reply" {
					c.ReadAll(c.B, 5-len(got), 8*time.Second)
				}
			}},
		&Case{ID: "H16", Title: "as H15 with soccr's PeerWindow fix", Expect: "the fake FIN carries the peer's real window: A' sends at once",
			Opts: Options{Buf: 1 << 20, PeerWindow: true},
			Run: func(c *C) {
				c.Handshake()
				c.Must(c.B.Shutdown(), "B shutdown")
				snap := c.Checkpoint(c.A)
				c.Restore(c.A, snap)
				c.Write(c.A, "reply")
				c.ExpectRead(c.B, "reply")
			}},
		&Case{ID: "P05", Title: "CLOSING / CLOSING, both dumped", Expect: "both restored in CLOSING; ACKs delivered -> both TIME_WAIT",
			Run: func(c *C) {
				c.Handshake()
				c.HoldAll()
				c.Must(c.A.Shutdown(), "A shutdown")
				c.Must(c.B.Shutdown(), "B shutdown")
				fa, fb := c.NeedHeld(AtoB, 1), c.NeedHeld(BtoA, 1)
				c.Deliver(fa...)
				c.Deliver(fb...)
				acks := c.Held()
				sa, sb := c.Checkpoint(c.A), c.Checkpoint(c.B)
				if sa.State != soccr.Closing || sb.State != soccr.Closing {
					c.Fatalf("states %v/%v", sa.State, sb.State)
				}
				c.Restore(c.A, sa)
				c.Restore(c.B, sb)
				c.Hold(nil)
				c.Deliver(acks...)
				c.Deliver(c.Held()...)
				c.ExpectState(c.A, soccr.Close)
				c.ExpectState(c.B, soccr.Close)
			}},
		&Case{ID: "P06", Title: "LAST_ACK / FIN_WAIT2, both dumped", Expect: "A's FIN then B's ACK complete the close",
			Run: func(c *C) {
				c.Handshake()
				c.Must(c.B.Shutdown(), "B shutdown")
				c.HoldDir(AtoB)
				c.Must(c.A.Shutdown(), "A shutdown")
				fin := c.NeedHeld(AtoB, 1)
				sa, sb := c.Checkpoint(c.A), c.Checkpoint(c.B)
				if sa.State != soccr.LastAck || sb.State != soccr.FinWait2 {
					c.Fatalf("states %v/%v", sa.State, sb.State)
				}
				c.HoldAll()
				c.Restore(c.A, sa)
				c.Restore(c.B, sb)
				c.Hold(nil)
				c.Deliver(c.Held()...) // the held FIN first, then the REPAIR_OFF probes
				_ = fin
				c.ExpectState(c.A, soccr.Close)
				c.ExpectEOF(c.B)
				c.ExpectState(c.B, soccr.Close)
			}},
		&Case{ID: "P07", TraceVaries: true, Title: "SYN_SENT restored after the SYN reached the listener (SYN-ACK dropped)", Expect: "A' re-sends the SYN with the same ISN; the request sock answers; handshake completes", KernelDependent: true,
			Run: func(c *C) {
				lfd, err := c.Listen()
				c.Must(err, "listen")
				defer closeFD(lfd)
				c.HoldDir(BtoA)
				a, err := c.Connect()
				c.Must(err, "connect")
				c.A = a
				c.Settle()
				synack := c.NeedHeld(BtoA, 1)
				snap := c.Checkpoint(a)
				c.Drop(synack...)
				c.Hold(nil)
				c.Restore(a, snap)
				c.WaitFor(3*time.Second, func(p *Pkt) bool { return p.Dir == BtoA && p.Has(SYN|ACK) })
				nfd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
				c.Observe("A' %v, accept ok %v", c.A.State(), err == nil)
				if err == nil {
					c.B = c.newSock(B, nfd)
					c.Write(c.A, "hi")
					c.ExpectRead(c.B, "hi")
				}
			}},
		&Case{ID: "P08", TraceVaries: true, Title: "both dumped with full windows (A's recvq full, B's sendq full)", Expect: "windows restored on both; no deadlock; all data flows",
			Opts: Options{Buf: 16384},
			Run: func(c *C) {
				c.Handshake()
				n := c.B.Fill(4096)
				m := c.A.Fill(4096)
				sa, sb := c.Checkpoint(c.A), c.Checkpoint(c.B)
				c.HoldAll()
				c.Restore(c.A, sa)
				c.Restore(c.B, sb)
				c.Hold(nil)
				c.Deliver(c.Held()...)
				c.ReadAll(c.A, n, 10*time.Second)
				c.ReadAll(c.B, m, 10*time.Second)
			}},
		&Case{ID: "P09", Title: "A restored into a different netns with the same address (migration)", Expect: "transparent to B; the old netns is gone",
			Run: func(c *C) {
				c.Handshake()
				c.Write(c.B, "moved")
				c.HoldDir(AtoB)
				c.Write(c.A, "in-flight")
				held := c.NeedHeld(AtoB, 1)
				snap := c.Checkpoint(c.A)
				c.Must(c.ReplaceSide(A), "replace side A")
				c.Hold(nil)
				c.Restore(c.A, snap)
				c.Deliver(held...)
				c.ExpectRead(c.A, "moved")
				c.ExpectRead(c.B, "in-flight")
				c.Write(c.A, "hello from the new netns")
				c.ExpectRead(c.B, "hello from the new netns")
			}},
		&Case{ID: "S03", Title: "SYN_SENT with data queued (TCP_FASTOPEN_CONNECT)", Expect: "libsoccr is not designed for this: record what happens", KernelDependent: true,
			Run: func(c *C) {
				c.Allow("incomplete", "stream", "redump")
				lfd, err := c.Listen()
				c.Must(err, "listen")
				defer closeFD(lfd)
				fd, err := c.socket(A)
				c.Must(err, "socket")
				c.A = c.newSock(A, fd)
				c.Must(unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_FASTOPEN_CONNECT, 1), "TCP_FASTOPEN_CONNECT")
				c.Must(unix.Bind(fd, c.sockaddr(A, PortA)), "bind")
				c.HoldDir(AtoB)
				err = unix.Connect(fd, c.sockaddr(B, PortB))
				c.Observe("connect: %v", err)
				n, err := unix.Write(fd, []byte("tfo-data"))
				c.Observe("write: %d %v", n, err)
				c.Settle()
				snap, err := c.Lab.Checkpoint(c.A)
				if err != nil {
					c.Observe("checkpoint: %v", err)
					return
				}
				c.Observe("dump %v outq=%d", snap.State, snap.OutqLen)
				c.Drop(c.Held()...)
				c.Hold(nil)
				c.Observe("restore err: %v", c.Lab.Restore(c.A, snap) != nil)
			}},
		&Case{ID: "S05", Title: "LISTEN with a completed, not accepted connection", Expect: "the listener cannot be repaired (EPERM); the child is only reachable through accept()",
			Run: func(c *C) {
				lfd, err := c.Listen()
				c.Must(err, "listen")
				defer closeFD(lfd)
				a, err := c.Connect()
				c.Must(err, "connect")
				c.A = a
				c.Settle()
				if err := soccr.Pause(lfd); !errors.Is(err, unix.EPERM) {
					c.Fatalf("repair on listener: %v", err)
				}
				nfd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
				c.Must(err, "accept")
				c.B = c.newSock(B, nfd)
				snap := c.Checkpoint(c.B)
				c.Restore(c.B, snap)
				c.Write(c.B, "child")
				c.ExpectRead(c.A, "child")
			}},
		&Case{ID: "U01", Title: "urgent byte unread at A (MSG_OOB, no SO_OOBINLINE)", Expect: "MSG_PEEK may stop at the urgent mark: save fails or OOB becomes inline", KernelDependent: true,
			Run: func(c *C) {
				c.Allow("incomplete", "stream", "redump")
				c.Handshake()
				c.Write(c.B, "normal")
				_, err := unix.SendmsgN(c.B.FD(), []byte("!"), nil, nil, unix.MSG_OOB)
				c.Must(err, "send OOB")
				c.B.out.written = append(c.B.out.written, '!')
				c.Settle()
				snap, err := c.Lab.Checkpoint(c.A)
				if err != nil {
					c.Observe("checkpoint failed: %v", errors.Is(err, soccr.ErrQueueChanged))
					return
				}
				c.Observe("dump inq=%d", snap.InqLen)
				c.Restore(c.A, snap)
				got, _, _ := c.A.Read()
				c.Observe("A' read %q", got)
			}},
		&Case{ID: "U02", Title: "urgent data sent by A, unacked, dropped", Expect: "the URG flag is lost in the restored send queue", KernelDependent: true,
			Run: func(c *C) {
				c.Allow("incomplete", "stream")
				c.Handshake()
				c.HoldDir(AtoB)
				_, err := unix.SendmsgN(c.A.FD(), []byte("u!"), nil, nil, unix.MSG_OOB)
				c.Must(err, "send OOB")
				c.A.out.written = append(c.A.out.written, 'u', '!')
				c.Settle()
				held := c.HeldIn(AtoB)
				c.Observe("original has URG: %v", len(held) == 1 && held[0].Flags&URG != 0)
				snap := c.Checkpoint(c.A)
				c.Drop(held...)
				c.Hold(nil)
				c.Restore(c.A, snap)
				p := c.WaitPkt(AtoB, 3*time.Second, "retransmission", dataPkt)
				c.Observe("retransmission has URG: %v", p.Flags&URG != 0)
			}},
		&Case{ID: "M01", Title: "IPv4-mapped IPv6 socket (AF_INET6 talking IPv4)", Expect: "restored as AF_INET6 with mapped addresses; fake packets go out as IPv4", V4Only: true,
			Run: func(c *C) {
				lfd, err := c.Listen()
				c.Must(err, "listen")
				defer closeFD(lfd)
				fd := -1
				c.Must(nsrun.Do(c.sides[A].ns, func() error {
					var err error
					fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
					return err
				}), "socket")
				c.A = c.newSock(A, fd)
				mapped := func(s, port int) unix.Sockaddr {
					a := c.Addr(s).As4()
					sa := &unix.SockaddrInet6{Port: port}
					copy(sa.Addr[12:], a[:])
					sa.Addr[10], sa.Addr[11] = 0xff, 0xff
					return sa
				}
				c.Must(unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_NODELAY, 1), "nodelay")
				c.Must(unix.Bind(fd, mapped(A, PortA)), "bind")
				if err := unix.Connect(fd, mapped(B, PortB)); err != nil && !errors.Is(err, unix.EINPROGRESS) {
					c.Fatalf("connect: %v", err)
				}
				c.Settle()
				nfd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
				c.Must(err, "accept")
				c.B = c.newSock(B, nfd)
				c.Must(c.B.Shutdown(), "B shutdown") // CLOSE_WAIT: needs the fake FIN
				snap := c.Checkpoint(c.A)
				if !snap.Src.Addr().Is4In6() {
					c.Snapf("src %v is not v4-mapped", snap.Src)
				}
				c.Restore(c.A, snap)
				dom, _ := unix.GetsockoptInt(c.A.FD(), unix.SOL_SOCKET, unix.SO_DOMAIN)
				if dom != unix.AF_INET6 {
					c.Fatalf("restored family %d", dom)
				}
				c.ExpectState(c.A, soccr.CloseWait)
				c.Write(c.A, "mapped")
				c.ExpectRead(c.B, "mapped")
			}},
		&Case{ID: "M03", Title: "TCP_CORK set with a partial segment queued", Expect: "cork is not part of soccr: the data goes out after restore",
			Run: func(c *C) {
				c.Handshake()
				c.Must(unix.SetsockoptInt(c.A.FD(), unix.SOL_TCP, unix.TCP_CORK, 1), "cork")
				c.Write(c.A, "corked")
				snap := c.Checkpoint(c.A)
				if snap.UnsqLen != 6 {
					c.Snapf("unsq_len %d, want 6", snap.UnsqLen)
				}
				c.Restore(c.A, snap)
				c.ExpectRead(c.B, "corked")
			}},
		&Case{ID: "M04", Title: "SO_LINGER{1,0} then close in repair", Expect: "silent close (repair wins): no RST",
			Run: func(c *C) {
				c.Handshake()
				c.Must(unix.SetsockoptLinger(c.A.FD(), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}), "linger")
				snap := c.Checkpoint(c.A)
				c.Restore(c.A, snap)
				c.Write(c.A, "alive")
				c.ExpectRead(c.B, "alive")
			}},
		&Case{ID: "M05", Title: "30 dump/restore cycles on one connection", Expect: "no orphan or socket leak; stream intact",
			Run: func(c *C) {
				c.Handshake()
				before := c.sockstat(A)
				for i := 0; i < 30; i++ {
					c.Write(c.B, fmt.Sprint(i%10))
					snap := c.Checkpoint(c.A)
					c.Restore(c.A, snap)
				}
				c.ReadAll(c.A, 30, 2*time.Second)
				if after := c.sockstat(A); after != before {
					c.Fatalf("sockstat changed: %q -> %q", before, after)
				}
			}},
		&Case{ID: "M08", Title: "repair on, connect, data into RECV queue, repair off, TCP_QUEUE_SEQ, recv", Expect: "no crash: TCP_QUEUE_SEQ fails (not in repair), recv returns the data",
			Run: func(c *C) {
				fd, err := c.socket(A)
				c.Must(err, "socket")
				c.A = c.newSock(A, fd)
				c.Allow("incomplete", "rst")
				c.lock[A] = true
				defer func() { c.lock[A] = false }()
				c.Must(soccr.Pause(fd), "repair on")
				c.Must(unix.Bind(fd, c.sockaddr(A, PortA)), "bind")
				c.Must(unix.Connect(fd, c.sockaddr(B, PortB)), "connect in repair")
				c.Must(unix.SetsockoptInt(fd, unix.SOL_TCP, 20, 1), "queue RECV")
				_, err = unix.Write(fd, []byte("queued"))
				c.Must(err, "send to RECV queue")
				c.Must(soccr.Resume(fd, false), "repair off")
				err = unix.SetsockoptInt(fd, unix.SOL_TCP, 21, 1)
				c.Event("TCP_QUEUE_SEQ after repair off: %v", err)
				if err == nil {
					c.Fatalf("TCP_QUEUE_SEQ accepted outside repair")
				}
				buf := make([]byte, 16)
				n, _ := unix.Read(fd, buf)
				if n != 6 {
					c.Fatalf("recv %d bytes, want 6", n)
				}
				c.Settle()
			}},
	)
}

func ecnBits(p *Pkt) byte {
	if p.Raw[0]>>4 == 4 {
		return p.Raw[1] & 3
	}
	return (p.Raw[1] >> 4) & 3
}

// setMD5 sets a TCP_MD5SIG key for peer (struct tcp_md5sig).
func setMD5(fd int, peer interface{ As4() [4]byte }, key string) error {
	var b [216]byte
	// struct sockaddr_storage: family + port + addr
	*(*uint16)(unsafe.Pointer(&b[0])) = unix.AF_INET
	a := peer.As4()
	copy(b[4:8], a[:])
	*(*uint16)(unsafe.Pointer(&b[130])) = uint16(len(key)) // tcpm_keylen after flags, prefixlen
	copy(b[136:], key)
	return unix.SetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_MD5SIG, string(b[:]))
}

func (l *Lab) setRouteMTU(s int, mtu int) error {
	return nsrun.Do(l.sides[s].ns, func() error {
		link, err := netlink.LinkByName("tl0")
		if err != nil {
			return err
		}
		a := l.sides[s].addr
		bits := 24
		if a.Is6() {
			bits = 64
		}
		ipn := &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(bits, a.BitLen())}
		ipn.IP = ipn.IP.Mask(ipn.Mask)
		rt := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipn, Scope: netlink.SCOPE_LINK, MTU: mtu,
			QuickACK: 1, RtoMin: int(l.o.RTO.Milliseconds()), Protocol: unix.RTPROT_KERNEL}
		if a.Is6() {
			rt.Priority, rt.Scope = 256, netlink.SCOPE_UNIVERSE
		} else {
			rt.Src = net.IP(a.AsSlice())
		}
		return netlink.RouteReplace(rt)
	})
}

// sockstat returns the per-netns TCP counters ("inuse N tw N") of side s's sockstat (the
// orphan, alloc and mem counters are global: other tests change them).
func (l *Lab) sockstat(s int) string {
	var out string
	_ = nsrun.Do(l.sides[s].ns, func() error {
		b, err := os.ReadFile("/proc/thread-self/net/sockstat")
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 7 && f[0] == "TCP:" {
				out = strings.Join([]string{f[1], f[2], f[5], f[6]}, " ")
			}
		}
		return err
	})
	return out
}

func init() {
	register(&Case{ID: "M02", Title: "IPv6 link-local addresses with a scope id", Expect: "bind/connect with the scope restored (soccr keeps the zone)", V6Only: true,
		Run: func(c *C) {
			lfd := -1
			c.Must(nsrun.Do(c.sides[B].ns, func() error {
				var err error
				if lfd, err = unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0); err != nil {
					return err
				}
				if err := unix.Bind(lfd, &unix.SockaddrInet6{Port: PortB, Addr: c.sides[B].ll.As16(), ZoneId: uint32(c.sides[B].index)}); err != nil {
					return err
				}
				return unix.Listen(lfd, 1)
			}), "listen on link-local")
			defer closeFD(lfd)
			fd := -1
			c.Must(nsrun.Do(c.sides[A].ns, func() error {
				var err error
				fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
				return err
			}), "socket")
			c.A = c.newSock(A, fd)
			c.Must(unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_NODELAY, 1), "nodelay")
			c.Must(unix.Bind(fd, &unix.SockaddrInet6{Port: PortA, Addr: c.sides[A].ll.As16(), ZoneId: uint32(c.sides[A].index)}), "bind")
			if err := unix.Connect(fd, &unix.SockaddrInet6{Port: PortB, Addr: c.sides[B].ll.As16(), ZoneId: uint32(c.sides[A].index)}); err != nil && !errors.Is(err, unix.EINPROGRESS) {
				c.Fatalf("connect: %v", err)
			}
			c.Settle()
			nfd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			c.Must(err, "accept")
			c.B = c.newSock(B, nfd)
			c.Write(c.B, "scoped")
			snap := c.Checkpoint(c.A)
			if snap.Src.Addr().Zone() == "" {
				c.Snapf("src %v lost its zone", snap.Src)
			}
			c.Restore(c.A, snap)
			c.ExpectRead(c.A, "scoped")
			c.Write(c.A, "back")
			c.ExpectRead(c.B, "back")
		}})
}
