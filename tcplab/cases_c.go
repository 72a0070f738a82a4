package tcplab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/criukit/criukit/internal/criurun"
	"golang.org/x/sys/unix"
)

// Family C: CRIU in the loop. Side A's socket is owned by a real process (Debian's python3, an
// upper-casing echo client) in A's namespace; `criu dump --tcp-established` and `criu restore`
// run inside that namespace (through nsenter) while the switch keeps owning every packet, so
// CRIU's own TCP path (its network lock, libsoccr, its restore order) is exercised with
// packets held in flight, deterministically.

const echoClient = `import socket
s = socket.create_connection((%q, %d))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while True:
    d = s.recv(65536)
    if not d:
        break
    s.sendall(d.upper())
`

// nsPath is a path to side s's netns usable by other processes.
func (l *Lab) nsPath(s int) string {
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(l.sides[s].ns))
}

// pumpWhile runs the switch until f (run in a goroutine) returns.
func (c *C) pumpWhile(f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	for {
		select {
		case err := <-done:
			c.Settle()
			return err
		default:
			c.Run(5 * time.Millisecond)
		}
	}
}

func pidGone(pid int) bool { return unix.Kill(pid, 0) != nil }

// criuDumpRestore runs criu dump --tcp-established of pid inside A's netns (no packet may leave A
// while it runs), reap (the dumped task must be gone before its pid is restored), then between
// (A's network locked, the task gone: drop or hold packets), then criu restore; it returns the
// restored pid. dumped is the trace event after the dump.
func (c *C) criuDumpRestore(criu string, pid int, imgs string, reap func(), dumped string, between func()) int {
	o := criurun.Opts{Criu: criu, ImagesDir: imgs, Netns: c.nsPath(A), Args: []string{"--tcp-established"}}
	n0 := len(c.Trace())
	c.Must(c.pumpWhile(func() error { return criurun.Dump(context.Background(), pid, o) }), "criu dump")
	reap()
	for _, l := range c.Trace()[n0:] {
		if strings.HasPrefix(l, "A>B") {
			c.Fatalf("a packet left A during the dump: %s", l)
		}
	}
	c.Event("%s", dumped)
	if between != nil {
		between()
	}
	var rpid int
	c.Must(c.pumpWhile(func() error {
		var err error
		rpid, err = criurun.Restore(context.Background(), o)
		return err
	}), "criu restore")
	c.Event("criu restore done")
	return rpid
}

func init() {
	register(
		&Case{ID: "C01", TraceVaries: true, Title: "CRIU dumps and restores a python3 echo client while B's data is in flight",
			Expect: "criu dump --tcp-established/restore inside A's netns: no packet leaves A while it is locked; B's held data, delivered after the restore, is echoed by the restored process; streams intact",
			Run: func(c *C) {
				criu, _, err := criurun.Find()
				c.Must(err, "find criu")
				py, err := exec.LookPath("/usr/bin/python3")
				c.Must(err, "python3")
				lfd, err := c.Listen()
				c.Must(err, "listen on B")
				defer unix.Close(lfd)
				cmd := exec.Command("nsenter", "--net="+c.nsPath(A), "--", py, "-c", fmt.Sprintf(echoClient, c.Addr(B).String(), PortB))
				cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
				c.Must(cmd.Start(), "start the echo client")
				pid := cmd.Process.Pid
				defer func() {
					if !pidGone(pid) {
						unix.Kill(pid, unix.SIGKILL)
					}
					cmd.Wait()
				}()
				var nfd int
				for end := time.Now().Add(10 * time.Second); ; {
					nfd, _, err = unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
					if err == nil {
						break
					}
					if time.Now().After(end) {
						c.Fatalf("the echo client did not connect: %v", err)
					}
					c.Run(20 * time.Millisecond)
				}
				c.B = c.newSock(B, nfd)
				c.Event("echo client connected")
				echo := func(s string) { // what the client will write, known before B writes
					c.streams[A].written = append(c.streams[A].written, strings.ToUpper(s)...)
					c.Write(c.B, s)
				}
				echo("hello ")
				got := c.ReadAll(c.B, 6, 5*time.Second)
				if string(got) != "HELLO " {
					c.Fatalf("echo %q", got)
				}
				// B's next data stays in flight while A's process is dumped and restored.
				c.HoldDir(BtoA)
				echo("in-flight ")
				held := c.NeedHeld(BtoA, 1)
				dir, err := os.MkdirTemp("", "criukit-tcplab-c01-")
				c.Must(err, "images dir")
				defer os.RemoveAll(dir)
				// CRIU kills the client: reap it before restoring its pid
				rpid := c.criuDumpRestore(criu, pid, filepath.Join(dir, "img"), func() { cmd.Wait() }, "criu dump done", nil)
				defer func() {
					if rpid > 0 {
						unix.Kill(rpid, unix.SIGKILL)
						for i := 0; i < 200 && !pidGone(rpid); i++ {
							time.Sleep(10 * time.Millisecond)
						}
					}
				}()
				c.Hold(nil)
				c.Deliver(held...)
				got = c.ReadAll(c.B, len("IN-FLIGHT "), 5*time.Second)
				if string(got) != "IN-FLIGHT " {
					c.Fatalf("after restore: echo %q", got)
				}
				echo("after")
				if got := c.ReadAll(c.B, 5, 5*time.Second); string(got) != "AFTER" {
					c.Fatalf("after restore: echo %q", got)
				}
				if rpid <= 0 || pidGone(rpid) {
					c.Fatalf("restored echo client (pid %d) is gone", rpid)
				}
			}},
	)
}
