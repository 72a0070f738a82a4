package harness

import (
	"net"
	"path/filepath"
	"testing"
)

// UnixListener listens on a unix stream socket in the test process and accepts connections, which
// stay open until the test ends: a peer outside any dumped tree (CRIU refuses such a connection
// without --ext-unix-sk). It returns the socket's path.
func UnixListener(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "ext.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		tb.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	tb.Cleanup(func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return path
}
