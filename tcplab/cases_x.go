package tcplab

import (
	"fmt"
	"time"

	"github.com/criukit/criukit/soccr"
	"golang.org/x/sys/unix"
)

// Family X: the same round trip under asymmetric connection parameters, so that a swap of
// snd/rcv wscale, a lost MSS clamp, or options restored for the wrong side change what the
// wire shows. Each case dumps A with data in both queues (B's bytes unread at A, A's bytes in
// flight and dropped), restores it, and then moves a bulk transfer both ways. The wire oracles
// (wire.go) judge every packet; bulk() also requires full-sized segments after the restore.

// xRoundTrip is the shared scenario; dumpB also checkpoints and restores B (both directions of
// the asymmetry restored at once).
func xRoundTrip(c *C, dumpB bool) {
	c.Handshake()
	inq := pattern("b-unread-", 3000)
	c.Write(c.B, inq)
	c.HoldDir(AtoB)
	out := pattern("a-flight-", 2500)
	c.Write(c.A, out)
	held := c.HeldIn(AtoB)
	sa := c.Checkpoint(c.A)
	if sa.InqLen != 3000 || sa.OutqLen != 2500 {
		c.Snapf("dump inq %d outq %d, want 3000 2500", sa.InqLen, sa.OutqLen)
	}
	c.Event("A dumped: wscale snd %d rcv %d, mss %d, opts %#x", sa.SndWscale, sa.RcvWscale, sa.MssClamp, sa.OptMask)
	var sb *soccr.Snapshot
	if dumpB {
		sb = c.Checkpoint(c.B)
	}
	c.Drop(held...)
	if dumpB { // A's probe would meet no socket at B (RST): hold until both exist
		c.HoldAll()
		c.Restore(c.A, sa)
		c.Restore(c.B, sb)
		c.Hold(nil)
		c.Deliver(c.Held()...)
	} else {
		c.Hold(nil)
		c.Restore(c.A, sa)
	}
	c.ExpectRead(c.A, inq)
	c.ReadAll(c.B, 2500, 5*time.Second)
	c.bulk(c.A, 9000)
	c.bulk(c.B, 9000)
}

func pattern(tag string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = tag[i%len(tag)] ^ byte(i/len(tag)%7)
	}
	return string(b)
}

// bulk writes n bytes from s after a restore, reads them at the peer, and requires that s
// used full-sized segments: min(MSS the peer announced, s's own TCP_MAXSEG) minus 12 bytes
// of timestamp option when negotiated. A restore that loses the MSS clamp (536) or takes
// the wrong side's MSS shows here.
func (c *C) bulk(s *Sock, n int) {
	me := s.Side
	n0 := c.n
	data := pattern(fmt.Sprintf("bulk-%s-", sideName[me]), n)
	c.Write(s, data)
	peer := []*Sock{c.B, c.A}[me]
	if got := c.ReadAll(peer, n, 5*time.Second); string(got) != data {
		c.Fatalf("bulk from %s differs", sideName[me])
	}
	want := c.wire[1-me].mss
	if m := c.o.SideMSS[me]; m > 0 && m < want {
		want = m
	}
	if c.wire[0].ts && c.wire[1].ts {
		want -= 12
	}
	largest := 0
	for _, p := range c.packetsSince(n0) {
		if int(p.Dir) == me && p.Len > largest {
			largest = p.Len
		}
	}
	if want > 0 && largest != want {
		c.Fatalf("%s's largest segment after restore: %d bytes, want %d (full-sized)", sideName[me], largest, want)
	}
}

// closingCrossed: both ends shut down with A's data and both FINs held; B's FIN reaches A (CLOSING),
// A is dumped, its own data and FIN are lost and the restored A' must send them again (X11, Q03).
func closingCrossed(c *C) {
	c.Handshake()
	c.HoldAll()
	c.Write(c.A, "crossing-data")
	c.Must(c.A.Shutdown(), "A shutdown")
	c.Must(c.B.Shutdown(), "B shutdown")
	fb := c.NeedHeld(BtoA, 1)
	fa := c.HeldIn(AtoB)
	c.Deliver(fb...)
	c.ExpectState(c.A, soccr.Closing)
	snap := c.Checkpoint(c.A)
	c.Drop(fa...)
	c.Drop(c.HeldIn(AtoB)...)
	c.Hold(nil)
	c.Restore(c.A, snap)
	c.ExpectState(c.A, soccr.Closing)
	c.ReadAll(c.B, 13, 5*time.Second)
	c.ExpectEOF(c.B)
	c.ExpectEOF(c.A)
}

