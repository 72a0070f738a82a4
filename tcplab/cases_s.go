package tcplab

import (
	"errors"
	"time"

	"github.com/criukit/criukit/soccr"
	"golang.org/x/sys/unix"
)

func init() {
	register(
		&Case{ID: "S01", Title: "SYN_SENT, SYN dropped", Expect: "restore re-sends the SYN with the original ISN (the first copy hits the network lock, the retransmission gets through); the handshake completes",
			Run: func(c *C) {
				lfd, err := c.Listen()
				c.Must(err, "listen")
				defer closeFD(lfd)
				c.HoldDir(AtoB)
				a, err := c.Connect()
				c.Must(err, "connect")
				c.A = a
				c.Settle()
				syn := c.NeedHeld(AtoB, 1)
				isn := syn[0].Seq
				snap := c.Checkpoint(a)
				if snap.State != soccr.SynSent {
					c.Snapf("dump state %v", snap.State)
				}
				c.Drop(syn...)
				c.Hold(nil)
				c.Restore(a, snap)
				// The SYN sent by connect() during restore is eaten by the network lock (as
				// with CRIU); the retransmission comes at the SYN RTO.
				resent := c.WaitPkt(AtoB, 3*time.Second, "SYN retransmission", func(p *Pkt) bool { return p.Flags&SYN != 0 })
				if resent.Seq != isn {
					c.Fatalf("re-sent SYN seq %d, original ISN %d", resent.Seq, isn)
				}
				nfd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
				c.Must(err, "accept")
				c.B = c.newSock(B, nfd)
				c.ExpectState(c.A, soccr.Established)
				c.Write(c.A, "hi")
				c.ExpectRead(c.B, "hi")
			}},
		&Case{ID: "S02", Title: "SYN_SENT, SYN delivered, SYN-ACK held then delivered after restore", Expect: "A' (SYN_SENT, same ISN) accepts the SYN-ACK", KernelDependent: true,
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
				c.Restore(a, snap)
				c.Hold(nil)
				c.Deliver(synack...)
				c.Observe("A' %v", c.A.State())
				nfd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
				c.Observe("accept ok=%v", err == nil)
				if err == nil {
					c.B = c.newSock(B, nfd)
				}
				c.Allow("incomplete")
			}},
		&Case{ID: "S04", Title: "TCP_REPAIR on a LISTEN socket", Expect: "EPERM", V4Only: false,
			Run: func(c *C) {
				lfd, err := c.Listen()
				c.Must(err, "listen")
				defer closeFD(lfd)
				err = soccr.Pause(lfd)
				if !errors.Is(err, unix.EPERM) {
					c.Fatalf("TCP_REPAIR on LISTEN: %v, want EPERM", err)
				}
				c.Event("EPERM")
			}},
		&Case{ID: "M06", Title: "TCP_REPAIR_QUEUE -1 and 3", Expect: "EINVAL (2018 bound-check fix)",
			Run: func(c *C) {
				c.Handshake()
				c.Must(soccr.Pause(c.A.FD()), "pause")
				for _, v := range []int{-1, 3} {
					if err := unix.SetsockoptInt(c.A.FD(), unix.SOL_TCP, 20, v); !errors.Is(err, unix.EINVAL) {
						c.Fatalf("TCP_REPAIR_QUEUE=%d: %v, want EINVAL", v, err)
					}
				}
				c.Must(soccr.Resume(c.A.FD(), false), "resume")
			}},
		&Case{ID: "M07", Title: "TCP_QUEUE_SEQ on an established socket / after queue data", Expect: "EPERM (8811f4a9836e)",
			Run: func(c *C) {
				c.Handshake()
				c.Write(c.B, "x")
				c.Must(soccr.Pause(c.A.FD()), "pause")
				c.Must(unix.SetsockoptInt(c.A.FD(), unix.SOL_TCP, 20, 1), "queue RECV")
				if err := unix.SetsockoptInt(c.A.FD(), unix.SOL_TCP, 21, 12345); !errors.Is(err, unix.EPERM) {
					c.Fatalf("TCP_QUEUE_SEQ: %v, want EPERM", err)
				}
				c.Must(soccr.Resume(c.A.FD(), false), "resume")
				c.ExpectRead(c.A, "x")
			}},
		&Case{ID: "T06", Title: "TCP_REPAIR_OPTIONS after data was sent", Expect: "EPERM (0c175da7b037)",
			Run: func(c *C) {
				c.Handshake()
				c.Write(c.A, "sent")
				c.ExpectRead(c.B, "sent")
				c.Must(soccr.Pause(c.A.FD()), "pause")
				b := make([]byte, 8)
				b[0] = 2
				b[4] = 0xb4
				b[5] = 0x05
				if err := rawSetsockopt(c.A.FD(), 22, b); !errors.Is(err, unix.EPERM) {
					c.Fatalf("TCP_REPAIR_OPTIONS after data: %v, want EPERM", err)
				}
				c.Must(soccr.Resume(c.A.FD(), false), "resume")
			}},
		&Case{ID: "W05", Title: "wscale 14 both ways (constructor); 15 rejected", Expect: "14 accepted and works; 15 -> EFBIG",
			Opts: Options{Buf: 1 << 20}, // the template's 1 MiB window must fit the receive buffer
			Run: func(c *C) {
				c.Construct(Template{ISNA: 1000, ISNB: 2000, Wscale: 14, Window: 1 << 20})
				c.Write(c.A, "big-scale")
				c.ExpectRead(c.B, "big-scale")
				fd, err := c.socket(A)
				c.Must(err, "socket")
				defer closeFD(fd)
				c.Must(soccr.Pause(fd), "pause")
				c.Must(unix.Bind(fd, c.sockaddr(A, 6001)), "bind")
				c.Must(unix.Connect(fd, c.sockaddr(B, 5001)), "connect in repair")
				b := make([]byte, 8)
				b[0] = 3
				b[4], b[6] = 15, 15
				if err := rawSetsockopt(fd, 22, b); !errors.Is(err, unix.EFBIG) {
					c.Fatalf("wscale 15: %v, want EFBIG", err)
				}
			}},
		&Case{ID: "W06", Title: "no window scaling negotiated", Expect: "opt_mask without WSCALE; restore works; windows <= 65535",
			Opts: Options{NoWscale: true},
			Run: func(c *C) {
				c.Handshake()
				c.Write(c.B, "w")
				snap := c.Checkpoint(c.A)
				if snap.OptMask&soccr.OptWscale != 0 {
					c.Snapf("opt_mask %#x has WSCALE", snap.OptMask)
				}
				c.Restore(c.A, snap)
				c.ExpectRead(c.A, "w")
				c.Write(c.A, repeat("z", 3000))
				c.ReadAll(c.B, 3000, 3*time.Second)
			}},
		&Case{ID: "W07", Title: "MSS clamp 536 (constructor)", Expect: "A' segments <= 536 bytes",
			Run: func(c *C) {
				c.Construct(Template{ISNA: 7, ISNB: 9, MSS: 536, Sack: true})
				n0 := c.n
				c.Write(c.A, repeat("m", 2000))
				c.ReadAll(c.B, 2000, 3*time.Second)
				for _, p := range c.packetsSince(n0) {
					if p.Dir == AtoB && p.Len > 536 {
						c.Fatalf("segment of %d bytes", p.Len)
					}
				}
			}},
		&Case{ID: "W09", Title: "invalid TCP_REPAIR_WINDOW (max_window < snd_wnd)", Expect: "EINVAL",
			Run: func(c *C) {
				c.Handshake()
				c.Must(soccr.Pause(c.A.FD()), "pause")
				b := make([]byte, 20)
				b[4] = 0x10 // snd_wnd 16 > max_window 0
				if err := rawSetsockopt(c.A.FD(), 29, b); !errors.Is(err, unix.EINVAL) {
					c.Fatalf("TCP_REPAIR_WINDOW: %v, want EINVAL", err)
				}
				c.Must(soccr.Resume(c.A.FD(), false), "resume")
			}},
	)
}

func (l *Lab) packetsSince(n0 int) []*Pkt {
	return l.captured[n0:]
}
