package tcplab

import (
	"errors"
	"runtime"
	"strings"
	"time"

	"github.com/criukit/criukit/internal/nsrun"
	"github.com/criukit/criukit/soccr"
	"golang.org/x/sys/unix"
)

// Family K: kernel regressions of the last year, as cases. Each Expect says what a correct
// kernel does; the case fails when this kernel differs.

// withCaps runs f on a locked OS thread whose effective capabilities are only keep (the
// thread exits afterwards: its reduced credentials never leak into the Go runtime).
func withCaps(keep []uint, f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			ch <- err
			return
		}
		data[0].Effective, data[1].Effective = 0, 0
		for _, c := range keep {
			data[c/32].Effective |= 1 << (c % 32)
		}
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			ch <- err
			return
		}
		ch <- f()
	}()
	return <-ch
}

func init() {
	register(
		&Case{ID: "K01", Title: "TCP_REPAIR needs CAP_NET_ADMIN only, in every dumpable state (criu#2744: EPERM on 6.16.7)",
			Expect: "with only CAP_NET_ADMIN effective: TCP_REPAIR on/off works on ESTABLISHED, CLOSE_WAIT and FIN_WAIT2 sockets; without it: EPERM",
			Run: func(c *C) {
				c.Handshake()
				try := func(what string, caps []uint, want error) {
					err := withCaps(caps, func() error {
						if err := unix.SetsockoptInt(c.A.FD(), unix.SOL_TCP, 19, 1); err != nil {
							return err
						}
						return unix.SetsockoptInt(c.A.FD(), unix.SOL_TCP, 19, -1)
					})
					if !errors.Is(err, want) && !(want == nil && err == nil) {
						c.Fatalf("%s: TCP_REPAIR with caps %v: %v, want %v", what, caps, err, want)
					}
					c.Event("%s caps=%v: %v", what, caps, err)
				}
				try("ESTABLISHED", []uint{unix.CAP_NET_ADMIN}, nil)
				try("ESTABLISHED", nil, unix.EPERM)
				c.Must(c.B.Shutdown(), "B shutdown")
				c.ExpectState(c.A, soccr.CloseWait)
				try("CLOSE_WAIT", []uint{unix.CAP_NET_ADMIN}, nil)
				c.Must(c.A.Shutdown(), "A shutdown")
				try("after both FINs", []uint{unix.CAP_NET_ADMIN}, nil)
				c.ExpectEOF(c.A)
				c.ExpectEOF(c.B)
			}},
		&Case{ID: "K03", Title: "data delivered to the restored socket while it is still in repair mode",
			Expect: "accepted into the receive queue and ACKed while in repair (the ACK meets the network lock): input processing ignores tp->repair by design, CRIU's lock is what keeps packets out; A' reads it once after resume",
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
				c.restoring(A)
				c.lock[A] = true
				c.Must(soccr.Restore(fd, snap, &soccr.RestoreOptions{Injector: injector{c.Lab, A}}), "restore")
				n0 := len(c.Trace())
				c.Deliver(held...)
				inq, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
				c.Must(err, "SIOCINQ in repair")
				acked := 0
				for _, l := range c.Trace()[n0:] {
					if strings.HasPrefix(l, "lockdrop A>B") && strings.Contains(l, "ack=14") {
						acked++
					}
				}
				c.Event("in repair: SIOCINQ %d, ACKs of it emitted %d", inq, acked)
				if inq != 13 || acked == 0 {
					c.Fatalf("in repair: SIOCINQ %d (want 13), ACKs emitted %d (want > 0)", inq, acked)
				}
				c.lock[A] = false
				c.Must(soccr.Resume(fd, true), "resume")
				c.Settle()
				c.ExpectRead(c.A, "during-repair")
			}},
		&Case{ID: "K04", TraceVaries: true, Title: "unsent queue written before TCP_REPAIR_WINDOW is set (libsoccr's order), peer window small",
			Expect: "nothing is transmitted from the unsent tail while restoring beyond the peer's window: right after connect() in repair snd_wnd is 0 and the tail waits for REPAIR_OFF; after restore B reads every byte",
			Opts:   Options{SideBuf: [2]int{65536, 8192}},
			Run: func(c *C) {
				c.Handshake()
				n := c.A.Fill(4096)
				snap := c.Checkpoint(c.A)
				if snap.UnsqLen == 0 {
					c.Snapf("no unsent data at dump")
				}
				n0 := len(c.Trace())
				c.Restore(c.A, snap)
				during := 0
				for _, l := range c.Trace()[n0:] {
					if strings.HasPrefix(l, "lockdrop A>B") && !strings.Contains(l, "len=0 ") {
						during++
					}
				}
				c.Event("data segments emitted while restoring: %d", during)
				if during != 0 {
					c.Fatalf("%d data segments left A' while it was being restored (before the window was set)", during)
				}
				c.ReadAll(c.B, n, 10*time.Second)
			}},
	)
}
