package workload

import (
	"flag"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	// redis-incr -server ADDR:PORT [-src ADDR]: one connection to a redis-server, an INCR of key
	// criukit-incr every 50 ms; each answer must be the previous one + 1 (the same server, the same
	// connection, no reconnect). Check: "n=LAST state=up|<error>".
	Register("redis-incr", func(c *Ctx) error {
		fs := flag.NewFlagSet("redis-incr", flag.ContinueOnError)
		server := fs.String("server", "", "redis-server ADDR:PORT")
		src := fs.String("src", "", "local address to bind")
		if err := fs.Parse(c.Args); err != nil {
			return err
		}
		ap, err := netip.ParseAddrPort(*server)
		if err != nil {
			return fmt.Errorf("redis-incr: -server: %w", err)
		}
		bind := netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
		if ap.Addr().Is4() {
			bind = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
		}
		if *src != "" {
			a, err := netip.ParseAddr(*src)
			if err != nil {
				return err
			}
			bind = netip.AddrPortFrom(a, 0)
		}
		fd, err := netTCPSocket(bind)
		if err != nil {
			return err
		}
		_, sa := netSockaddr(ap)
		if err := unix.Connect(fd, sa); err != nil {
			return fmt.Errorf("redis-incr: connect %s: %w", ap, err)
		}
		c.Keep(fd)
		var mu sync.Mutex
		var last int64 = -1
		st := &netStatus{state: "up"}
		const req = "*2\r\n$4\r\nINCR\r\n$12\r\ncriukit-incr\r\n"
		incr := func() (int64, error) {
			if err := netWriteAll(fd, []byte(req)); err != nil {
				return 0, fmt.Errorf("write:%s", netErrName(err))
			}
			var line []byte
			b := make([]byte, 1)
			for !strings.HasSuffix(string(line), "\r\n") {
				if err := netReadFull(fd, b); err != nil {
					return 0, fmt.Errorf("read:%s", netErrName(err))
				}
				line = append(line, b[0])
				if len(line) > 64 {
					return 0, fmt.Errorf("reply:too-long")
				}
			}
			s := strings.TrimSpace(string(line))
			if !strings.HasPrefix(s, ":") {
				return 0, fmt.Errorf("reply:%q", s)
			}
			return strconv.ParseInt(s[1:], 10, 64)
		}
		first, err := incr()
		if err != nil {
			return fmt.Errorf("redis-incr: first INCR: %v", err)
		}
		last = first
		go func() {
			for {
				time.Sleep(50 * time.Millisecond)
				n, err := incr()
				if err != nil {
					st.set(err.Error())
					return
				}
				mu.Lock()
				if n != last+1 {
					mu.Unlock()
					st.set(fmt.Sprintf("sequence:%d-after-%d", n, last))
					return
				}
				last = n
				mu.Unlock()
			}
		}()
		c.OnCheck(func() (string, error) {
			mu.Lock()
			defer mu.Unlock()
			return fmt.Sprintf("n=%d state=%s", last, st.get()), nil
		})
		return c.Ready(fmt.Sprintf("local=%d", netLocalPort(fd)))
	})
}
