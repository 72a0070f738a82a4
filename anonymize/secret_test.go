package anonymize

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	core_x86 "github.com/checkpoint-restore/go-criu/v8/crit/images/core-x86"
	criu_core "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/criukit/criukit/anonymize/dict"
	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/testenv"
	"google.golang.org/protobuf/proto"
)

// TestSecretPieces: every findable piece of a --secret value (whole, UTF-16LE, prefixes and
// suffixes >= 6 bytes, 7/8-byte windows) is replaced in memory-like bytes, and nothing is left.
func TestSecretPieces(t *testing.T) {
	const s = "criukit-planted-secret-C0FFEE"
	r, err := newRun(t.TempDir(), t.TempDir(), Options{Level: Content, Key: testKey, Secrets: []string{s}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.Write(bytes.Repeat([]byte{0x11}, 100))
	for _, p := range [][]byte{[]byte(s), utf16le(s), []byte(s[:9]), []byte(s[len(s)-7:]), []byte(s[5:13]), []byte(s[3:10])} {
		buf.Write(p)
		buf.Write([]byte{0, 0x7f, 3})
	}
	b := buf.Bytes()
	n := r.sec.ReplaceBytes(b, len(b))
	var left []string
	r.sec.Find(b, len(b), 0, func(h dict.Hit) bool { left = append(left, h.String()); return true })
	if n < 6 || len(left) > 0 {
		t.Fatalf("replaced %d, left %v", n, left)
	}
	if bytes.Contains(b, []byte("planted")) {
		t.Fatalf("secret left: %q", b)
	}
}

// TestUnsafeInputs: issue 11 item 6. A hard link in the image dir (to /etc/shadow, named x.log)
// is never copied; OUTDIR inside IMGDIR, --map-out inside OUTDIR (any spelling) and a dir that
// holds no CRIU images are refused.
func TestUnsafeInputs(t *testing.T) {
	d := harness.CorpusDump(t, "files")
	base := t.TempDir()
	in := filepath.Join(base, "in")
	os.Mkdir(in, 0o755)
	ents, _ := os.ReadDir(d.Dir)
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(d.Dir, e.Name()))
		os.WriteFile(filepath.Join(in, e.Name()), b, 0o600)
	}
	// a "system file" with a secret, hard-linked into the image dir under a log's name
	shadow := filepath.Join(base, "shadow")
	os.WriteFile(shadow, []byte("root:zqshadowhash77:19000:0:99999:7:::\n"), 0o600)
	if err := os.Link(shadow, filepath.Join(in, "x.log")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(base, "out")
	man, err := Run(in, out, Options{Level: Content, Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "x.log")); err == nil {
		t.Errorf("hard link copied: %q", b)
	}
	dropped := false
	for _, x := range man.Dropped {
		dropped = dropped || x.Name == "x.log" && strings.Contains(x.Reason, "hard link")
	}
	if !dropped {
		t.Errorf("hard link not listed as dropped: %+v", man.Dropped)
	}
	for _, c := range []struct {
		what        string
		out, mapOut string
	}{
		{"OUTDIR inside IMGDIR", filepath.Join(in, "out"), ""},
		{"OUTDIR inside IMGDIR (spelled with ..)", filepath.Join(in, "..", "in", "sub", "out"), ""},
		{"--map-out inside OUTDIR", filepath.Join(base, "o2"), filepath.Join(base, "o2", "map.json")},
		{"--map-out OUT/../OUT/x", filepath.Join(base, "o3"), filepath.Join(base, "o3", "..", "o3", "m.json")},
	} {
		if _, err := Run(in, c.out, Options{Level: Identity, MapOut: c.mapOut}); err == nil {
			t.Errorf("%s accepted", c.what)
		}
	}
	// relative OUTDIR, absolute --map-out inside it
	wd, _ := os.Getwd()
	os.Chdir(base)
	_, err = Run(in, "o4", Options{Level: Identity, MapOut: filepath.Join(base, "o4", "m.json")})
	os.Chdir(wd)
	if err == nil {
		t.Error("absolute --map-out inside a relative OUTDIR accepted")
	}
	empty := filepath.Join(base, "empty")
	os.Mkdir(empty, 0o755)
	if _, err := Run(empty, filepath.Join(base, "o5"), Options{Level: Identity}); !errors.Is(err, ErrNotImageDir) {
		t.Errorf("empty dir: %v, want ErrNotImageDir", err)
	}
	if _, err := os.Stat(filepath.Join(base, "o5")); err == nil {
		t.Error("output written for an empty dir")
	}
}

// TestRegisters: a general register holding 8 bytes of a secret (a string being copied, a path in
// rbx) is rewritten to the same bytes of its pseudonym, and the verifier's check agrees.
func TestRegisters(t *testing.T) {
	const s = "zqREGISTERsecret99"
	r, err := newRun(t.TempDir(), t.TempDir(), Options{Level: Content, Key: testKey, Secrets: []string{s}})
	if err != nil {
		t.Fatal(err)
	}
	v := binary.LittleEndian.Uint64([]byte(s[3:11]))
	regs := &core_x86.UserX86RegsEntry{Bx: proto.Uint64(v), Ax: proto.Uint64(0x00007ffd12345678)}
	img := &image.Image{Desc: &image.Desc{Name: "CORE"}, Entries: []*image.Entry{{Msg: &criu_core.CoreEntry{
		ThreadInfo: &core_x86.ThreadInfoX86{Gpregs: regs}}}}}
	r.imgs["core-1.img"] = img
	bad := 0
	regLeaks(img, r.sec, func(string) { bad++ })
	if bad != 1 {
		t.Fatalf("verifier found %d register leaks before the rewrite, want 1", bad)
	}
	if ch := r.rewriteRegisters(r.sec); len(ch) != 1 {
		t.Fatalf("rewritten: %v", ch)
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], regs.GetBx())
	if bytes.Contains([]byte(s), b[:]) || regs.GetAx() != 0x00007ffd12345678 {
		t.Errorf("rbx %q rax %#x", b, regs.GetAx())
	}
	bad = 0
	regLeaks(img, r.sec, func(string) { bad++ })
	if bad != 0 {
		t.Errorf("verifier still finds %d register leaks", bad)
	}
}