func init() {
	register(
		&Case{ID: "X01", TraceVaries: true, Title: "asymmetric wscale: A's buffer 16 KiB, B's 1 MiB", Expect: "A' keeps both scales (snd != rcv): windows read per side, no data beyond a window, no retraction, full segments",
			Opts: Options{SideBuf: [2]int{16384, 1 << 20}}, Run: func(c *C) { xRoundTrip(c, false) }},
		&Case{ID: "X02", TraceVaries: true, Title: "asymmetric wscale reversed (A 1 MiB, B 16 KiB), timestamps on", Expect: "as X01; TS on every segment, clock continues",
			Opts: Options{SideBuf: [2]int{1 << 20, 16384}, Timestamps: true}, Run: func(c *C) { xRoundTrip(c, false) }},
		&Case{ID: "X03", TraceVaries: true, Title: "asymmetric MSS (A 536, B 1200), SACK off", Expect: "A' keeps sending 536-byte segments, B 1200... no SACK blocks",
			Opts: Options{SideMSS: [2]int{536, 1200}, NoSack: true}, Run: func(c *C) { xRoundTrip(c, false) }},
		&Case{ID: "X04", TraceVaries: true, Title: "asymmetric MSS (A 1200, B 700), timestamps on, no window scaling", Expect: "A' segments <= 700-12; no wscale; TS continue",
			Opts: Options{SideMSS: [2]int{1200, 700}, Timestamps: true, NoWscale: true, Buf: 32768}, Run: func(c *C) { xRoundTrip(c, false) }},
		&Case{ID: "X05", TraceVaries: true, Title: "both sides dumped with asymmetric wscale and MSS", Expect: "both restored: each keeps its own scale and MSS",
			Opts: Options{SideBuf: [2]int{1 << 20, 16384}, SideMSS: [2]int{1000, 1400}, Timestamps: true}, Run: func(c *C) { xRoundTrip(c, true) }},
		&Case{ID: "X06", TraceVaries: true, Title: "dump with an ACK still owed (delayed ACK: rcv_wup != rcv_nxt)", Expect: "the dump catches rcv_wup behind rcv_nxt; A' restores both; its probe is out of window so B retransmits at its RTO; no duplicate, no retraction",
			Opts: Options{NoQuickack: true}, Run: func(c *C) {
				c.Handshake()
				c.Must(unix.SetsockoptInt(c.A.FD(), unix.SOL_TCP, unix.TCP_QUICKACK, 0), "TCP_QUICKACK 0")
				c.Write(c.B, "owed-ack")
				snap := c.Checkpoint(c.A)
				if snap.RcvWup == snap.InqSeq {
					c.Snapf("no pending ACK at dump (rcv_wup == rcv_nxt)")
				}
				c.Event("dump: rcv_nxt - rcv_wup = %d", snap.InqSeq-snap.RcvWup)
				c.Restore(c.A, snap)
				c.ExpectRead(c.A, "owed-ack")
				c.WaitPkt(BtoA, 3*time.Second, "B's retransmission", dataPkt)
				if u := c.B.Info().Unacked; u != 0 {
					c.Fatalf("B still has %d unacked segments", u)
				}
				c.bulk(c.A, 5000)
			}},
		&Case{ID: "X07", Title: "SACK after restore: out-of-order data reaches A'", Expect: "A' answers the hole with SACK blocks (sack_ok restored); B fills the hole; stream intact",
			Run: func(c *C) {
				c.Handshake()
				snap := c.Checkpoint(c.A)
				c.Restore(c.A, snap)
				c.HoldDir(BtoA)
				all := c.sendSegs(c.B, 3, 500)
				segs := c.NeedHeld(BtoA, 3)
				n0 := c.n
				c.Deliver(segs[2])
				sack := false
				for _, p := range c.packetsSince(n0) {
					if p.Dir == AtoB && len(p.Sack) > 0 {
						sack = true
					}
				}
				if !sack {
					c.Fatalf("A' answered out-of-order data without SACK blocks")
				}
				c.Hold(nil)
				c.Deliver(segs[0], segs[1])
				c.ExpectRead(c.A, all)
			}},
		&Case{ID: "X08", TraceVaries: true, Title: "CLOSE_WAIT with data in both queues, asymmetric wscale", Expect: "fake FIN restores CLOSE_WAIT; A' returns the data, EOF, its reply arrives in full-sized segments",
			Opts: Options{SideBuf: [2]int{16384, 1 << 20}}, Run: func(c *C) {
				c.Handshake()
				c.Write(c.B, "before-fin")
				c.Must(c.B.Shutdown(), "B shutdown")
				c.HoldDir(AtoB)
				c.Write(c.A, "late")
				held := c.NeedHeld(AtoB, 1)
				snap := c.Checkpoint(c.A)
				c.Drop(held...)
				c.Hold(nil)
				c.Restore(c.A, snap)
				c.ExpectState(c.A, soccr.CloseWait)
				c.ExpectRead(c.A, "before-fin")
				c.ExpectEOF(c.A)
				c.ReadAll(c.B, 4, 5*time.Second)
				c.bulk(c.A, 6000)
				c.A.Close()
				c.ExpectEOF(c.B)
			}},
		&Case{ID: "X09", TraceVaries: true, Title: "FIN_WAIT2 with B's data unread at A, asymmetric MSS", Expect: "A' FIN_WAIT2 returns the data; B's later data+FIN arrive; B's segments stay full-sized",
			Opts: Options{SideMSS: [2]int{600, 1300}}, Run: func(c *C) {
				c.Handshake()
				c.Write(c.B, "unread")
				c.Must(c.A.Shutdown(), "A shutdown")
				c.ExpectState(c.A, soccr.FinWait2)
				snap := c.Checkpoint(c.A)
				c.Restore(c.A, snap)
				c.ExpectState(c.A, soccr.FinWait2)
				c.ExpectRead(c.A, "unread")
				c.bulk(c.B, 5000)
				c.Must(c.B.Shutdown(), "B shutdown")
				c.ExpectEOF(c.A)
			}},
		&Case{ID: "X10", Title: "LAST_ACK with unacked data+FIN dropped, timestamps on", Expect: "A' retransmits data then FIN at their exact offsets; TS continues; B reads all then EOF",
			Opts: Options{Timestamps: true}, Run: func(c *C) {
				c.Handshake()
				c.Must(c.B.Shutdown(), "B shutdown")
				c.HoldDir(AtoB)
				c.Write(c.A, "final-words")
				c.Must(c.A.Shutdown(), "A shutdown")
				held := c.HeldIn(AtoB)
				snap := c.Checkpoint(c.A)
				if snap.State != soccr.LastAck || snap.OutqLen != 11 {
					c.Snapf("dump %v outq %d, want LAST_ACK 11", snap.State, snap.OutqLen)
				}
				c.Drop(held...)
				c.Hold(nil)
				c.Restore(c.A, snap)
				c.ReadAll(c.B, 11, 5*time.Second)
				if !c.B.in.eof {
					c.WaitPkt(AtoB, 5*time.Second, "FIN", finPkt)
				}
				c.ExpectEOF(c.B)
			}},
		&Case{ID: "X11", TraceVaries: true, Title: "CLOSING with A's data unacked", Expect: "A' CLOSING; retransmits its data with the FIN; both end closed",
			Opts: Options{Timestamps: true}, Run: closingCrossed},
		&Case{ID: "X13", Title: "one unread byte in A's receive queue", Expect: "A' returns exactly that byte (the smallest queue soccr must not skip)",
			Run: func(c *C) {
				c.Handshake()
				c.Write(c.B, "1")
				snap := c.Checkpoint(c.A)
				if snap.InqLen != 1 {
					c.Snapf("inq_len %d, want 1", snap.InqLen)
				}
				c.Restore(c.A, snap)
				c.ExpectRead(c.A, "1")
				c.Write(c.B, "2")
				c.ExpectRead(c.A, "2")
			}},
		&Case{ID: "X15", TraceVaries: true, Title: "one unread byte in A's receive queue, its ACK still owed (delayed ACK)",
			Expect: "A' returns that byte at once after the restore (it is in the restored queue, not waiting for B's retransmission); B's RTO retransmission of it is then a duplicate, not delivered twice",
			Opts:   Options{NoQuickack: true}, Run: func(c *C) {
				c.Handshake()
				c.Must(unix.SetsockoptInt(c.A.FD(), unix.SOL_TCP, unix.TCP_QUICKACK, 0), "TCP_QUICKACK 0")
				c.Write(c.B, "1")
				snap := c.Checkpoint(c.A)
				if snap.InqLen != 1 || snap.RcvWup == snap.InqSeq {
					c.Snapf("inq_len %d, rcv_nxt-rcv_wup %d: want 1 byte with its ACK owed", snap.InqLen, snap.InqSeq-snap.RcvWup)
				}
				c.Restore(c.A, snap)
				c.ExpectRead(c.A, "1")
				c.WaitPkt(BtoA, 3*time.Second, "B's retransmission", dataPkt)
				c.Write(c.B, "2")
				c.ExpectRead(c.A, "2")
			}},
		&Case{ID: "X14", TraceVaries: true, Title: "zero window at B, A' left alone until its persist timer fires", Expect: "A' restores snd_wnd=0 (not max_window): pushed before B's answer to the REPAIR_OFF probe arrives, it sends no data beyond B's zero window; when B reads, all data flows",
			Opts: Options{Buf: 16384}, Run: func(c *C) {
				c.Handshake()
				n := c.A.Fill(4096)
				snap := c.Checkpoint(c.A)
				if snap.UnsqLen == 0 {
					c.Snapf("no unsent data at dump")
				}
				// B's answer to the REPAIR_OFF probe would overwrite A's snd_wnd: hold it, so A'
				// acts on the restored window alone.
				c.HoldDir(BtoA)
				c.Restore(c.A, snap)
				// CRIU restores TCP_NODELAY after the TCP state; setting it pushes the pending
				// frames: with the window as B advertised it (0) nothing but probes may leave.
				c.Must(unix.SetsockoptInt(c.A.FD(), unix.SOL_TCP, unix.TCP_NODELAY, 1), "TCP_NODELAY")
				c.Settle()
				held := c.Held()
				c.Hold(nil)
				c.Deliver(held...)
				c.Run(1500 * time.Millisecond) // RTO = 1 s: the persist timer fires at least once
				c.ReadAll(c.B, n, 10*time.Second)
			}},
		&Case{ID: "X12", Title: "libsoccr's order: mss_cache left at the connect-time default (peer MSS 700)", Expect: "kernel bug class, recorded as expected: v4 A' sends 536-byte segments (undersized); v6 A' sends 1220-byte segments, beyond the 700 the peer announced (RFC 9293 violation); soccr's TCP_MAXSEG-before-connect avoids both (X04)",
			Opts: Options{SideMSS: [2]int{0, 700}, LibsoccrMSS: true}, Run: func(c *C) {
				c.Allow("opts")
				c.Handshake()
				snap := c.Checkpoint(c.A)
				c.Restore(c.A, snap)
				n0 := c.n
				data := pattern("x12-", 4000)
				c.Write(c.A, data)
				c.ReadAll(c.B, len(data), 5*time.Second)
				largest := 0
				for _, p := range c.packetsSince(n0) {
					if p.Dir == AtoB && p.Len > largest {
						largest = p.Len
					}
				}
				c.Event("largest segment of A' %d", largest)
				want := map[Family]int{IPv4: 536, IPv6: 1220}[c.o.Family]
				if largest != want {
					c.Fatalf("A' largest segment %d, want the connect-time default %d", largest, want)
				}
				if c.o.Family == IPv6 && c.Tripped("opts") == 0 {
					c.Fatalf("the opts oracle missed segments beyond the peer's MSS")
				}
			}},
	)
}
