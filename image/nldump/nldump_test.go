package nldump

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/criukit/criukit/netrw/addrmap"
)

// The testdata dumps are real `ip addr|route|rule save` output of a namespace with a veth, IPv4
// and IPv6 addresses, a gateway route, a multipath route, an IPv6 route and a policy rule.
func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRewrite(t *testing.T) {
	m, err := addrmap.Parse("10.11.0.0/24=10.22.0.0/24,fd00:11::/64=fd00:22::/64")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file     string
		kind     Kind
		want     []string // "NAME old->new" of every change
		warnings int
		showdump []string // arguments of `ip ... showdump` used to cross-check the output
		contains []string
	}{
		{"ifaddr.bin", KindAddr, []string{
			"IFA_ADDRESS 10.11.0.2->10.22.0.2", "IFA_LOCAL 10.11.0.2->10.22.0.2",
			"IFA_ADDRESS 10.11.0.1->10.22.0.1", "IFA_LOCAL 10.11.0.1->10.22.0.1", "IFA_BROADCAST 10.11.0.255->10.22.0.255",
			"IFA_ADDRESS fd00:11::1->fd00:22::1"}, 0,
			[]string{"addr", "showdump"}, []string{"inet 10.22.0.1/24 brd 10.22.0.255", "inet6 fd00:22::1/64", "10.22.0.2/32"}},
		{"route.bin", KindRoute, []string{
			"RTA_GATEWAY 10.11.0.254->10.22.0.254", "RTA_DST 10.11.0.0->10.22.0.0", "RTA_PREFSRC 10.11.0.1->10.22.0.1",
			"RTA_GATEWAY(nexthop) 10.11.0.253->10.22.0.253", "RTA_GATEWAY(nexthop) 10.11.0.252->10.22.0.252",
			"RTA_PREFSRC 10.11.0.1->10.22.0.1", "RTA_GATEWAY 10.11.0.254->10.22.0.254"}, 0,
			[]string{"route", "showdump"}, []string{"default via 10.22.0.254", "nexthop via 10.22.0.253", "10.22.0.0/24", "src 10.22.0.1"}},
		{"route6.bin", KindRoute, []string{"RTA_DST fd00:11::->fd00:22::", "RTA_GATEWAY fd00:11::fe->fd00:22::fe"}, 0,
			[]string{"-6", "route", "showdump"}, []string{"fd00:22::/64", "via fd00:22::fe"}},
		{"rule.bin", KindRule, []string{"FRA_SRC 10.11.0.0->10.22.0.0"}, 0, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			in := readTestdata(t, tc.file)
			d, err := Parse(in)
			if err != nil {
				t.Fatal(err)
			}
			if d.Kind != tc.kind {
				t.Fatalf("kind %v, want %v", d.Kind, tc.kind)
			}
			if !bytes.Equal(d.Bytes(), in) {
				t.Fatal("Parse changed the bytes")
			}
			ch := d.Rewrite(m)
			var got []string
			warn := 0
			for _, c := range ch {
				if c.Warning != "" {
					warn++
					continue
				}
				got = append(got, c.Name+" "+c.Addr.String()+"->"+c.New.String())
			}
			want := tc.want
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if warn != tc.warnings {
				t.Errorf("%d warnings, want %d", warn, tc.warnings)
			}
			out := d.Bytes()
			if len(out) != len(in) {
				t.Fatalf("length changed %d -> %d", len(in), len(out))
			}
			if _, err := Parse(out); err != nil {
				t.Fatalf("output does not parse: %v", err)
			}
			// A second rewrite with the same map changes nothing more (no 10.11/fd00:11 left).
			d2, _ := Parse(out)
			for _, c := range d2.Rewrite(m) {
				if c.Warning == "" {
					t.Errorf("second rewrite changed %s %s", c.Name, c.Addr)
				}
			}
			if tc.showdump == nil {
				return
			}
			ip, err := exec.LookPath("ip")
			if err != nil {
				t.Logf("no ip tool, cross-check skipped")
				return
			}
			cmd := exec.Command(ip, tc.showdump...)
			cmd.Stdin = bytes.NewReader(out)
			txt, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("ip %v: %v\n%s", tc.showdump, err, txt)
			}
			for _, s := range tc.contains {
				if !strings.Contains(string(txt), s) {
					t.Errorf("ip %v output lacks %q:\n%s", tc.showdump, s, txt)
				}
			}
			if strings.Contains(string(txt), "10.11.0.") || strings.Contains(string(txt), "fd00:11:") {
				t.Errorf("old addresses left:\n%s", txt)
			}
		})
	}
}

func TestAddrs(t *testing.T) {
	d, err := Parse(readTestdata(t, "ifaddr.bin"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range d.Addrs() {
		got = append(got, a.Prefix.String())
	}
	want := "127.0.0.1/8 10.11.0.2/32 10.11.0.1/24 ::1/128"
	if !strings.HasPrefix(strings.Join(got, " "), want) || !strings.Contains(strings.Join(got, " "), "fd00:11::1/64") {
		t.Errorf("addrs %v", got)
	}
}

func TestNames(t *testing.T) {
	d, err := Parse(readTestdata(t, "ifaddr.bin"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range d.Names() {
		if n.Name != "IFA_LABEL" || n.Len < len(n.Value)+1 || string(d.Bytes()[n.Offset:n.Offset+len(n.Value)]) != n.Value {
			t.Errorf("bad name field %+v", n)
		}
		got = append(got, n.Value)
	}
	if len(got) == 0 || got[0] != "lo" {
		t.Errorf("labels %v, want lo first", got)
	}
}

func TestParseErrors(t *testing.T) {
	good := readTestdata(t, "route.bin")
	badLen := append([]byte(nil), good...)
	binary.NativeEndian.PutUint32(badLen[4:], 3)
	badAttr := append([]byte(nil), good...)
	binary.NativeEndian.PutUint16(badAttr[4+16+12:], 200)
	badType := append([]byte(nil), good...)
	binary.NativeEndian.PutUint16(badType[8:], 99)
	for name, b := range map[string][]byte{
		"empty": nil, "magic": {1, 2, 3, 4}, "truncated": good[:len(good)-5], "header": good[:10],
		"msglen": badLen, "attrlen": badAttr, "type": badType,
	} {
		if _, err := Parse(b); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err %v, want ErrFormat", name, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, n := range []string{"ifaddr.bin", "route.bin", "route6.bin", "rule.bin"} {
		f.Add(readTestdata(f, n))
	}
	m, _ := addrmap.Parse("10.11.0.0/24=10.22.0.0/24,fd00:11::/64=fd00:22::/64,10.0.0.0/8=11.0.0.0/8")
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Parse(b)
		if err != nil {
			return
		}
		d.Addrs()
		d.Rewrite(m)
		if len(d.Bytes()) != len(b) {
			t.Fatal("length changed")
		}
		if _, err := Parse(d.Bytes()); err != nil {
			t.Fatalf("rewritten dump does not parse: %v", err)
		}
	})
}
