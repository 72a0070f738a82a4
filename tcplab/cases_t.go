package tcplab

import (
	"github.com/criukit/criukit/internal/nsrun"
	"strings"
	"time"

	"github.com/criukit/criukit/soccr"
)

func init() {
	register(
		&Case{ID: "T01", Title: "timestamps on, checkpoint right after a send", Expect: "A' TSval >= last sent - 1; no PAWS drop at B",
			Opts: Options{Timestamps: true},
			Run: func(c *C) {
				c.Handshake()
				c.Write(c.A, "ts-1")
				c.ExpectRead(c.B, "ts-1")
				c.Write(c.B, "ts-2")
				snap := c.Checkpoint(c.A)
				if snap.OptMask&soccr.OptTimestamps == 0 {
					c.Snapf("opt_mask %#x without timestamps", snap.OptMask)
				}
				c.Restore(c.A, snap)
				c.ExpectRead(c.A, "ts-2")
				c.Write(c.A, "ts-3")
				c.ExpectRead(c.B, "ts-3")
				c.Write(c.B, "ts-4")
				c.ExpectRead(c.A, "ts-4")
			}},
		&Case{ID: "T03", TraceVaries: true, Title: "restored TCP_TIMESTAMP 1 s lower (older clock)", Expect: "B's PAWS drops A' segments (TcpExtPAWSEstab > 0) and B reads nothing: RFC 7323 makes the drop mandatory",
			Opts: Options{Timestamps: true, Faults: &soccr.Faults{TimestampDelta: -1000}},
			Run: func(c *C) {
				c.Allow("ts", "paws", "incomplete", "redump")
				c.Handshake()
				c.Write(c.A, "before")
				c.ExpectRead(c.B, "before")
				snap := c.Checkpoint(c.A)
				c.Restore(c.A, snap)
				c.Write(c.A, "after")
				got, _, _ := c.B.Read()
				paws := c.Netstat(B)["TcpExtPAWSEstab"]
				if len(got) != 0 || paws == 0 {
					c.Fatalf("B read %q, PAWSEstab at B %d: want nothing read and a PAWS drop", got, paws)
				}
				if c.Tripped("ts") == 0 {
					c.Fatalf("the ts oracle did not flag the TSval going back")
				}
			}},
		&Case{ID: "T05", Title: "restored TCP_TIMESTAMP with bit 0 set (6.7+: usec TS flag)", Expect: "the socket continues from the dumped value but its TS clock ticks per microsecond: the ts oracle flags > 100 ticks/ms; B accepts (forward jumps pass PAWS)",
			Opts: Options{Timestamps: true, Faults: &soccr.Faults{TimestampDelta: 1}},
			Run: func(c *C) {
				c.Allow("ts", "redump")
				c.Handshake()
				c.Write(c.A, "before")
				c.ExpectRead(c.B, "before")
				snap := c.Checkpoint(c.A)
				if snap.Timestamp&1 != 0 {
					c.Snapf("dumped timestamp %d is odd: the lab's sockets use ms timestamps", snap.Timestamp)
				}
				c.Restore(c.A, snap)
				last, t0 := c.lastTS[A], time.Now()
				c.Run(30 * time.Millisecond)
				c.Write(c.A, "after")
				c.ExpectRead(c.B, "after")
				rate := float64(c.lastTS[A]-last) / (float64(time.Since(t0).Microseconds()) / 1000)
				c.Note("TS rate after restore: %.0f ticks/ms", rate)
				if rate < 100 {
					c.Fatalf("TS clock after restore ticks %.0f/ms, want a usec clock (>= 100/ms)", rate)
				}
				if c.Tripped("ts") == 0 {
					c.Fatalf("the ts oracle did not flag the usec clock")
				}
			}},
		&Case{ID: "T09", Title: "restored TCP_TIMESTAMP 1e9 ahead (even: still a ms clock)", Expect: "PAWS accepts a forward jump < 2^31, so B reads the data; the lab's ts oracle must flag the jump",
			Opts: Options{Timestamps: true, Faults: &soccr.Faults{TimestampDelta: 1000000000}},
			Run: func(c *C) {
				c.Allow("ts", "redump")
				c.Handshake()
				c.Write(c.A, "before")
				c.ExpectRead(c.B, "before")
				snap := c.Checkpoint(c.A)
				c.Restore(c.A, snap)
				c.Write(c.A, "after")
				c.ExpectRead(c.B, "after")
				if c.Tripped("ts") == 0 {
					c.Fatalf("a TSval jump of 1e9 was not flagged")
				}
			}},
		&Case{ID: "T04", Title: "TSecr is 0 in A's first segment after restore (ts_recent lost)", Expect: "B accepts it",
			Opts: Options{Timestamps: true},
			Run: func(c *C) {
				c.Handshake()
				c.Write(c.B, "x")
				c.ExpectRead(c.A, "x")
				snap := c.Checkpoint(c.A)
				n0 := c.n
				c.Restore(c.A, snap)
				c.Write(c.A, "first")
				c.ExpectRead(c.B, "first")
				for _, p := range c.packetsSince(n0) {
					if p.Dir == AtoB && !strings.HasPrefix(c.lineOf(p), "lockdrop") {
						if !p.HasTS || p.TSecr != 0 {
							c.Fatalf("first segment after restore: TS %v ecr %d, want ecr 0", p.HasTS, p.TSecr)
						}
						return
					}
				}
				c.Fatalf("no segment seen")
			}},
		&Case{ID: "R07", Title: "duplicated packet across the restore boundary", Expect: "idempotent: A' reads the data once",
			Run: func(c *C) {
				c.Handshake()
				c.HoldDir(BtoA)
				c.Write(c.B, "dup-me")
				held := c.NeedHeld(BtoA, 1)
				c.Deliver(held...)
				snap := c.Checkpoint(c.A)
				c.Hold(nil)
				c.Restore(c.A, snap)
				c.Duplicate(held[0])
				c.ExpectRead(c.A, "dup-me")
				c.Write(c.A, "ok")
				c.ExpectRead(c.B, "ok")
			}},
		&Case{ID: "R08", Title: "segment injected while A' is still in repair mode", Expect: "processed; the ACK emitted during repair hits the lock; B retransmits or A' acks later",
			Run: func(c *C) {
				c.Handshake()
				c.HoldDir(BtoA)
				c.Write(c.B, "during-repair")
				held := c.NeedHeld(BtoA, 1)
				snap := c.Checkpoint(c.A)
				c.Hold(nil)
				fd := -1
				c.Must(nsrun.Do(c.sides[A].ns, func() error { var err error; fd, err = soccr.NewSocket(snap); return err }), "socket")
				c.A.close()
				c.A.fd = fd
				c.lock[A] = true
				c.Must(soccr.Restore(fd, snap, &soccr.RestoreOptions{Injector: injector{c.Lab, A}}), "restore")
				c.Deliver(held...)
				c.lock[A] = false
				c.Must(soccr.Resume(fd, true), "resume")
				c.Settle()
				c.ExpectRead(c.A, "during-repair")
				c.WaitFor(1500*time.Millisecond, func(p *Pkt) bool { return p.Dir == BtoA && p.Len > 0 })
				if u := c.B.Info().Unacked; u != 0 {
					c.Fatalf("B has %d unacked", u)
				}
			}},
		&Case{ID: "R09", Title: "both checkpointed, all in-flight packets dropped", Expect: "each side retransmits its unacked data; streams intact",
			Run: func(c *C) {
				c.Handshake()
				c.HoldAll()
				c.Write(c.A, "from-a")
				c.Write(c.B, "from-b")
				held := c.Held()
				sa := c.Checkpoint(c.A)
				sb := c.Checkpoint(c.B)
				c.Drop(held...)
				c.Restore(c.A, sa)            // everything stays held until both exist (the lock of CRIU)
				c.Run(300 * time.Millisecond) // keep the two RTO timers apart: deterministic order
				c.Restore(c.B, sb)
				probes := c.Held()
				c.Hold(nil)
				c.Deliver(probes...)
				c.ReadAll(c.B, 6, 5*time.Second)
				c.ReadAll(c.A, 6, 5*time.Second)
			}},
		&Case{ID: "R10", Title: "both checkpointed, in-flight packets delivered after both restores", Expect: "accepted as normal traffic",
			Run: func(c *C) {
				c.Handshake()
				c.HoldAll()
				c.Write(c.A, "from-a")
				c.Write(c.B, "from-b")
				sa := c.Checkpoint(c.A)
				sb := c.Checkpoint(c.B)
				c.Restore(c.A, sa)
				c.Restore(c.B, sb)
				c.Hold(nil)
				c.Deliver(c.Held()...)
				c.ExpectRead(c.B, "from-a")
				c.ExpectRead(c.A, "from-b")
			}},
		&Case{ID: "P02", Title: "B restored first, A's old packets delivered to B' before A is restored", Expect: "B' accepts and ACKs; A's later restore frees its rtx queue with the held ACK",
			Run: func(c *C) {
				c.Handshake()
				c.HoldAll()
				c.Write(c.A, "old-a")
				toB := c.NeedHeld(AtoB, 1)
				sa := c.Checkpoint(c.A)
				sb := c.Checkpoint(c.B)
				c.Restore(c.B, sb)
				c.Deliver(toB...)
				c.ExpectRead(c.B, "old-a")
				acks := c.HeldIn(BtoA)
				c.Hold(nil)
				c.Restore(c.A, sa)
				c.Deliver(acks...)
				c.Settle()
				if u := c.A.Info().Unacked; u != 0 {
					c.Fatalf("A' has %d unacked after B's ACK", u)
				}
			}},
		&Case{ID: "P03", Title: "FIN_WAIT1 / CLOSE_WAIT both dumped (FIN delivered, ACK held)", Expect: "both restored coherently; B' closes; A' -> TIME_WAIT",
			Run: func(c *C) {
				c.Handshake()
				c.HoldDir(BtoA)
				c.Must(c.A.Shutdown(), "A shutdown")
				ack := c.NeedHeld(BtoA, 1)
				sa := c.Checkpoint(c.A)
				sb := c.Checkpoint(c.B)
				if sa.State != soccr.FinWait1 || sb.State != soccr.CloseWait {
					c.Fatalf("states %v/%v", sa.State, sb.State)
				}
				c.Hold(nil)
				c.Restore(c.A, sa)
				c.Restore(c.B, sb)
				c.Deliver(ack...)
				c.ExpectState(c.A, soccr.FinWait2)
				c.ExpectEOF(c.B)
				c.B.Close()
				c.ExpectEOF(c.A)
				c.ExpectState(c.A, soccr.Close)
			}},
		&Case{ID: "P04", Title: "FIN_WAIT2 / CLOSE_WAIT both dumped", Expect: "B' closes -> LAST_ACK; A' -> TIME_WAIT",
			Run: func(c *C) {
				c.Handshake()
				c.Write(c.B, "pending")
				c.Must(c.A.Shutdown(), "A shutdown")
				sa := c.Checkpoint(c.A)
				sb := c.Checkpoint(c.B)
				c.Restore(c.A, sa)
				c.Restore(c.B, sb)
				c.ExpectEOF(c.B)
				c.B.Close()
				c.ExpectRead(c.A, "pending")
				c.ExpectEOF(c.A)
			}},
		&Case{ID: "P01", Title: "both dumped while everything is held, restored A then B", Expect: "no RST; REPAIR_OFF probes cross; streams intact",
			Run: func(c *C) {
				c.Handshake()
				c.Write(c.A, "a1")
				c.Write(c.B, "b1")
				c.HoldAll()
				c.Write(c.A, "a2")
				sa := c.Checkpoint(c.A)
				sb := c.Checkpoint(c.B)
				c.Restore(c.A, sa)
				c.Restore(c.B, sb)
				c.Hold(nil)
				c.Deliver(c.Held()...)
				c.ExpectRead(c.B, "a1a2")
				c.ExpectRead(c.A, "b1")
			}},
	)
}
