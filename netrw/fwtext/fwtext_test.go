package fwtext

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/criukit/criukit/netrw/addrmap"
)

func mustMap(t testing.TB) *addrmap.Map {
	m, err := addrmap.Parse("10.11.0.0/24=10.22.0.0/24,fd00:11::/64=fd00:22::/64")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRewrite(t *testing.T) {
	tests := []struct {
		file       string
		f          Format
		has, lacks []string
		changes    int
		warnings   int
	}{
		{"nftables.txt", Nftables,
			[]string{"elements = { 10.22.0.0/24, 10.99.0.1,", "ip saddr 10.22.0.1 tcp dport 7000", "ip daddr 10.22.0.2-10.22.0.9",
				"ip6 saddr fd00:22::1 accept", "{ fd00:22::/64, fd00:99::1 }", "ip saddr 10.0.0.0/8 drop", "00:11:22:33:44:55",
				"meta mark 0x0000c114", "::ffff:10.22.0.3", "dnat to 10.22.0.2:8080", "[fd00:22::2]:8080",
				// CRIU's lock table is kept byte for byte, the table after it is rewritten
				"ip saddr 10.11.0.1 ip daddr 10.11.0.2 accept", "ip saddr 10.22.0.7 notrack"},
			[]string{"10.11.0.1 tcp", "fd00:11::1 accept"}, 10, 1},
		{"iptables.txt", Iptables,
			[]string{"-A PREROUTING -d 10.22.0.2/32", "--to-destination 10.22.0.2:8080", "-s 10.22.0.0/24 ! -d 10.22.0.0/24 -j SNAT --to-source 10.22.0.1",
				"-A INPUT -s 10.0.0.0/8 -j DROP", "--src-range 10.22.0.5-10.22.0.9", "\"from 10.22.0.1\"",
				"-A CRIU -s 10.11.0.1/32 -j ACCEPT", ":INPUT ACCEPT [12:720]"},
			nil, 8, 1},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			out, ch := Rewrite(in, tc.f, mustMap(t))
			s := string(out)
			for _, h := range tc.has {
				if !strings.Contains(s, h) {
					t.Errorf("output lacks %q", h)
				}
			}
			for _, l := range tc.lacks {
				if strings.Contains(s, l) {
					t.Errorf("output still has %q", l)
				}
			}
			n, w := 0, 0
			for _, c := range ch {
				if c.Warning != "" {
					w++
				} else {
					n++
				}
			}
			if n != tc.changes || w != tc.warnings {
				t.Errorf("%d changes %d warnings, want %d and %d: %+v\n%s", n, w, tc.changes, tc.warnings, ch, s)
			}
			if len(strings.Split(s, "\n")) != len(strings.Split(string(in), "\n")) {
				t.Error("line count changed")
			}
			// an empty map changes nothing
			same, ch0 := Rewrite(in, tc.f, &addrmap.Map{})
			if string(same) != string(in) || len(ch0) != 0 {
				t.Error("empty map changed the text")
			}
		})
	}
}

func FuzzRewrite(f *testing.F) {
	for _, n := range []string{"nftables.txt", "iptables.txt", "nftables-criu-lock.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, strings.HasPrefix(n, "nftables"))
	}
	f.Add([]byte("ip saddr 1.2.3.4/ 10.11.0.1:99999 ::ffff:10.11.0.1/120 10.11.0.1/33 }}} table CRIU {"), true)
	m := mustMap(f)
	f.Fuzz(func(t *testing.T, b []byte, nft bool) {
		fm := Iptables
		if nft {
			fm = Nftables
		}
		out, _ := Rewrite(b, fm, m)
		if strings.Count(string(out), "\n") != strings.Count(string(b), "\n") {
			t.Fatal("line count changed")
		}
		same, _ := Rewrite(b, fm, &addrmap.Map{})
		if string(same) != string(b) {
			t.Fatal("empty map changed the text")
		}
	})
}

// nftables-criu-lock.txt is the nftables image of a real CRIU 4.2.1 dump of a netns-owning tree
// (--network-lock nftables): only CRIU's lock table, which must come out byte for byte.
func TestCRIULockTableKept(t *testing.T) {
	in, err := os.ReadFile(filepath.Join("testdata", "nftables-criu-lock.txt"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := addrmap.Parse("0.0.0.0/1=128.0.0.0/1,128.0.0.0/1=0.0.0.0/1")
	if err != nil {
		t.Fatal(err)
	}
	text := string(in) + "table ip t {\n\tchain c {\n\t\tip saddr 10.1.2.3 accept\n\t}\n}\n"
	out, ch := Rewrite([]byte(text), Nftables, m)
	if !strings.HasPrefix(string(out), string(in)) || len(ch) != 1 || !strings.Contains(string(out), "138.1.2.3") {
		t.Fatalf("changes %+v:\n%s", ch, out)
	}
}
