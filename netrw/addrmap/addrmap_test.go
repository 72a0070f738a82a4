package addrmap

import (
	"errors"
	"net/netip"
	"testing"
)

func TestAddr(t *testing.T) {
	m, err := Parse("10.11.0.0/24=10.22.0.0/24,10.11.0.7=10.33.0.1", "fd00:11::/64=fd00:22::/64")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"10.11.0.1", "10.22.0.1", true},
		{"10.11.0.255", "10.22.0.255", true},
		{"10.11.0.7", "10.33.0.1", true}, // longest prefix wins
		{"10.11.1.1", "10.11.1.1", false},
		{"::ffff:10.11.0.2", "::ffff:10.22.0.2", true}, // v4-mapped stays v4-mapped
		{"fd00:11::abcd", "fd00:22::abcd", true},
		{"fd00:11:0:1::1", "fd00:11:0:1::1", false},
		{"0.0.0.0", "0.0.0.0", false},
		{"::", "::", false},
	}
	for _, tc := range tests {
		got, ok := m.Addr(netip.MustParseAddr(tc.in))
		if got.String() != tc.want || ok != tc.ok {
			t.Errorf("Addr(%s) = %s %v, want %s %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	pt := []struct {
		in, want   string
		ok, covers bool
	}{
		{"10.11.0.0/24", "10.22.0.0/24", true, false},
		{"10.11.0.128/25", "10.22.0.128/25", true, false},
		{"10.0.0.0/8", "10.0.0.0/8", false, true},
		{"192.168.0.0/16", "192.168.0.0/16", false, false},
		{"::ffff:10.11.0.0/120", "::ffff:10.22.0.0/120", true, false},
	}
	for _, tc := range pt {
		got, ok, covers := m.Prefix(netip.MustParsePrefix(tc.in))
		if got.String() != tc.want || ok != tc.ok || covers != tc.covers {
			t.Errorf("Prefix(%s) = %s %v %v, want %s %v %v", tc.in, got, ok, covers, tc.want, tc.ok, tc.covers)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, s := range []string{"10.11.0.1", "10.11.0.1=fd00::1", "10.11.0.0/24=10.22.0.0/16", "10.11.0.5/24=10.22.0.0/24",
		"x=10.0.0.1", "10.0.0.1=y", "::ffff:1.2.3.4=1.2.3.5", "1.1.1.1=2.2.2.2,1.1.1.1=3.3.3.3", "fe80::1%eth0=fe80::2"} {
		if _, err := Parse(s); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q): %v, want ErrSyntax", s, err)
		}
	}
	for _, s := range []string{"80", "0:1", "1:70000", "a:b", "80:81,80:82"} {
		if _, err := ParsePorts(s); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParsePorts(%q): %v, want ErrSyntax", s, err)
		}
	}
	p, err := ParsePorts("80:8080,443:8443", "7000:7001")
	if err != nil || len(p) != 3 {
		t.Fatal(p, err)
	}
	if n, ok := p.Port(443); !ok || n != 8443 {
		t.Error(n, ok)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("10.11.0.0/24=10.22.0.0/24,fd00::1=fd00::2", "10.11.0.9")
	f.Add("::/0=fd00::/0", "::ffff:1.2.3.4")
	f.Fuzz(func(t *testing.T, spec, addr string) {
		m, err := Parse(spec)
		if err != nil {
			return
		}
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return
		}
		n, ok := m.Addr(a)
		if n.BitLen() != a.BitLen() || (!ok && n != a) {
			t.Fatalf("Addr(%s) = %s %v", a, n, ok)
		}
		m.Prefix(netip.PrefixFrom(a, a.BitLen()/2))
	})
}
