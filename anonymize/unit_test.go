package anonymize

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/cgroup"
	"github.com/criukit/criukit/anonymize/dict"
	"github.com/criukit/criukit/anonymize/logscrub"
	"github.com/criukit/criukit/anonymize/pseudo"
	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/image/nldump"
	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/workload"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

func testRun(t testing.TB, lvl Level) *run {
	r, err := newRun(t.TempDir(), t.TempDir(), Options{Level: lvl, Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestFieldCoverage: every string/bytes field of every image message is classified, so a new
// CRIU field is a test failure until someone decides how to anonymize it.
func TestFieldCoverage(t *testing.T) {
	seen := map[protoreflect.FullName]bool{}
	var walk func(md protoreflect.MessageDescriptor)
	walk = func(md protoreflect.MessageDescriptor) {
		if seen[md.FullName()] {
			return
		}
		seen[md.FullName()] = true
		fs := md.Fields()
		for i := 0; i < fs.Len(); i++ {
			f := fs.Get(i)
			switch f.Kind() {
			case protoreflect.StringKind, protoreflect.BytesKind:
				if _, ok := fieldRules[f.FullName()]; !ok {
					t.Errorf("field %s (%s) is not classified in fieldRules", f.FullName(), f.Kind())
				}
			case protoreflect.MessageKind:
				walk(f.Message())
			}
		}
	}
	for _, d := range image.Descs() {
		for i := 0; i < 2; i++ {
			if m := d.MessageFor(i); m != nil {
				walk(m.ProtoReflect().Descriptor())
			}
		}
	}
	if len(seen) < 50 {
		t.Errorf("only %d messages walked", len(seen))
	}
}

func nlAttr(typ uint16, val []byte) []byte {
	b := make([]byte, 4, 4+len(val)+3)
	binary.LittleEndian.PutUint16(b, uint16(4+len(val)))
	binary.LittleEndian.PutUint16(b[2:], typ)
	b = append(b, val...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func nlMsg(typ uint16, hdr []byte, attrs ...[]byte) []byte {
	body := append([]byte(nil), hdr...)
	for _, a := range attrs {
		body = append(body, a...)
	}
	h := make([]byte, 16)
	binary.LittleEndian.PutUint32(h, uint32(16+len(body)))
	binary.LittleEndian.PutUint16(h[4:], typ)
	return append(h, body...)
}

func TestIPDumpRewrite(t *testing.T) {
	r := testRun(t, Identity)
	mac := []byte{0x02, 0xc0, 0xff, 0xee, 0x00, 0x01}
	r.macs = [][]byte{mac}
	e := pseudo.EUI64(mac)
	ll := append([]byte{0xfe, 0x80, 0, 0, 0, 0, 0, 0}, e[:]...)
	a4 := []byte{10, 77, 0, 1}
	dump := binary.LittleEndian.AppendUint32(nil, ipaddMagic)
	dump = append(dump, nlMsg(rtmNewAddr, []byte{2, 24, 0, 0, 3, 0, 0, 0}, nlAttr(ifaAddress, a4), nlAttr(ifaLocal, a4), nlAttr(ifaLabel, []byte("veth-bob\x00")))...)
	dump = append(dump, nlMsg(rtmNewAddr, []byte{10, 64, 0, 0, 3, 0, 0, 0}, nlAttr(ifaAddress, ll))...)
	route := binary.LittleEndian.AppendUint32(nil, routeMagic)
	route = append(route, nlMsg(rtmNewRoute, []byte{2, 24, 0, 0, 254, 4, 0, 1, 0, 0, 0, 0}, nlAttr(rtaDst, []byte{10, 78, 0, 0}), nlAttr(rtaGateway, []byte{10, 77, 0, 2}))...)
	orig := append([]byte(nil), dump...)
	if _, err := r.rewriteIPDump(dump); err != nil {
		t.Fatal(err)
	}
	if _, err := r.rewriteIPDump(route); err != nil {
		t.Fatal(err)
	}
	if len(dump) != len(orig) || bytes.Contains(dump, a4) || bytes.Contains(dump, []byte("veth-bob")) || bytes.Contains(dump, e[:]) {
		t.Errorf("address, label or EUI-64 left: %x", dump)
	}
	newE := pseudo.EUI64(r.m.MAC(mac))
	if !bytes.Contains(dump, newE[:]) {
		t.Error("link-local not recomputed from the mapped MAC")
	}
	// same /24 in the address and its route's gateway; route dst keeps zero host bits
	m4 := r.m.IP(netip.AddrFrom4([4]byte(a4))).As4()
	if !bytes.Contains(route, m4[:3]) {
		t.Errorf("gateway lost the shared /24 with the address: %x vs %x", route, m4)
	}
	dst := r.mapIPRaw(netip.MustParseAddr("10.78.0.0")).As4()
	if !bytes.Contains(route, []byte{dst[0], dst[1], dst[2], 0}) || dst[3] != 0 {
		t.Errorf("route dst not a network address: %x", route)
	}
	// the route's network address in a log line maps exactly as in the route image
	var logOut bytes.Buffer
	s := &logscrub.Scrubber{M: r.m, D: dict.New(), IP: r.mapIP}
	s.Scrub(strings.NewReader("route to 10.78.0.0 via 10.77.0.2\n"), &logOut)
	if want := netip.AddrFrom4(dst).String(); !strings.Contains(logOut.String(), want+" ") {
		t.Errorf("log maps the route's network differently: %q, image %s", logOut.String(), want)
	}
	if _, err := r.rewriteIPDump([]byte{1, 2, 3, 4, 5}); err == nil {
		t.Error("garbage accepted")
	}
	// an ECMP route: the gateways sit in rtnexthop records inside RTA_MULTIPATH
	gw1, gw2 := []byte{10, 77, 0, 9}, []byte{10, 79, 0, 9}
	nh := func(gw []byte) []byte {
		a := nlAttr(rtaGateway, gw)
		h := []byte{byte(8 + len(a)), 0, 0, 0, 3, 0, 0, 0}
		return append(h, a...)
	}
	multi := binary.LittleEndian.AppendUint32(nil, routeMagic)
	multi = append(multi, nlMsg(rtmNewRoute, []byte{2, 0, 0, 0, 254, 4, 0, 1, 0, 0, 0, 0}, nlAttr(rtaMultipath, append(nh(gw1), nh(gw2)...)))...)
	if _, err := r.rewriteIPDump(multi); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(multi, gw1) || bytes.Contains(multi, gw2) {
		t.Errorf("multipath gateway left: %x", multi)
	}
}

func TestRulesText(t *testing.T) {
	r := testRun(t, Identity)
	in := "-A INPUT -s 203.0.113.77/32 -i veth-bob -m comment --comment \"bob-home-office\" -j ACCEPT\n" +
		"-A INPUT -d 10.20.0.0/16 -o lo -j DROP\n" +
		"table inet f { chain c { ip saddr 198.51.100.7 iifname \"veth-bob\" comment \"alice\" accept } }\n"
	out := r.rewriteRules(in)
	for _, s := range []string{"203.0.113.77", "bob-home-office", "veth-bob", "198.51.100.7", "alice"} {
		if strings.Contains(out, s) {
			t.Errorf("%q left in %q", s, out)
		}
	}
	for _, s := range []string{"-A INPUT", "/32", "-o lo", ".0.0/16", "-j DROP", "accept"} {
		if !strings.Contains(out, s) {
			t.Errorf("%q lost in %q", s, out)
		}
	}
}

func TestArgvEnvArea(t *testing.T) {
	r := testRun(t, Content)
	argv := []byte("/usr/bin/python3\x00serve\x00--password=Hunter2!\x00--db\x00postgres://bob:pw@db.corp.example/payroll\x00/tmp/alice/app.conf\x00")
	env := []byte("HOME=/home/alice\x00TOKEN=s3cr3t-value\x00LANG=C.UTF-8\x00EMPTY=\x00")
	na, ne := r.rewriteArea(argv, false), r.rewriteArea(env, true)
	if len(na) != len(argv) || len(ne) != len(env) || bytes.Count(na, []byte{0}) != bytes.Count(argv, []byte{0}) {
		t.Fatalf("lengths or separators changed")
	}
	for _, s := range []string{"Hunter2!", "bob:pw", "alice", "s3cr3t"} {
		if bytes.Contains(na, []byte(s)) || bytes.Contains(ne, []byte(s)) {
			t.Errorf("%q left: %q %q", s, na, ne)
		}
	}
	for _, s := range []string{"/usr/bin/python3\x00serve\x00--password=", "\x00--db\x00", "HOME=/home/", "TOKEN=", "EMPTY=\x00"} {
		if !bytes.Contains(append(na, ne...), []byte(s)) {
			t.Errorf("%q lost: %q %q", s, na, ne)
		}
	}
}

func TestTarRepack(t *testing.T) {
	for _, lvl := range []Level{Content, Identity, Paranoid} {
		r := testRun(t, lvl)
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		tw.WriteHeader(&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755})
		tw.WriteHeader(&tar.Header{Name: "./credentials-alice", Typeflag: tar.TypeReg, Size: 12, Mode: 0o600, Uid: 4242, Gid: 4242})
		tw.Write([]byte("password=123"))
		tw.WriteHeader(&tar.Header{Name: "./link", Typeflag: tar.TypeSymlink, Linkname: "credentials-alice"})
		tw.Close()
		zw.Close()
		in := filepath.Join(t.TempDir(), "tmpfs-dev-1.tar.gz.img")
		os.WriteFile(in, buf.Bytes(), 0o600)
		out := filepath.Join(t.TempDir(), "x")
		n, err := r.repackTar(in, out)
		if err != nil || n != 3 {
			t.Fatalf("%s: %d members, %v", lvl, n, err)
		}
		b, _ := os.ReadFile(out)
		zr, _ := gzip.NewReader(bytes.NewReader(b))
		plain, _ := io.ReadAll(zr)
		if bytes.Contains(plain, []byte("password=123")) {
			t.Errorf("%s: content left", lvl)
		}
		if lvl >= Identity && (bytes.Contains(plain, []byte("alice")) || bytes.Contains(plain, []byte("4242"))) {
			t.Errorf("%s: name or uid left", lvl)
		}
	}
}

// rtnetlink numbers for hand-made iproute2 save dumps.
const (
	ipaddMagic   = nldump.MagicAddr
	routeMagic   = nldump.MagicRoute
	rtmNewAddr   = 20
	rtmNewRoute  = 24
	ifaAddress   = 1
	ifaLocal     = 2
	ifaLabel     = 3
	rtaDst       = 1
	rtaGateway   = 5
	rtaMultipath = 9
)

func FuzzIPDump(f *testing.F) {
	d := binary.LittleEndian.AppendUint32(nil, ipaddMagic)
	d = append(d, nlMsg(rtmNewAddr, []byte{2, 24, 0, 0, 3, 0, 0, 0}, nlAttr(ifaAddress, []byte{10, 0, 0, 1}), nlAttr(ifaLabel, []byte("eth9\x00")))...)
	f.Add(d)
	r := binary.LittleEndian.AppendUint32(nil, routeMagic)
	f.Add(append(r, nlMsg(rtmNewRoute, make([]byte, 12), nlAttr(rtaDst, make([]byte, 16)))...))
	f.Fuzz(func(t *testing.T, b []byte) {
		x := testRun(t, Identity)
		orig := append([]byte(nil), b...)
		_, err := x.rewriteIPDump(b)
		if len(b) != len(orig) {
			t.Fatal("length changed")
		}
		if err == nil {
			if _, err := nldump.Parse(b); err != nil {
				t.Fatalf("rewritten dump does not parse: %v", err)
			}
		}
	})
}

func FuzzRulesText(f *testing.F) {
	f.Add("-A INPUT -s 10.0.0.1/8 -i eth9 --comment \"x y\" -j ACCEPT\n")
	f.Add("table ip t { chain c { ip daddr fe80::1/64 oifname \"wg0\" comment \"c\" } }")
	f.Fuzz(func(t *testing.T, s string) {
		x := testRun(t, Identity)
		a := x.rewriteRules(s)
		if strings.Count(a, "\n") != strings.Count(s, "\n") {
			t.Fatalf("line count changed: %q -> %q", s, a)
		}
	})
}

func FuzzArea(f *testing.F) {
	f.Add([]byte("a\x00--k=v\x00/tmp/x/y\x00"), true)
	f.Add([]byte("K=V\x00=\x00X"), false)
	f.Fuzz(func(t *testing.T, b []byte, env bool) {
		x := testRun(t, Content)
		out := x.rewriteArea(b, env)
		if len(out) != len(b) || bytes.Count(out, []byte{0}) != bytes.Count(b, []byte{0}) {
			t.Fatalf("%q -> %q", b, out)
		}
	})
}

func FuzzReadKit(f *testing.F) {
	f.Add("d 0 0 /a\nf 12 644 /a/b c\np 0 0 /a/f\n")
	f.Add("x 1 2 3")
	f.Fuzz(func(t *testing.T, s string) {
		p := filepath.Join(t.TempDir(), KitFile)
		os.WriteFile(p, []byte(s), 0o600)
		ents, err := ReadKit(p)
		if err != nil {
			return
		}
		os.WriteFile(p, []byte(KitText(ents)), 0o600)
		again, err := ReadKit(p)
		if err != nil || len(again) != len(ents) {
			t.Fatalf("kit does not round-trip: %v", err)
		}
	})
}

func FuzzTarRepack(f *testing.F) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "./a/b", Typeflag: tar.TypeReg, Size: 3})
	tw.Write([]byte("abc"))
	tw.Close()
	zw.Close()
	f.Add(buf.Bytes())
	f.Add([]byte{0x1f, 0x8b, 8, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		x := testRun(t, Identity)
		in := filepath.Join(t.TempDir(), "in")
		os.WriteFile(in, b, 0o600)
		if _, err := x.repackTar(in, filepath.Join(t.TempDir(), "out")); err != nil {
			return
		}
	})
}

func TestInventoryReport(t *testing.T) {
	d := harness.CorpusDump(t, "files")
	rep, err := InventoryReport(d.Dir, Options{Key: testKey, Logs: []string{d.Log}, Secrets: []string{workload.DefaultSecret}})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Verified || rep.Counts["path"] == 0 || len(rep.Samples["path"]) == 0 || len(rep.Files) == 0 {
		t.Errorf("inventory: %+v", rep)
	}
	found := false
	for _, s := range rep.Samples["arg"] {
		found = found || s == workload.DefaultSecret
	}
	if !found {
		t.Errorf("planted argv secret not among the samples: %v", rep.Samples["arg"])
	}
}

func TestMCSAndText(t *testing.T) {
	r := testRun(t, Identity)
	f := (&fieldsDummy{}).fd(t, "fdinfo_entry.xattr_security_selinux")
	v, ok := r.applyRule(ruleText, f, protoreflect.ValueOfString("system_u:object_r:container_file_t:s0:c123,c456"))
	if !ok || v.String() != "system_u:object_r:container_file_t:s0" {
		t.Errorf("MCS categories kept: %v %q", ok, v.String())
	}
}

type fieldsDummy struct{}

func (fieldsDummy) fd(t *testing.T, full string) protoreflect.FieldDescriptor {
	for _, d := range image.Descs() {
		for i := 0; i < 2; i++ {
			m := d.MessageFor(i)
			if m == nil {
				continue
			}
			if f := findField(m.ProtoReflect().Descriptor(), protoreflect.FullName(full), map[protoreflect.FullName]bool{}); f != nil {
				return f
			}
		}
	}
	t.Fatalf("no field %s", full)
	return nil
}

func findField(md protoreflect.MessageDescriptor, full protoreflect.FullName, seen map[protoreflect.FullName]bool) protoreflect.FieldDescriptor {
	if seen[md.FullName()] {
		return nil
	}
	seen[md.FullName()] = true
	fs := md.Fields()
	for i := 0; i < fs.Len(); i++ {
		f := fs.Get(i)
		if f.FullName() == full {
			return f
		}
		if f.Kind() == protoreflect.MessageKind {
			if x := findField(f.Message(), full, seen); x != nil {
				return x
			}
		}
	}
	return nil
}

// TestCgroupConsistency: member paths and controller dir trees are mapped alike, so the
// verification's containment check still holds after identity.
func TestCgroupConsistency(t *testing.T) {
	str := func(s string) *string { return &s }
	u32 := func(v uint32) *uint32 { return &v }
	cg := &cgroup.CgroupEntry{
		Sets: []*cgroup.CgSetEntry{{Id: u32(1), Ctls: []*cgroup.CgMemberEntry{{Name: str("pids"), Path: str("/alice-secret-job/worker.scope")}}}},
		Controllers: []*cgroup.CgControllerEntry{{Cnames: []string{"pids"}, Dirs: []*cgroup.CgroupDirEntry{{DirName: str("alice-secret-job"),
			Children: []*cgroup.CgroupDirEntry{{DirName: str("worker.scope")}}}}}},
	}
	for _, lvl := range []Level{Identity, Paranoid} {
		r := testRun(t, lvl)
		c := proto.Clone(cg).(*cgroup.CgroupEntry)
		r.transformMsg(c.ProtoReflect())
		n := 0
		if p := cgroupRefs(c, nil, &n); len(p) != 0 || n == 0 {
			t.Errorf("%s: %v (%d checks)", lvl, p, n)
		}
		if strings.Contains(c.String(), "alice") {
			t.Errorf("%s: name left: %v", lvl, c)
		}
	}
}
