package tcplab

import (
	"errors"
	"strings"
	"time"

	"github.com/criukit/criukit/soccr"
	"golang.org/x/sys/unix"
)

func init() {
	register(
		&Case{ID: "H01", Title: "CLOSE_WAIT with unread data before the FIN", Expect: "A' reads the data then EOF; can still write; close -> LAST_ACK -> CLOSED",
			Run: func(c *C) {
				c.Handshake()
				c.Write(c.B, "data-before-fin")
				c.Must(c.B.Shutdown(), "B shutdown")
				c.ExpectState(c.A, soccr.CloseWait)
				snap := c.Checkpoint(c.A)
				c.Restore(c.A, snap)
				c.ExpectState(c.A, soccr.CloseWait)
				c.ExpectRead(c.A, "data-before-fin")
				c.ExpectEOF(c.A)
				c.Write(c.A, "reply")
				c.ExpectRead(c.B, "reply")
				c.A.Close()
				c.ExpectEOF(c.B)
			}},
		&Case{ID: "H02", Title: "CLOSE_WAIT with A's unacked data dropped", Expect: "A' retransmits; B reads it",
			Run: func(c *C) {
				c.Handshake()
				c.Must(c.B.Shutdown(), "B shutdown")
				c.HoldDir(AtoB)
				c.Write(c.A, "late-reply")
				held := c.NeedHeld(AtoB, 1)
				snap := c.Checkpoint(c.A)
				c.Drop(held...)
				c.Hold(nil)
				c.Restore(c.A, snap)
				c.WaitPkt(AtoB, 5*time.Second, "retransmission", dataPkt)
				c.ExpectRead(c.B, "late-reply")
				c.ExpectState(c.A, soccr.CloseWait)
			}},
		&Case{ID: "H03", Title: "FIN_WAIT2: our FIN acked", Expect: "A' FIN_WAIT2 after the injected ACK; receives data and FIN -> TIME_WAIT",
			Run: func(c *C) {
				c.Handshake()
				c.Must(c.A.Shutdown(), "A shutdown")
				c.ExpectState(c.A, soccr.FinWait2)
				snap := c.Checkpoint(c.A)
				c.Restore(c.A, snap)
				c.ExpectState(c.A, soccr.FinWait2)
				c.Write(c.B, "last words")
				c.Must(c.B.Shutdown(), "B shutdown")
				c.ExpectRead(c.A, "last words")
				c.ExpectEOF(c.A)
				c.ExpectEOF(c.B)
				c.ExpectState(c.A, soccr.Close) // the full socket is CLOSE, a tw sock holds the tuple
			}},
		&Case{ID: "H04", Title: "FIN_WAIT1: data+FIN in flight, dropped", Expect: "A' retransmits data+FIN together at the RTO; no probe at REPAIR_OFF",
			Run: func(c *C) {
				c.Handshake()
				c.HoldDir(AtoB)
				c.Write(c.A, "unacked-data")
				c.Must(c.A.Shutdown(), "A shutdown")
				held := c.HeldIn(AtoB)
				snap := c.Checkpoint(c.A)
				if snap.State != soccr.FinWait1 || snap.OutqLen != 12 {
					c.Snapf("dump %v outq %d, want FIN_WAIT1 12", snap.State, snap.OutqLen)
				}
				c.Drop(held...)
				c.Hold(nil)
				c.Restore(c.A, snap)
				c.WaitPkt(AtoB, 5*time.Second, "data+FIN retransmission", func(p *Pkt) bool { return p.Len > 0 })
				c.WaitFor(200*time.Millisecond, func(*Pkt) bool { return false })
				c.ExpectRead(c.B, "unacked-data")
				if !c.B.in.eof {
					c.WaitPkt(AtoB, 5*time.Second, "FIN retransmission", finPkt)
				}
				c.ExpectEOF(c.B)
				c.ExpectState(c.A, soccr.FinWait2)
			}},
		&Case{ID: "H05", Title: "FIN_WAIT1: FIN delivered, B's ACK held then delivered after restore", Expect: "A' -> FIN_WAIT2",
			Run: func(c *C) {
				c.Handshake()
				c.HoldDir(BtoA)
				c.Must(c.A.Shutdown(), "A shutdown")
				ack := c.NeedHeld(BtoA, 1)
				c.ExpectState(c.A, soccr.FinWait1)
				snap := c.Checkpoint(c.A)
				c.Hold(nil)
				c.Restore(c.A, snap)
				c.ExpectState(c.A, soccr.FinWait1)
				c.Deliver(ack...)
				c.ExpectState(c.A, soccr.FinWait2)
				c.ExpectEOF(c.B)
			}},
		&Case{ID: "H06", TraceVaries: true, Title: "FIN_WAIT1 with the FIN unsent behind a zero window", Expect: "unsq_len FIN accounting; the FIN goes out after the window opens", KernelDependent: true,
			Opts: Options{Buf: 16384},
			Run: func(c *C) {
				c.Handshake()
				n := c.A.Fill(4096)
				c.Must(c.A.Shutdown(), "A shutdown")
				snap := c.Checkpoint(c.A)
				c.Observe("dump %v unsent>0 %v", snap.State, snap.UnsqLen > 0)
				c.Restore(c.A, snap)
				c.ReadAll(c.B, n, 10*time.Second)
				c.Run(50 * time.Millisecond)
				_, eof, _ := c.B.Read()
				if !eof {
					c.WaitFor(3*time.Second, finPkt)
					_, eof, _ = c.B.Read()
				}
				c.Observe("B got EOF %v; A' %v", eof, c.A.State())
			}},
		&Case{ID: "H07", Title: "CLOSING: simultaneous close, ACKs held", Expect: "A' CLOSING; the ACK delivered -> TIME_WAIT",
			Run: func(c *C) {
				c.Handshake()
				c.HoldAll()
				c.Must(c.A.Shutdown(), "A shutdown")
				c.Must(c.B.Shutdown(), "B shutdown")
				fa, fb := c.NeedHeld(AtoB, 1), c.NeedHeld(BtoA, 1)
				c.Deliver(fa...)
				c.Deliver(fb...)
				c.ExpectState(c.A, soccr.Closing)
				ackA, ackB := c.NeedHeld(AtoB, 1), c.NeedHeld(BtoA, 1)
				snap := c.Checkpoint(c.A)
				c.Hold(nil)
				c.Restore(c.A, snap)
				c.ExpectState(c.A, soccr.Closing)
				c.Deliver(ackB...)
				c.Deliver(ackA...)
				c.ExpectState(c.A, soccr.Close)
				c.ExpectState(c.B, soccr.Close)
				c.ExpectEOF(c.A)
				c.ExpectEOF(c.B)
			}},
		&Case{ID: "H08", Title: "LAST_ACK: A's FIN in flight, dropped", Expect: "A' retransmits the FIN; B -> TIME_WAIT; A' -> CLOSED",
			Run: func(c *C) {
				c.Handshake()
				c.Must(c.B.Shutdown(), "B shutdown")
				c.HoldDir(AtoB)
				c.Must(c.A.Shutdown(), "A shutdown")
				fin := c.NeedHeld(AtoB, 1)
				c.ExpectState(c.A, soccr.LastAck)
				snap := c.Checkpoint(c.A)
				c.Drop(fin...)
				c.Hold(nil)
				c.Restore(c.A, snap)
				c.ExpectState(c.A, soccr.LastAck)
				c.WaitPkt(AtoB, 5*time.Second, "FIN retransmission", finPkt)
				c.ExpectState(c.A, soccr.Close)
				c.ExpectEOF(c.B)
			}},
		&Case{ID: "H09", Title: "LAST_ACK: FIN delivered, B's final ACK dropped", Expect: "A' retransmits the FIN; B (TIME_WAIT) re-ACKs; A' CLOSED",
			Run: func(c *C) {
				c.Handshake()
				c.Must(c.B.Shutdown(), "B shutdown")
				c.HoldDir(BtoA)
				c.Must(c.A.Shutdown(), "A shutdown")
				ack := c.NeedHeld(BtoA, 1)
				snap := c.Checkpoint(c.A)
				c.Drop(ack...)
				c.Hold(nil)
				c.Restore(c.A, snap)
				c.WaitPkt(AtoB, 5*time.Second, "FIN retransmission", finPkt)
				c.ExpectState(c.A, soccr.Close)
			}},
		&Case{ID: "H10", Title: "CLOSE after both FINs acked, restored in a fresh netns (migration)", Expect: "A' built through both FIN paths: state CLOSE, read -> EOF, write -> EPIPE; no packet reaches B",
			Run: func(c *C) {
				c.Handshake()
				c.Write(c.A, "bye")
				c.ExpectRead(c.B, "bye")
				c.Must(c.A.Shutdown(), "A shutdown")
				c.Must(c.B.Shutdown(), "B shutdown")
				c.ExpectState(c.A, soccr.Close)
				c.ExpectEOF(c.A)
				snap := c.Checkpoint(c.A)
				if snap.State != soccr.Close || snap.InqLen != 0 || snap.OutqLen != 0 {
					c.Snapf("dump %v inq %d outq %d, want CLOSE 0 0", snap.State, snap.InqLen, snap.OutqLen)
				}
				// The original's TIME_WAIT sock holds the 4-tuple in A's netns (H17): restore
				// where the process migrated to.
				c.Must(c.ReplaceSide(A), "replace A's netns")
				// The fake FIN|ACK moves snd_wl1 to its own seq: the re-dump differs there only,
				// and a CLOSE socket never sends again (harmless).
				c.Allow("redump")
				c.Restore(c.A, snap)
				c.ExpectState(c.A, soccr.Close)
				c.ExpectEOF(c.A)
				if _, err := unix.Write(c.A.FD(), []byte("x")); !errors.Is(err, unix.EPIPE) {
					c.Fatalf("write on restored CLOSE socket: %v, want EPIPE", err)
				}
			}},
		&Case{ID: "H17", Title: "CLOSE restored beside the original's TIME_WAIT sock (same netns)", Expect: "connect() in repair mode fails with EADDRNOTAVAIL: the TIME_WAIT minisock owns the 4-tuple and SK_FORCE_REUSE only covers bind()",
			Run: func(c *C) {
				c.Handshake()
				c.Must(c.A.Shutdown(), "A shutdown")
				c.Must(c.B.Shutdown(), "B shutdown")
				c.ExpectState(c.A, soccr.Close)
				snap := c.Checkpoint(c.A)
				err := c.Lab.Restore(c.A, snap)
				// libsoccr reports errno as text ("Cannot assign requested address").
				if !errors.Is(err, unix.EADDRNOTAVAIL) && (err == nil || !strings.Contains(strings.ToLower(err.Error()), unix.EADDRNOTAVAIL.Error())) {
					c.Fatalf("restore beside TIME_WAIT: %v, want EADDRNOTAVAIL", err)
				}
				c.A.Closed = true
			}},
		&Case{ID: "H11", Title: "CLOSE after RST with unread data", Expect: "libsoccr cannot tell RST from FIN: dumped as CLOSE with the 6 unread bytes; A' returns them, then EOF (not ECONNRESET)",
			Run: func(c *C) {
				c.Handshake()
				c.Allow("rst")    // B's abortive close is the case's own action
				c.Allow("redump") // snd_wl1 moves to the fake FIN's seq (see H10)
				c.Write(c.B, "unread")
				c.Must(unix.SetsockoptLinger(c.B.FD(), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}), "linger")
				c.B.Close()
				c.ExpectState(c.A, soccr.Close)
				snap := c.Checkpoint(c.A)
				if snap.State != soccr.Close || snap.InqLen != 6 || snap.OutqLen != 0 {
					c.Snapf("dump %v inq %d outq %d, want CLOSE 6 0", snap.State, snap.InqLen, snap.OutqLen)
				}
				c.Restore(c.A, snap)
				data, eof, err := c.A.Read()
				if string(data) != "unread" || !eof || err != nil {
					c.Fatalf("after restore read %q eof=%v err=%v, want \"unread\" then EOF", data, eof, err)
				}
			}},
		&Case{ID: "H12", Title: "FIN_WAIT1 with crossing data+FIN from B (all held)", Expect: "A' -> CLOSING when B's FIN arrives before the ACK of A's FIN", KernelDependent: true,
			Run: func(c *C) {
				c.Handshake()
				c.HoldAll()
				c.Must(c.A.Shutdown(), "A shutdown")
				c.Write(c.B, "crossing")
				c.Must(c.B.Shutdown(), "B shutdown")
				fa, fb := c.HeldIn(AtoB), c.HeldIn(BtoA)
				snap := c.Checkpoint(c.A)
				c.Observe("dump %v", snap.State)
				c.Hold(nil)
				c.Restore(c.A, snap)
				c.Deliver(fb...)
				c.Observe("A' after B's data+FIN: %v", c.A.State())
				c.Deliver(fa...)
				c.Settle()
				c.ExpectRead(c.A, "crossing")
				c.Observe("A' %v, B %v", c.A.State(), c.B.State())
			}},
		&Case{ID: "H13", Title: "CLOSE_WAIT restored with the fake FIN off by one", Expect: "A' does not reach CLOSE_WAIT: the state check after restore detects it",
			Opts: Options{Faults: &soccr.Faults{FinSeqDelta: 1}},
			Run: func(c *C) {
				c.Allow("redump", "ack") // A' acks the misplaced fake FIN: beyond what B sent
				c.Handshake()
				c.Must(c.B.Shutdown(), "B shutdown")
				snap := c.Checkpoint(c.A)
				c.Restore(c.A, snap)
				if st := c.A.State(); st == soccr.CloseWait {
					c.Fatalf("A' reached CLOSE_WAIT despite the bad FIN")
				}
				c.Event("detected: A' in %v", c.A.State())
				c.Allow("incomplete")
			}},
		&Case{ID: "H14", Title: "FIN_WAIT1, empty send queue, non-empty recv queue", Expect: "hypothesis: the FIN is transmitted during restore (REPAIR_QUEUE is RECV at shutdown)", KernelDependent: true,
			Run: func(c *C) {
				c.Handshake()
				c.Write(c.B, "unread")
				c.HoldDir(AtoB)
				c.Must(c.A.Shutdown(), "A shutdown")
				fin := c.NeedHeld(AtoB, 1)
				snap := c.Checkpoint(c.A)
				c.Drop(fin...)
				n0 := len(c.Trace())
				c.Hold(nil)
				c.Restore(c.A, snap)
				during := 0
				for _, l := range c.Trace()[n0:] {
					if len(l) > 8 && l[:8] == "lockdrop" {
						during++
					}
				}
				c.Observe("packets emitted while restoring: %d", during)
				c.ExpectRead(c.A, "unread")
				if !c.B.in.eof {
					c.WaitFor(3*time.Second, finPkt)
				}
				_, eof, _ := c.B.Read()
				c.Observe("B EOF %v, A' %v", eof, c.A.State())
			}},
	)
}
