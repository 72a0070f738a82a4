package pseudo

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

var testKey = bytes.Repeat([]byte{7}, 32)

func TestTokenLaws(t *testing.T) {
	m1, m2, m3 := New(testKey), New(testKey), New(bytes.Repeat([]byte{8}, 32))
	seen := map[string]string{}
	for _, v := range []string{"alice", "bob", "alice-memfd-secret", "x", "ab", "customer-db", "secret-host"} {
		a, b, c := m1.Token(CatName, v), m2.Token(CatName, v), m3.Token(CatName, v)
		if a != b {
			t.Errorf("%q: not deterministic for one key: %q vs %q", v, a, b)
		}
		if a == c && len(v) > 3 {
			t.Errorf("%q: same token %q for two keys", v, a)
		}
		if len(a) != len(v) || a == v {
			t.Errorf("%q -> %q: want a different token of equal length", v, a)
		}
		if o, dup := seen[a]; dup {
			t.Errorf("not injective: %q and %q -> %q", o, v, a)
		}
		seen[a] = v
	}
	// exhaust the 1-byte space: stays injective, falls back to keeping
	m := New(testKey)
	out := map[string]bool{}
	for c := 33; c < 120; c++ {
		tok := m.Token(CatPath, string(rune(c)))
		if out[tok] {
			t.Fatalf("1-byte tokens not injective at %d", c)
		}
		out[tok] = true
	}
	m.Keep("pinned")
	if m.Token(CatName, "pinned") != "pinned" {
		t.Error("--keep value was replaced")
	}
}

