package workload

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Network workloads of `criukit net` (package netrw) live tests.
//
//	net-pair -server ADDR -client ADDR [-ext ADDR:PORT] [-addrs A/N,...] [-unix PATH]
//	    A listener on ADDR (port chosen by the kernel) and a child process (net-pair-client) that
//	    connects to it from CLIENT and ping-pongs an 8-byte counter every 20 ms over that one
//	    connection. With -ext the parent also connects to an outside echo peer (net-echo) and echoes
//	    what it sends. Check: "ok seq=N accepts=A client=STATE ext=STATE".
//	net-pair-ownns: the same in a network namespace of its own, after bringing lo up and adding
//	    -addrs to it.
//	net-echo -addr ADDR [-poke]: the outside peer; it sends a counter every 50 ms on the connection it
//	    accepts and reads it back. Check: "ok sent=N state=STATE" (STATE is the first error). With
//	    -poke it sends a 1-byte probe each second the echo is late, so it learns when the other end is gone.
func init() {
	Register("net-pair", runNetPair)
	RegisterNS("net-pair-ownns", unix.CLONE_NEWNET, runNetPair)
	Register("net-pair-client", runNetPairClient)
	Register("net-echo", runNetEcho)
}

const netPairFile = "net-pair.conf" // parent -> child: "CLIENTADDR SERVERADDR:PORT"

type netStatus struct {
	mu    sync.Mutex
	state string
}

func (s *netStatus) set(v string) {
	s.mu.Lock()
	if s.state == "" || s.state == "up" {
		s.state = v
	} else if !strings.Contains(s.state, v) {
		s.state += "," + v
	}
	s.mu.Unlock()
}

func (s *netStatus) get() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

func netSockaddr(ap netip.AddrPort) (int, unix.Sockaddr) {
	if ap.Addr().Is4() {
		return unix.AF_INET, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return unix.AF_INET6, &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}

func netTCPSocket(bind netip.AddrPort) (int, error) {
	fam, sa := netSockaddr(bind)
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind %s: %w", bind, err)
	}
	return fd, nil
}

func netLocalPort(fd int) int {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return a.Port
	case *unix.SockaddrInet6:
		return a.Port
	}
	return 0
}

