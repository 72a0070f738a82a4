package tcplab

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	register(
		&Case{ID: "W03", Title: "A's rwnd retracted (memory squeeze) with B's data in flight within the max window",
			Expect:          "6.17+: A' drops the in-flight data after restore (PR #3042); a kernel keeping the max right edge (RFC 7323 rcv_mwnd_seq) accepts it; B retransmits, stream intact; recorded",
			KernelDependent: true,
			Run: func(c *C) {
				c.Allow("retract", "drop") // the retraction (and the drop it causes) is the subject of the case
				c.Handshake()
				c.HoldDir(BtoA)
				all := c.sendSegs(c.B, 8, 1000)
				segs := c.NeedHeld(BtoA, 8)
				c.Deliver(segs[:5]...) // A queues 5000 bytes (unread), its window stays open
				edge := c.redge[A]
				// The squeeze: A's receive buffer shrinks below what it holds, so the next
				// in-order segment is dropped (TCPRcvQDrop) and A advertises a zero window
				// at rcv_nxt (ICSK_ACK_NOMEM): the right edge retracts.
				c.Must(unix.SetsockoptInt(c.A.FD(), unix.SOL_SOCKET, unix.SO_RCVBUF, 1), "shrink SO_RCVBUF")
				c.Event("A SO_RCVBUF -> minimum")
				c.Deliver(segs[5])
				if !c.retracted[A] {
					c.Fatalf("A's right edge did not retract (edge %d, now %d)", edge-c.isn[B], c.redge[A]-c.isn[B])
				}
				if d := c.Netstat(A)["TcpExtTCPRcvQDrop"]; d != 1 {
					c.Fatalf("TCPRcvQDrop at A %d, want 1", d)
				}
				// segs 5..7: sent inside the window A advertised, now beyond its right edge.
				c.Hold(func(p *Pkt) bool { return p.Dir == BtoA && p.Len > 0 })
				snap := c.Checkpoint(c.A)
				c.Event("dump rcv_wnd=%d rcv_wup=%d inq=%d", snap.RcvWnd, snap.RcvWup-c.isn[B], snap.InqLen)
				// SO_RCVBUF is restored as dumped (the squeeze persists): A's REPAIR_OFF probe
				// advertises a zero window again, so segs 5..7 meet the retracted edge.
				c.Restore(c.A, snap)
				n0 := c.n
				nsBefore := c.Netstat(A)
				c.Deliver(segs[5:]...)
				var grew bool
				for _, p := range c.packetsSince(n0) {
					if p.Dir == AtoB && int32(p.Ack-segs[5].Seq) > 0 {
						grew = true
					}
				}
				ns := c.Netstat(A)
				var changed []string
				for k, v := range ns {
					if v != nsBefore[k] {
						changed = append(changed, fmt.Sprintf("%s +%d", k, v-nsBefore[k]))
					}
				}
				sort.Strings(changed)
				c.Note("A' counters on delivery: %s", strings.Join(changed, ", "))
				c.Observe("A' accepted the in-flight data: %v; dropped beyond the window (TcpExtBeyondWindow): %d of 3",
					grew, ns["TcpExtBeyondWindow"]-nsBefore["TcpExtBeyondWindow"])
				// The squeeze ends: B's retransmissions (RTO) then fill the reopened window.
				c.Must(unix.SetsockoptInt(c.A.FD(), unix.SOL_SOCKET, unix.SO_RCVBUF, c.o.Buf), "restore SO_RCVBUF")
				c.Event("A' SO_RCVBUF -> %d", c.o.Buf)
				c.Hold(nil)
				if got := c.ReadAll(c.A, len(all), 10*time.Second); string(got) != all {
					c.Fatalf("stream differs")
				}
			}},
	)
}
