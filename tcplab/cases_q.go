package tcplab

import (
	"strings"
	"time"

	"github.com/criukit/criukit/soccr"
	"golang.org/x/sys/unix"
)

// Family Q: queue boundaries judged by behaviour. Each case dumps a socket whose queues have a
// boundary Save and Restore must keep exactly (sent | unsent | FIN, the FIN of CLOSING, the
// receive buffer behind an advertised window) and then lets the application and the peer
// judge: B must read every byte A wrote, at once when its window opens (drain: lock-step,
// no timer may be needed), then EOF; the wire oracles judge every packet (a restored socket
// that resends bytes B acknowledged, acknowledges or sends beyond a window, or drops data it
// had room for, fails).

// drain reads at s until n bytes came, without waiting for any timer: every read settles
// the switch (the window update it causes makes the peer send at once). A restored sender
// that took unsent data for sent (or sent for unsent) needs a retransmission timer here.
func (c *C) drain(s *Sock, n int) []byte {
	var out []byte
	for len(out) < n {
		b, eof, err := s.Read()
		if err != nil {
			c.Fatalf("%s read: %v", s.name(), err)
		}
		out = append(out, b...)
		if len(b) == 0 || eof {
			break
		}
	}
	if len(out) != n {
		c.Fatalf("%s stalled: read %d of %d bytes with its window open and no timer fired (a retransmission timer would be needed)", s.name(), len(out), n)
	}
	return out
}

// restoreBehindHeldAcks holds B's ACKs while write runs on A, dumps A with sent and unsent data
// (Q02, Q05), restores it and lets only B's last ACK through: the earlier ones are lost with the
// dumped socket's network.
func (c *C) restoreBehindHeldAcks(write func()) {
	c.HoldDir(BtoA)
	write()
	acks := c.HeldIn(BtoA)
	if len(acks) == 0 {
		c.Fatalf("no ACK of B held")
	}
	snap := c.Checkpoint(c.A)
	if snap.UnsqLen == 0 || snap.UnsqLen >= snap.OutqLen {
		c.Snapf("dump outq %d unsq %d: want sent and unsent data", snap.OutqLen, snap.UnsqLen)
	}
	c.Hold(nil)
	c.Restore(c.A, snap)
	c.Drop(acks[:len(acks)-1]...)
	c.Deliver(acks[len(acks)-1])
}