// readFull and writeAll use blocking syscalls, restarted transparently across a dump and restore.
func netReadFull(fd int, b []byte) error {
	for n := 0; n < len(b); {
		m, err := unix.Read(fd, b[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if m == 0 {
			return netErrEOF
		}
		n += m
	}
	return nil
}

var netErrEOF = errors.New("EOF")

func netWriteAll(fd int, b []byte) error {
	for n := 0; n < len(b); {
		m, err := unix.Write(fd, b[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		n += m
	}
	return nil
}

func netErrName(err error) string {
	var en syscall.Errno
	if errors.As(err, &en) {
		if n := unix.ErrnoName(en); n != "" {
			return n
		}
	}
	return err.Error()
}

func netSetupOwnNetns(addrs string) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return err
	}
	for _, a := range strings.Split(addrs, ",") {
		if a == "" {
			continue
		}
		na, err := netlink.ParseAddr(a)
		if err != nil {
			return err
		}
		if na.IP.To4() == nil {
			na.Flags |= unix.IFA_F_NODAD
		}
		if err := netlink.AddrAdd(lo, na); err != nil {
			return fmt.Errorf("add %s to lo: %w", a, err)
		}
	}
	return nil
}

func netAddRouteRule(src string) error {
	a, err := netip.ParseAddr(src)
	if err != nil {
		return err
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	dst := "10.99.0.0/16"
	if a.Is6() {
		dst = "fd00:99::/48"
	}
	_, dnet, _ := net.ParseCIDR(dst)
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: lo.Attrs().Index, Dst: dnet, Src: net.IP(a.AsSlice()), Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("route %s src %s: %w", dst, a, err)
	}
	r := netlink.NewRule()
	r.Src = &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
	r.Table = 100
	r.Family = unix.AF_INET
	if a.Is6() {
		r.Family = unix.AF_INET6
	}
	if err := netlink.RuleAdd(r); err != nil {
		return fmt.Errorf("rule from %s: %w", a, err)
	}
	return nil
}

func runNetPair(c *Ctx) error {
	fs := flag.NewFlagSet("net-pair", flag.ContinueOnError)
	server := fs.String("server", "127.0.0.1", "listen address")
	client := fs.String("client", "127.0.0.1", "client source address")
	ext := fs.String("ext", "", "outside echo peer ADDR:PORT")
	addrs := fs.String("addrs", "", "addresses to add to lo first (own netns), comma separated A/N")
	unixPath := fs.String("unix", "", "also listen on a unix socket bound to this path")
	prefsrc := fs.String("prefsrc", "", "own netns: add a route (10.99.0.0/16 or fd00:99::/48) via lo with this source and a rule from it to table 100")
	if err := fs.Parse(c.Args); err != nil {
		return err
	}
	if *addrs != "" {
		if err := netSetupOwnNetns(*addrs); err != nil {
			return err
		}
	}
	if *prefsrc != "" {
		if err := netAddRouteRule(*prefsrc); err != nil {
			return err
		}
	}
	sa, err := netip.ParseAddr(*server)
	if err != nil {
		return err
	}
	ln, err := netTCPSocket(netip.AddrPortFrom(sa, 0))
	if err != nil {
		return err
	}
	if err := unix.Listen(ln, 8); err != nil {
		return err
	}
	if *unixPath != "" {
		ufd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Bind(ufd, &unix.SockaddrUnix{Name: *unixPath}); err != nil {
			return fmt.Errorf("bind unix %s: %w", *unixPath, err)
		}
		if err := unix.Listen(ufd, 4); err != nil {
			return err
		}
		c.Keep(ufd)
	}
	port := netLocalPort(ln)
	conf := fmt.Sprintf("%s %s", *client, netip.AddrPortFrom(sa, uint16(port)))
	if err := os.WriteFile(filepath.Join(c.Dir, netPairFile), []byte(conf), 0o644); err != nil {
		return err
	}
	var mu sync.Mutex
	var seq uint64
	accepts := 0
	pair := &netStatus{state: "up"}
	extSt := &netStatus{state: "none"}
	accepted := make(chan int, 1)
	go func() {
		for {
			fd, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) {
				continue
			}
			if err != nil {
				pair.set("accept:" + netErrName(err))
				return
			}
			mu.Lock()
			accepts++
			first := accepts == 1
			mu.Unlock()
			if first {
				accepted <- fd
			} else {
				unix.Close(fd) // a reconnect would be a failure of the test: counted, not served
			}
		}
	}()
	if _, err := c.StartChild("net-pair-client"); err != nil {
		return err
	}
	var conn int
	select {
	case conn = <-accepted:
	case <-time.After(10 * time.Second):
		return errors.New("client did not connect")
	}
	c.Keep(ln, conn)
	go func() {
		b := make([]byte, 8)
		for {
			if err := netReadFull(conn, b); err != nil {
				pair.set("read:" + netErrName(err))
				return
			}
			mu.Lock()
			seq = binary.BigEndian.Uint64(b)
			mu.Unlock()
			if err := netWriteAll(conn, b); err != nil {
				pair.set("write:" + netErrName(err))
				return
			}
		}
	}()
	if *ext != "" {
		ep, err := netip.ParseAddrPort(*ext)
		if err != nil {
			return err
		}
		ca, _ := netip.ParseAddr(*client)
		efd, err := netTCPSocket(netip.AddrPortFrom(ca, 0))
		if err != nil {
			return err
		}
		_, esa := netSockaddr(ep)
		if err := unix.Connect(efd, esa); err != nil {
			return fmt.Errorf("connect to outside peer %s: %w", ep, err)
		}
		c.Keep(efd)
		extSt.state = "up"
		go func() {
			b := make([]byte, 8)
			for {
				if err := netReadFull(efd, b); err != nil {
					extSt.set("read:" + netErrName(err))
					// the socket was restored closed: a write must fail too (EPIPE)
					if _, werr := unix.Write(efd, b); werr != nil {
						extSt.set("write:" + netErrName(werr))
					}
					return
				}
				if err := netWriteAll(efd, b); err != nil {
					extSt.set("write:" + netErrName(err))
					return
				}
			}
		}()
	}
	c.OnCheck(func() (string, error) {
		mu.Lock()
		defer mu.Unlock()
		cl, _ := os.ReadFile(filepath.Join(c.Dir, "net-pair-client.err"))
		cs := "up"
		if len(cl) > 0 {
			cs = string(cl)
		}
		return fmt.Sprintf("seq=%d accepts=%d pair=%s client=%s ext=%s", seq, accepts, pair.get(), cs, extSt.get()), nil
	})
	return c.Ready(fmt.Sprintf("port=%d", port))
}

func runNetPairClient(c *Ctx) error {
	b, err := os.ReadFile(filepath.Join(c.Dir, netPairFile))
	if err != nil {
		return err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return fmt.Errorf("bad %s: %q", netPairFile, b)
	}
	ca, err := netip.ParseAddr(f[0])
	if err != nil {
		return err
	}
	sp, err := netip.ParseAddrPort(f[1])
	if err != nil {
		return err
	}
	fd, err := netTCPSocket(netip.AddrPortFrom(ca, 0))
	if err != nil {
		return err
	}
	_, sa := netSockaddr(sp)
	if err := unix.Connect(fd, sa); err != nil {
		return fmt.Errorf("connect %s: %w", sp, err)
	}
	c.Keep(fd)
	fail := func(what string) {
		_ = writeAtomic(filepath.Join(c.Dir, "net-pair-client.err"), []byte(what))
	}
	go func() {
		b := make([]byte, 8)
		e := make([]byte, 8)
		for n := uint64(1); ; n++ {
			binary.BigEndian.PutUint64(b, n)
			if err := netWriteAll(fd, b); err != nil {
				fail("write:" + netErrName(err))
				return
			}
			if err := netReadFull(fd, e); err != nil {
				fail("read:" + netErrName(err))
				return
			}
			if string(e) != string(b) {
				fail(fmt.Sprintf("echo %x != %x", e, b))
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return c.Ready("connected")
}

func runNetEcho(c *Ctx) error {
	fs := flag.NewFlagSet("net-echo", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1", "listen address")
	poke := fs.Bool("poke", false, "while no echo comes back for 1 s, send a 1-byte probe (so a peer whose socket is gone answers with a reset)")
	if err := fs.Parse(c.Args); err != nil {
		return err
	}
	a, err := netip.ParseAddr(*addr)
	if err != nil {
		return err
	}
	ln, err := netTCPSocket(netip.AddrPortFrom(a, 0))
	if err != nil {
		return err
	}
	if err := unix.Listen(ln, 8); err != nil {
		return err
	}
	c.Keep(ln)
	var mu sync.Mutex
	var sent uint64
	st := &netStatus{state: "waiting"}
	go func() {
		fd, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
		if err != nil {
			st.set("accept:" + netErrName(err))
			return
		}
		c.Keep(fd)
		st.state = "up"
		b := make([]byte, 8)
		for n := uint64(1); ; n++ {
			binary.BigEndian.PutUint64(b, n)
			if err := netWriteAll(fd, b); err != nil {
				st.set("write:" + netErrName(err))
				return
			}
			for *poke {
				pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
				if n, err := unix.Poll(pfd, 1000); err != nil && err != unix.EINTR || n > 0 {
					break
				}
				if _, err := unix.Write(fd, []byte{0}); err != nil {
					st.set("write:" + netErrName(err))
					return
				}
			}
			if err := netReadFull(fd, b); err != nil {
				st.set("read:" + netErrName(err))
				return
			}
			mu.Lock()
			sent = n
			mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	}()
	c.OnCheck(func() (string, error) {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("sent=%d state=%s", sent, st.get()), nil
	})
	return c.Ready(fmt.Sprintf("port=%d", netLocalPort(ln)))
}
