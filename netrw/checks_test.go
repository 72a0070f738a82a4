package netrw

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/testenv"
	"github.com/criukit/criukit/netrw/addrmap"
)

// TestChecks runs the checks and selections on one real dump: an in-tree pair, a listener and a
// connection to an outside peer, all on 10.11.0.x in a netns that is not part of the dump.
func TestChecks(t *testing.T) {
	testenv.Short(t)
	subreaper()
	ns := newNetns(t, "10.11.0.1/32", "10.11.0.2/32", "10.11.0.3/32")
	echo := harness.Start(t, "net-echo", harness.WithNetns(ns), harness.WithArgs("-addr", "10.11.0.3"))
	p := harness.Start(t, "net-pair", harness.WithNetns(ns), harness.WithArgs("-server", "10.11.0.2", "-client", "10.11.0.1",
		"-ext", "10.11.0.3:"+strings.TrimPrefix(echo.Info, "port=")))
	waitPair(t, p, "ping-pong", func(s pairState) bool { return s.seq > 3 && s.ext == "up" })
	d := p.Dump(t, "--tcp-established", "--network-lock", "nftables")
	server := mustAtoi(t, strings.TrimPrefix(p.Info, "port="))

	// the client's ephemeral port, from the dump itself
	dir, err := Load(d.Dir)
	if err != nil {
		t.Fatal(err)
	}
	client := 0
	for _, s := range dir.Sockets {
		if s.Connected() && int(s.Dst.Port()) == server {
			client = int(s.Src.Port())
		}
	}
	if client == 0 {
		t.Fatal("no client socket in the dump")
	}
	mm := func(s string) *addrmap.Map {
		m, err := addrmap.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	pm := func(s string) addrmap.Ports {
		p, err := addrmap.ParsePorts(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	all := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	count := func(r *Report, action string) int {
		n := 0
		for _, s := range r.Sockets {
			if s.Action == action {
				n++
			}
		}
		return n
	}
	tests := []struct {
		name    string
		run     func() (*Report, error)
		err     error
		errText string
		check   func(*Report) string
	}{
		{"no-declare", func() (*Report, error) {
			return Rewrite(d.Dir, RewriteOptions{Map: mm("10.11.0.0/24=10.22.0.0/24"), Output: Output{DryRun: true}})
		}, ErrChecks, "--declare-present 10.22.0.", nil},
		{"external-kept", func() (*Report, error) {
			return Rewrite(d.Dir, RewriteOptions{Map: mm("10.11.0.0/24=10.22.0.0/24"), Present: all, Output: Output{DryRun: true}})
		}, nil, "", func(r *Report) string {
			// the outside connection changes its 4-tuple: listed as kept-but-breaking, with the reason
			if count(r, ActKeep) != 1 || count(r, ActRewrite) != 3 || r.Written {
				return "want 1 keep and 3 rewrites"
			}
			for _, s := range r.Sockets {
				if s.Action == ActKeep && !strings.Contains(s.Note, "reset") {
					return "note lacks the reset warning: " + s.Note
				}
			}
			return ""
		}},
		{"close-external", func() (*Report, error) {
			return Rewrite(d.Dir, RewriteOptions{Map: mm("10.11.0.1=10.22.0.1,10.11.0.2=10.22.0.2"), Present: all, CloseExternal: true, Output: Output{DryRun: true}})
		}, nil, "", func(r *Report) string {
			if count(r, ActClose) != 1 || count(r, ActKeep) != 0 {
				return "want the outside connection closed"
			}
			return ""
		}},
		{"only-peer-mapped", func() (*Report, error) {
			// 10.11.0.3 is the outside peer: moving only it keeps everyone's source address
			return Rewrite(d.Dir, RewriteOptions{Map: mm("10.11.0.3=10.33.0.3"), Output: Output{DryRun: true}})
		}, nil, "", func(r *Report) string {
			for _, s := range r.Sockets {
				if s.Action == ActKeep && s.NewRemote != "10.33.0.3:"+strings.TrimPrefix(echo.Info, "port=") {
					return "outside connection not pointed at the new peer address: " + s.NewRemote
				}
			}
			if count(r, ActKeep) != 1 {
				return "want 1 keep"
			}
			return ""
		}},
		{"duplicate-4-tuple", func() (*Report, error) {
			// server port -> client port on one address: both ends become 10.11.0.1:C <-> 10.11.0.1:C
			return Rewrite(d.Dir, RewriteOptions{Map: mm("10.11.0.2=10.11.0.1"), Ports: pm(fmt.Sprintf("%d:%d", server, client)), Output: Output{DryRun: true}})
		}, ErrChecks, "duplicate tcp 4-tuple", nil},
		{"port-map", func() (*Report, error) {
			return Rewrite(d.Dir, RewriteOptions{Ports: pm(fmt.Sprintf("%d:%d", server, 7777)), Output: Output{DryRun: true}})
		}, nil, "", func(r *Report) string {
			n := 0
			for _, s := range r.Sockets {
				if strings.HasSuffix(s.NewLocal, ":7777") || strings.HasSuffix(s.NewRemote, ":7777") {
					n++
				}
			}
			if n != 3 { // listener, accepted socket, client's remote
				return fmt.Sprintf("%d sockets use port 7777, want 3", n)
			}
			return ""
		}},
		{"nothing", func() (*Report, error) { return Rewrite(d.Dir, RewriteOptions{Output: Output{DryRun: true}}) }, ErrNothing, "", nil},
		{"close-port-closes-both-ends", func() (*Report, error) {
			return Close(d.Dir, CloseOptions{Ports: []uint16{uint16(client)}, Output: Output{DryRun: true}})
		}, nil, "", func(r *Report) string {
			if count(r, ActClose) != 2 {
				return "want both ends of the pair closed"
			}
			return ""
		}},
		{"close-all", func() (*Report, error) {
			return Close(d.Dir, CloseOptions{All: true, Output: Output{Dir: filepath.Join(t.TempDir(), "out")}})
		}, nil, "", func(r *Report) string {
			if count(r, ActClose) != 3 || !r.Written {
				return "want 3 closed and written"
			}
			left, _ := filepath.Glob(filepath.Join(r.Output, "tcp-stream-*.img"))
			if len(left) != 0 {
				return fmt.Sprintf("tcp-stream images left: %v", left)
			}
			return ""
		}},
		{"close-peer", func() (*Report, error) {
			return Close(d.Dir, CloseOptions{Peers: []netip.Prefix{netip.MustParsePrefix("10.11.0.3/32")}, Output: Output{DryRun: true}})
		}, nil, "", func(r *Report) string {
			if count(r, ActClose) != 1 {
				return "want 1 closed"
			}
			return ""
		}},
		{"output-exists", func() (*Report, error) {
			return Close(d.Dir, CloseOptions{All: true, Output: Output{Dir: t.TempDir()}})
		}, ErrOutputExists, "", nil},
		{"not-images", func() (*Report, error) {
			return Close(t.TempDir(), CloseOptions{All: true, Output: Output{DryRun: true}})
		}, ErrNoImages, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.run()
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
			} else if err != nil {
				t.Fatalf("err %v (%v)", err, r.Errors)
			}
			if tc.errText != "" && (r == nil || !strings.Contains(strings.Join(r.Errors, "\n"), tc.errText)) {
				t.Fatalf("errors lack %q: %+v", tc.errText, r)
			}
			if tc.check != nil {
				if msg := tc.check(r); msg != "" {
					var b strings.Builder
					r.WriteTable(&b)
					t.Fatalf("%s\n%s", msg, b.String())
				}
			}
		})
	}
	// in place: the original moves to .orig, the rewritten dir takes its name
	cp := filepath.Join(t.TempDir(), "img")
	if err := copyEntry(d.Dir, cp, false); err != nil {
		t.Fatal(err)
	}
	if _, err := Close(cp, CloseOptions{External: true, Output: Output{InPlace: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cp + ".orig/inventory.img"); err != nil {
		t.Fatal(err)
	}
	if r, err := Close(cp, CloseOptions{External: true, Output: Output{DryRun: true}}); err != nil || count(r, ActClose) != 0 {
		t.Fatalf("in-place result still has an outside connection: %v", err)
	}
}