func init() {
	register(
		&Case{ID: "Q01", TraceVaries: true, Title: "FIN_WAIT1: sent data unacked (B's ACKs held), unsent data and the FIN queued behind it",
			Expect: "A' keeps sent | unsent | FIN: B's held ACKs are acceptable to A' (no challenge ACK, no resend of acked bytes); B reads every byte without a timer, then EOF",
			Opts:   Options{Buf: 16384},
			Run: func(c *C) {
				c.Handshake()
				c.HoldDir(BtoA)
				n := c.A.Fill(4096)
				c.Must(c.A.Shutdown(), "A shutdown")
				acks := c.HeldIn(BtoA)
				if len(acks) == 0 {
					c.Fatalf("no ACK of B held")
				}
				snap := c.Checkpoint(c.A)
				if snap.State != soccr.FinWait1 || snap.UnsqLen == 0 || snap.UnsqLen >= snap.OutqLen {
					c.Snapf("dump %v outq %d unsq %d: want FIN_WAIT1 with sent and unsent data", snap.State, snap.OutqLen, snap.UnsqLen)
				}
				c.Hold(nil)
				c.Restore(c.A, snap)
				// Only B's last (cumulative) ACK arrives: it acknowledges every byte A sent, so
				// it is acceptable only to a socket whose snd_nxt is exactly the dumped one.
				c.Drop(acks[:len(acks)-1]...)
				c.Deliver(acks[len(acks)-1])
				c.drain(c.B, n)
				if !c.B.in.eof {
					c.WaitPkt(AtoB, 3*time.Second, "FIN", finPkt)
				}
				c.ExpectEOF(c.B)
			}},
		&Case{ID: "Q02", TraceVaries: true, Title: "ESTABLISHED: sent data unacked (B's ACKs held), unsent tail behind it",
			Expect: "as Q01 without the FIN: the held ACKs are acceptable to A'; the unsent tail leaves as soon as B's window opens",
			Opts:   Options{Buf: 16384},
			Run: func(c *C) {
				c.Handshake()
				var n int
				c.restoreBehindHeldAcks(func() { n = c.A.Fill(4096) })
				c.drain(c.B, n)
				c.bulk(c.A, 4000)
			}},
		&Case{ID: "Q03", TraceVaries: true, Title: "CLOSING with A's data unacked, dumped by CRIU's libsoccr, restored by soccr",
			Expect: "soccr restores CRIU's dump of CLOSING: A' CLOSING, its data and FIN at their offsets, both end closed",
			Opts:   Options{Timestamps: true, Engine: EngineLibsoccrSave},
			Run:    closingCrossed},
		&Case{ID: "Q04", TraceVaries: true, Title: "B fills the window A' advertises while A' reads nothing",
			Expect: "A' holds every byte inside the window it advertised (its receive buffer is the dumped one): no in-window drop, no retransmission needed; then A' reads it all",
			Run: func(c *C) {
				c.Handshake()
				c.Write(c.B, "before")
				snap := c.Checkpoint(c.A)
				c.Restore(c.A, snap)
				n := c.B.Fill(4096)
				c.Settle() // the drop oracle (case.go) judges what A' did with it
				c.drain(c.A, len("before")+n)
			}},
		&Case{ID: "Q05", TraceVaries: true, Title: "ESTABLISHED: unsent tail held back by the congestion window, B's window wide open",
			Expect: "the unsent tail waits for REPAIR_OFF (nothing leaves into the network lock while restoring); after B's last ACK it flows without a timer",
			Run: func(c *C) {
				c.Handshake()
				data := pattern("cwnd-limited-", 40000)
				c.restoreBehindHeldAcks(func() { c.Write(c.A, data) })
				if got := c.drain(c.B, len(data)); string(got) != data {
					c.Fatalf("B read other bytes than A wrote")
				}
			}},
		&Case{ID: "Q06", Title: "ESTABLISHED: a corked partial segment (TCP_CORK), nothing in flight",
			Expect: "the corked bytes are unsent at dump; restored (uncorked: the lab does not restore TCP_CORK) they wait for REPAIR_OFF, not leaving into the network lock, then reach B without a timer",
			Run: func(c *C) {
				c.Handshake()
				c.Must(unix.SetsockoptInt(c.A.FD(), unix.SOL_TCP, unix.TCP_CORK, 1), "TCP_CORK")
				c.Write(c.A, "corked-partial-segment")
				snap := c.Checkpoint(c.A)
				if snap.UnsqLen != 22 || snap.OutqLen != 22 {
					c.Snapf("dump outq %d unsq %d: want 22 unsent bytes", snap.OutqLen, snap.UnsqLen)
				}
				c.Restore(c.A, snap)
				c.drain(c.B, 22)
			}},
		&Case{ID: "Q07", TraceVaries: true, Title: "CLOSE_WAIT with autotuned buffers (SO_RCVBUF never set, as in C02's python3)",
			Expect: "A' CLOSE_WAIT answers with a window within its receive buffer (tcp_rmem[2] at most), as before the dump; its reply reaches B (on v6 only after a window probe: rcv_wnd is 65536 there, and libsoccr's fake FIN carries it truncated to 16 bits, 0, so A' starts with a zero send window: H15)",
			Opts:   Options{AutoBuf: true},
			Run: func(c *C) {
				c.Handshake()
				c.Write(c.B, "last-words!")
				c.Must(c.B.Shutdown(), "B shutdown")
				c.ExpectRead(c.A, "last-words!")
				c.ExpectEOF(c.A)
				snap := c.Checkpoint(c.A)
				c.Restore(c.A, snap)
				c.ExpectState(c.A, soccr.CloseWait)
				c.Write(c.A, "reply")
				if got := string(c.ReadAll(c.B, 5, 5*time.Second)); got != "reply" {
					c.Fatalf("B read %q", got)
				}
			}},
		&Case{ID: "Q08", KernelDependent: true, Title: "B's data arrives while A' is in repair mode, before its receive queue is restored",
			Expect: "A' reads the dumped bytes then B's, exactly once, in order (asserted). Recorded, 6.18: the held segment, released between TCP_QUEUE_SEQ and the receive-queue write, is taken (input ignores tp->repair; CRIU's network lock is what keeps such packets out) but out of order, since rcv_nxt is still the queue's start; its in-repair ACK (ack = queue start, SACK of it) meets the lock; the queue write fills the hole but tcp_send_rcvq does not pull the out-of-order queue, so B's bytes become readable only when B retransmits them at its RTO. Right for the stream, a one-RTO stall: a kernel merging the out-of-order queue after a repair write would avoid it",
			Opts:   Options{RestoreHook: true},
			Run: func(c *C) {
				inRepairArrival(c, true)
			}},
		&Case{ID: "Q09", Title: "B's data arrives right after A' left repair mode (receive queue restored)",
			Expect: "the held segment continues the restored receive queue (rcv_nxt = dumped inq_seq): accepted in order at once, A' reads the dumped bytes then B's, no retransmission needed",
			Run: func(c *C) {
				inRepairArrival(c, false)
			}},
	)
}

// inRepairArrival: A has unread bytes from B when dumped and B's next segment is held; it is
// released inside soccr.Restore just before the receive queue is written (during) or right
// after Resume (!during). Then A' must read both, in order, exactly once.
func inRepairArrival(c *C, during bool) {
	c.Handshake()
	c.Write(c.B, "queued-at-dump|")
	c.HoldDir(BtoA)
	c.Write(c.B, "arrives-in-repair")
	held := c.NeedHeld(BtoA, 1)
	snap := c.Checkpoint(c.A)
	if snap.InqLen != 15 {
		c.Snapf("inq_len %d, want 15", snap.InqLen)
	}
	c.Hold(nil)
	released := false
	if during {
		c.duringRestore = func(step string) {
			if !released && strings.HasPrefix(step, "restore RECV queue") {
				released = true
				c.Event("release #%d before the receive queue is restored", held[0].N)
				c.Deliver(held...)
				inq, _ := unix.IoctlGetInt(c.A.FD(), unix.SIOCINQ)
				c.Observe("in repair, before the queue is written: SIOCINQ %d (the segment is out of order)", inq)
			}
		}
	}
	c.Restore(c.A, snap)
	c.duringRestore = nil
	if during && !released {
		c.Fatalf("soccr.Restore never reached the receive queue step")
	}
	if !during {
		c.Deliver(held...)
	}
	want := "queued-at-dump|arrives-in-repair"
	got := c.ReadAll(c.A, len(want), 5*time.Second)
	if string(got) != want {
		c.Fatalf("A' read %q, want %q", got, want)
	}
	if during {
		c.Observe("B had to retransmit its segment: %v", c.Netstat(B)["TcpRetransSegs"] > 0)
	} else if n := c.Netstat(B)["TcpRetransSegs"]; n > 0 {
		c.Fatalf("B retransmitted %d segments: A' did not take the segment that continued its restored queue", n)
	}
}
