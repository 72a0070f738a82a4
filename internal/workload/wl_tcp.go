package workload

import (
	"bytes"
	"flag"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Queued data of the tcp workload, unread when it is dumped: client->server and server->client.
const (
	TCPClientData = "client->server queued " + DefaultSecret
	TCPServerData = "server->client queued"
)

func init() {
	// tcp [-6]: a TCP listener and one established connection on 127.0.0.1 (::1 with -6), both ends
	// in this process, with unread data queued both ways. Dump it with --tcp-established. Its check
	// (SIGUSR1) reads the queued data (first check only) and sends a ping/pong through the connection.
	Register("tcp", runTCP)
}

type tcpState struct {
	listener, client, server int
	drained                  bool
}

func runTCP(c *Ctx) error {
	fs := flag.NewFlagSet("tcp", flag.ContinueOnError)
	v6 := fs.Bool("6", false, "use IPv6 ::1 instead of 127.0.0.1")
	if err := fs.Parse(c.Args); err != nil {
		return err
	}
	family := unix.AF_INET
	var addr unix.Sockaddr = &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if *v6 {
		family = unix.AF_INET6
		addr = &unix.SockaddrInet6{Addr: [16]byte{15: 1}}
	}
	s := &tcpState{}
	var err error
	if s.listener, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if err := unix.Bind(s.listener, addr); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(s.listener, 8); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	local, err := unix.Getsockname(s.listener)
	if err != nil {
		return err
	}
	if s.client, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
		return err
	}
	if err := unix.Connect(s.client, local); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if s.server, _, err = unix.Accept4(s.listener, unix.SOCK_CLOEXEC); err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	tv := unix.NsecToTimeval(int64(3 * time.Second))
	for _, fd := range []int{s.client, s.server} {
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
	}
	if _, err := unix.Write(s.client, []byte(TCPClientData)); err != nil {
		return err
	}
	if _, err := unix.Write(s.server, []byte(TCPServerData)); err != nil {
		return err
	}
	c.Keep(s)
	c.OnCheck(s.check)
	port := 0
	switch a := local.(type) {
	case *unix.SockaddrInet4:
		port = a.Port
	case *unix.SockaddrInet6:
		port = a.Port
	}
	return c.Ready(fmt.Sprintf("port=%d", port))
}

func readFull(fd int, n int) ([]byte, error) {
	buf := make([]byte, n)
	got := 0
	for got < n {
		m, err := unix.Read(fd, buf[got:])
		if err != nil {
			return buf[:got], err
		}
		if m == 0 {
			return buf[:got], fmt.Errorf("connection closed")
		}
		got += m
	}
	return buf, nil
}

func (s *tcpState) check() (string, error) {
	if !s.drained {
		if b, err := readFull(s.server, len(TCPClientData)); err != nil || string(b) != TCPClientData {
			return "", fmt.Errorf("server read queued %q (%v)", b, err)
		}
		if b, err := readFull(s.client, len(TCPServerData)); err != nil || string(b) != TCPServerData {
			return "", fmt.Errorf("client read queued %q (%v)", b, err)
		}
		s.drained = true
	}
	ping := []byte(fmt.Sprintf("ping %d", time.Now().UnixNano()))
	if _, err := unix.Write(s.client, ping); err != nil {
		return "", fmt.Errorf("client write: %w", err)
	}
	if b, err := readFull(s.server, len(ping)); err != nil || !bytes.Equal(b, ping) {
		return "", fmt.Errorf("server read %q (%v)", b, err)
	}
	if _, err := unix.Write(s.server, []byte("pong")); err != nil {
		return "", fmt.Errorf("server write: %w", err)
	}
	if b, err := readFull(s.client, 4); err != nil || string(b) != "pong" {
		return "", fmt.Errorf("client read %q (%v)", b, err)
	}
	return "tcp connection passes data both ways", nil
}