func TestPath(t *testing.T) {
	m := New(testKey)
	tests := []struct{ in, want string }{
		{"/usr/lib/x86_64-linux-gnu/libffi.so.8.1.2", "/usr/lib/x86_64-linux-gnu/libffi.so.8.1.2"},
		{"/dev/null", "/dev/null"},
		{"/dev/pts/3", "/dev/pts/3"},
		{"/", "/"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := m.Path(tt.in, PathOptions{}); got != tt.want {
			t.Errorf("Path(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	base := "/tmp/secret-home/alice/projects"
	db := m.Path(base+"/customer-db.sqlite", PathOptions{})
	sock := m.Path(base+"/app.sock", PathOptions{})
	cwd := m.Path(base, PathOptions{})
	if !strings.HasPrefix(db, cwd+"/") || !strings.HasPrefix(sock, cwd+"/") {
		t.Errorf("prefix lost: %q %q under %q", db, sock, cwd)
	}
	if !strings.HasSuffix(db, ".sqlite") || !strings.HasSuffix(sock, ".sock") || !strings.HasPrefix(cwd, "/tmp/") {
		t.Errorf("extension or system component lost: %q %q %q", db, sock, cwd)
	}
	if strings.Contains(db+sock+cwd, "alice") || strings.Contains(db, "customer") {
		t.Errorf("leak: %q %q", db, sock)
	}
	// all spellings and CRIU suffixes
	rel := m.Path(base[1:]+"/customer-db.sqlite", PathOptions{})
	dot := m.Path("./"+base[1:]+"/customer-db.sqlite", PathOptions{})
	if "/"+rel != db || "./"+rel != dot {
		t.Errorf("spellings differ: %q %q %q", db, rel, dot)
	}
	del := m.Path(base+"/deleted-small.txt (deleted)", PathOptions{})
	ghost := m.Path(base+"/deleted-small.txt.cr.1.ghost", PathOptions{})
	if !strings.HasSuffix(del, ".txt (deleted)") || strings.TrimSuffix(del, " (deleted)")+".cr.1.ghost" != ghost {
		t.Errorf("suffixes: %q %q", del, ghost)
	}
	if lr := m.Path(base+"/link_remap.7", PathOptions{}); !strings.HasSuffix(lr, "/link_remap.7") {
		t.Errorf("link_remap lost: %q", lr)
	}
	if mf := m.Path("/memfd:alice-memfd-secret (deleted)", PathOptions{}); mf != "/memfd:"+m.Name("alice-memfd-secret")+" (deleted)" {
		t.Errorf("memfd path %q not consistent with name token", mf)
	}
	if p := m.Path("/usr/lib/libc.so.6", PathOptions{All: true}); p == "/usr/lib/libc.so.6" || !strings.HasSuffix(p, ".so.6") {
		t.Errorf("paranoid path %q", p)
	}
	if u := string(m.UnixName([]byte("\x00alice-abstract-sock"), PathOptions{})); u[0] != 0 || u[1:] != m.Name("alice-abstract-sock") {
		t.Errorf("abstract name %q", u)
	}
}

func TestIPPrefixPreserving(t *testing.T) {
	m := New(testKey)
	addrs := []string{"10.20.30.40", "10.20.30.1", "10.20.31.7", "192.168.77.0", "192.168.77.5", "8.8.8.8", "8.8.4.4", "203.0.113.77",
		"2001:db8:abcd::40", "2001:db8:abcd::1", "2a00:1450::1", "2a00:1450::2", "fe80::42:acff:fe11:2"}
	for _, a := range addrs {
		for _, b := range addrs {
			pa, pb := netip.MustParseAddr(a), netip.MustParseAddr(b)
			if pa.BitLen() != pb.BitLen() {
				continue
			}
			ma, mb := m.IP(pa), m.IP(pb)
			if commonPrefix(pa, pb) != commonPrefix(ma, mb) && !(isPublic4(pa) || isPublic4(pb)) {
				t.Errorf("%s,%s share %d bits but %s,%s share %d", a, b, commonPrefix(pa, pb), ma, mb, commonPrefix(ma, mb))
			}
		}
	}
	for _, keep := range []string{"127.0.0.1", "0.0.0.0", "::1", "::", "224.0.0.1", "255.255.255.255", "ff02::1"} {
		if got := m.IP(netip.MustParseAddr(keep)).String(); got != keep {
			t.Errorf("%s changed to %s", keep, got)
		}
	}
	for _, c := range []struct{ in, pfx string }{{"10.20.30.40", "10.0.0.0/8"}, {"192.168.1.1", "192.168.0.0/16"}, {"172.17.0.2", "172.16.0.0/12"}, {"fe80::1", "fe80::/64"}, {"fd00::1", "fc00::/7"}} {
		out := m.IP(netip.MustParseAddr(c.in))
		if !netip.MustParsePrefix(c.pfx).Contains(out) || out.String() == c.in {
			t.Errorf("%s -> %s, want a different address in %s", c.in, out, c.pfx)
		}
	}
	if out := m.IP(netip.MustParseAddr("8.8.8.8")); out.IsPrivate() || out.IsLoopback() || out.IsMulticast() {
		t.Errorf("public address mapped out of class: %s", out)
	}
}

func isPublic4(a netip.Addr) bool {
	for _, c := range v4Classes {
		if c.pfx.Contains(a) {
			return false
		}
	}
	return a.Is4()
}

func commonPrefix(a, b netip.Addr) int {
	x, y := a.AsSlice(), b.AsSlice()
	for i := range x {
		d := x[i] ^ y[i]
		if d != 0 {
			n := i * 8
			for d&0x80 == 0 {
				d <<= 1
				n++
			}
			return n
		}
	}
	return len(x) * 8
}

func TestMACAndEUI64(t *testing.T) {
	m := New(testKey)
	mac := []byte{0x02, 0x42, 0xac, 0x11, 0x00, 0x02}
	out := m.MAC(mac)
	if bytes.Equal(out, mac) || out[0]&3 != mac[0]&3 || len(out) != 6 {
		t.Errorf("MAC %x -> %x", mac, out)
	}
	mc := []byte{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}
	if o := m.MAC(mc); o[0]&1 != 1 {
		t.Errorf("group bit lost: %x", o)
	}
	ll := netip.MustParseAddr("fe80::42:acff:fe11:2")
	got, ok := m.IP6WithMACs(ll, [][]byte{mac})
	e := EUI64(out)
	want := netip.AddrFrom16([16]byte{0xfe, 0x80, 8: e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]})
	if !ok || got != want {
		t.Errorf("link-local %s -> %s (ok %v), want %s", ll, got, ok, want)
	}
}

func TestHostAndUID(t *testing.T) {
	m := New(testKey)
	h := m.Host("secret-host.corp.example")
	if len(h) != len("secret-host.corp.example") || strings.Count(h, ".") != 2 || strings.Contains(h, "secret") || strings.Contains(h, "corp") || !strings.HasSuffix(h, ".example") {
		t.Errorf("host -> %q", h)
	}
	if m.Host("localhost") != "localhost" {
		t.Error("localhost changed")
	}
	if m.UID(0) != 0 || m.UID(65534) != 65534 || m.UID(4242) == 4242 || m.UID(4242) != New(testKey).UID(4242) {
		t.Error("uid mapping laws")
	}
}

func FuzzPath(f *testing.F) {
	for _, s := range []string{"/a/b/c.txt", "./x/y (deleted)", "/tmp/q/w.cr.3.ghost", "/memfd:z", "a//b/", "/usr/lib/x", "\x00abs"} {
		f.Add(s, "/extra/leaf")
	}
	f.Fuzz(func(t *testing.T, p, q string) {
		m := New(testKey)
		a := m.Path(p, PathOptions{})
		if len(a) != len(p) {
			t.Fatalf("length changed: %q -> %q", p, a)
		}
		if New(testKey).Path(p, PathOptions{}) != a {
			t.Fatalf("not deterministic for %q", p)
		}
		if strings.Count(a, "/") != strings.Count(p, "/") {
			t.Fatalf("depth changed: %q -> %q", p, a)
		}
		// prefix law on component boundaries
		if !strings.HasSuffix(p, " (deleted)") && !IsSystemPath(p) && !IsSystemPath(p+q) && strings.HasPrefix(q, "/") {
			if b := m.Path(p+q, PathOptions{}); !strings.HasPrefix(b, a) {
				t.Fatalf("prefix lost: %q -> %q, %q -> %q", p, a, p+q, b)
			}
		}
	})
}

func FuzzIP(f *testing.F) {
	f.Add([]byte{10, 1, 2, 3}, []byte{10, 1, 9, 9})
	f.Add(bytes.Repeat([]byte{0x20}, 16), bytes.Repeat([]byte{0x21}, 16))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		m := New(testKey)
		x, y := m.IPBytes(a), m.IPBytes(b)
		if len(x) != len(a) || len(y) != len(b) {
			t.Fatal("length changed")
		}
		if len(a) == len(b) && (len(a) == 4 || len(a) == 16) && bytes.Equal(a, b) != bytes.Equal(x, y) {
			t.Fatalf("not injective: %x %x -> %x %x", a, b, x, y)
		}
	})
}

func FuzzHostMAC(f *testing.F) {
	f.Add("secret-host.corp.example", []byte{2, 0x42, 0xac, 0x11, 0, 2})
	f.Add("a..b.", []byte{1})
	f.Fuzz(func(t *testing.T, h string, mac []byte) {
		m := New(testKey)
		out := m.Host(h)
		if len(out) != len(h) || strings.Count(out, ".") != strings.Count(h, ".") {
			t.Fatalf("host %q -> %q", h, out)
		}
		mo := m.MAC(mac)
		if len(mo) != len(mac) || len(mac) > 0 && mo[0]&3 != mac[0]&3 {
			t.Fatalf("mac %x -> %x", mac, mo)
		}
	})
}

func TestPathLocalTrees(t *testing.T) {
	m := New(testKey)
	for _, tt := range []struct{ in, gone string }{
		{"/srv/www.zqsecret.com/key.pem", "zqsecret"},
		{"/srv/4111111111111111/x", "4111111111111111"},
		{"/usr/local/zqapp/bin/run", "zqapp"},
		{"/etc/ssl/private/zqhost.key", "zqhost"},
		{"/sys/fs/cgroup/memory/zqgroup/tasks", "zqgroup"},
	} {
		got := m.Path(tt.in, PathOptions{})
		if strings.Contains(got, tt.gone) || len(got) != len(tt.in) {
			t.Errorf("Path(%q) = %q: %q kept", tt.in, got, tt.gone)
		}
	}
	for in, ext := range map[string]string{"a.tar.gz": ".tar.gz", "libc.so.6": ".so.6", "www.x.com": ".com", "db.sqlite": ".sqlite"} {
		if _, e := splitExt(in); e != ext {
			t.Errorf("splitExt(%q) ext %q, want %q", in, e, ext)
		}
	}
	if got := m.Path("/sys/fs/cgroup/memory/tasks", PathOptions{}); got != "/sys/fs/cgroup/memory/tasks" {
		t.Errorf("controller path mapped: %q", got)
	}
}