// TestRestoreKitInotify: issue 11 item 7. A task with an inotify watch on a private dir restores
// from the identity level with --restore-kit: the kit recreates the watched (mapped) dir.
func TestRestoreKitInotify(t *testing.T) {
	harness.Criu(t)
	testenv.Command(t, "python3")
	base := t.TempDir()
	watched := filepath.Join(base, "zqwatched5")
	os.Mkdir(watched, 0o755)
	const py = `import ctypes, sys, time
libc = ctypes.CDLL("libc.so.6", use_errno=True)
fd = libc.inotify_init()
assert libc.inotify_add_watch(fd, sys.argv[1].encode(), 0x100) >= 0
open(sys.argv[2], "w").close()
time.sleep(1000)
`
	ready := filepath.Join(base, "ready")
	p := harness.StartProgram(t, harness.Program{Name: "inotify", Dir: base, Argv: []string{"/usr/bin/python3", "-c", py, watched, ready},
		Ready: harness.FileExists(ready)})
	d := p.Dump(t)
	os.RemoveAll(watched) // the original is gone: CRIU must open the mapped path the kit makes
	out := filepath.Join(t.TempDir(), "out")
	mapOut := filepath.Join(t.TempDir(), "map.json")
	if _, err := Run(d.Dir, out, Options{Level: Identity, Key: testKey, RestoreKit: true, MapOut: mapOut}); err != nil {
		t.Fatal(err)
	}
	kit, _ := os.ReadFile(filepath.Join(out, KitFile))
	if bytes.Contains(kit, []byte("zqwatched5")) || !bytes.Contains(kit, []byte("d 0 0 ")) {
		t.Fatalf("kit: %q", kit)
	}
	kitRestore(t, out)
	rp := (&harness.Dump{Dir: out, Log: d.Log, Workload: d.Workload}).Restore(t)
	time.Sleep(300 * time.Millisecond)
	if !rp.Alive() {
		t.Fatalf("restored pid %d died", rp.Pid)
	}
	rp.Kill()
}
