package tcplab

import (
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/criukit/criukit/internal/testenv"
)

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestNoLeaks runs a passing, a failing and a panicking case and checks that no fd (TUN,
// socket, netns handle) and no goroutine is left behind.
func TestNoLeaks(t *testing.T) {
	testenv.Root(t)
	testenv.File(t, "/dev/net/tun")
	cases := []*Case{
		{ID: "X01", Title: "passes", Run: func(c *C) { c.Handshake(); c.Write(c.A, "x"); c.ExpectRead(c.B, "x") }},
		{ID: "X02", Title: "fails midway with sockets open", Run: func(c *C) {
			c.Handshake()
			c.HoldDir(AtoB)
			c.Write(c.A, "held")
			c.Fatalf("deliberate failure")
		}},
		{ID: "X03", Title: "panics", Run: func(c *C) {
			c.Handshake()
			var m map[string]int
			m["boom"] = 1
		}},
	}
	// Warm up (the runtime creates threads and the first netns costs more).
	RunCase(cases[0], IPv4, RunOptions{})
	runtime.GC()
	fds, gor := countFDs(t), runtime.NumGoroutine()
	want := map[string]string{"X01": "pass", "X02": "fail", "X03": "fail"}
	for i := 0; i < 3; i++ {
		for _, cs := range cases {
			for _, f := range []Family{IPv4, IPv6} {
				if r := RunCase(cs, f, RunOptions{}); r.Status != want[cs.ID] {
					t.Errorf("%s: status %s, want %s: %v", r.Name, r.Status, want[cs.ID], r.Errors)
				}
			}
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n := countFDs(t); n != fds {
		t.Errorf("fds: %d before, %d after", fds, n)
	}
	if n := runtime.NumGoroutine(); n > gor {
		t.Errorf("goroutines: %d before, %d after", gor, n)
	}
}

func BenchmarkSetupTeardown(b *testing.B) {
	testenv.Root(b)
	for i := 0; i < b.N; i++ {
		l, err := New(Options{Family: IPv6})
		if err != nil {
			b.Fatal(err)
		}
		l.Close()
	}
}
