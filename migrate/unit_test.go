package migrate

import (
	"bytes"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/internal/pageproto"
)

type rwBuf struct {
	io.Reader
	out bytes.Buffer
}

func (r *rwBuf) Write(b []byte) (int, error) { return r.out.Write(b) }

func session(parentFlag bool) []byte {
	ps := uint64(os.Getpagesize())
	var b bytes.Buffer
	b.Write(pageproto.Header{Cmd: pageproto.IovOpen2, DstID: 42<<8 | pageproto.TypePid}.Bytes())
	b.Write(pageproto.Header{Cmd: pageproto.IovAddF, Flags: image.PEPresent, Nr: 2, Vaddr: 0x10000, DstID: 42<<8 | pageproto.TypePid}.Bytes())
	b.Write(bytes.Repeat([]byte{0xab}, int(2*ps)))
	if parentFlag {
		b.Write(pageproto.Header{Cmd: pageproto.IovAddF, Flags: image.PEParent, Nr: 3, Vaddr: 0x12000, DstID: 42<<8 | pageproto.TypePid}.Bytes())
	}
	b.Write(pageproto.Header{Cmd: pageproto.IovAddF, Flags: image.PEPresent, Nr: 1, Vaddr: 0x20000, DstID: 42<<8 | pageproto.TypePid}.Bytes())
	b.Write(bytes.Repeat([]byte{0xcd}, int(ps)))
	b.Write(pageproto.Header{Cmd: pageproto.IovClose}.Bytes())
	return b.Bytes()
}

// The chain writer writes what criu's page server writes: a pagemap with stored and PE_PARENT
// entries (contiguous ones merged), the pages, and the parent link; image.Memory reads it back
// through the parent.
func TestChainWriter(t *testing.T) {
	base := t.TempDir()
	// parent round: 5 pages at 0x10000 of 0x11
	w0, err := newChainWriter(filepath.Join(base, "round-0"), "")
	if err != nil {
		t.Fatal(err)
	}
	var p bytes.Buffer
	ps := uint64(os.Getpagesize())
	p.Write(pageproto.Header{Cmd: pageproto.IovOpen2, DstID: 42<<8 | pageproto.TypePid}.Bytes())
	p.Write(pageproto.Header{Cmd: pageproto.IovAddF, Flags: image.PEPresent, Nr: 5, Vaddr: 0x10000, DstID: 42<<8 | pageproto.TypePid}.Bytes())
	p.Write(bytes.Repeat([]byte{0x11}, int(5*ps)))
	p.Write(pageproto.Header{Cmd: pageproto.IovClose}.Bytes())
	if err := w0.serve(&rwBuf{Reader: &p}); err != nil {
		t.Fatal(err)
	}
	w1, err := newChainWriter(filepath.Join(base, "round-1"), "../round-0")
	if err != nil {
		t.Fatal(err)
	}
	rw := &rwBuf{Reader: bytes.NewReader(session(true))}
	if err := w1.serve(rw); err != nil {
		t.Fatal(err)
	}
	if w1.Stored != 3 || w1.Parent != 3 {
		t.Fatalf("stored %d parent %d", w1.Stored, w1.Parent)
	}
	if got := rw.out.Len(); got != 1+4 {
		t.Fatalf("answers: %d bytes, want 1 (OPEN2) + 4 (CLOSE)", got)
	}
	m, err := image.OpenMemory(filepath.Join(base, "round-1"), 42)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if r := m.Ranges(); len(r) != 3 { // present 2 | parent 3 | present 1
		t.Fatalf("ranges %+v", r)
	}
	for _, c := range []struct {
		va   int64
		want byte
	}{{0x10000, 0xab}, {0x11000, 0xab}, {0x12000, 0x11}, {0x14000, 0x11}, {0x20000, 0xcd}} {
		b := make([]byte, 1)
		if _, err := m.ReadAt(b, c.va); err != nil || b[0] != c.want {
			t.Errorf("byte at %#x: %x (%v), want %x", c.va, b, err, c.want)
		}
	}
}

func TestChainWriterRefuses(t *testing.T) {
	for name, in := range map[string][]byte{
		"parent without parent round": session(true),
		"truncated":                   session(false)[:100],
		"pages before open":           pageproto.Header{Cmd: pageproto.IovAddF, Flags: image.PEPresent, Nr: 1}.Bytes(),
		"unknown command":             pageproto.Header{Cmd: 99}.Bytes(),
	} {
		w, _ := newChainWriter(t.TempDir(), "")
		if err := w.serve(&rwBuf{Reader: bytes.NewReader(in)}); err == nil {
			t.Errorf("%s: accepted", name)
		}
		ents, _ := os.ReadDir(w.dir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "pagemap") {
				t.Errorf("%s: left %s behind", name, e.Name())
			}
		}
	}
}

func TestCoverage(t *testing.T) {
	c := coverage{}
	c.add(1, 0x1000, 0x3000)
	c.add(1, 0x3000, 0x4000)
	c.add(1, 0x8000, 0x9000)
	c.sort()
	for va, want := range map[uint64]bool{0x0: false, 0x1000: true, 0x3fff: true, 0x4000: false, 0x8000: true, 0x9000: false} {
		if c.has(1, va) != want {
			t.Errorf("has(%#x) = %v", va, !want)
		}
	}
	if c.has(2, 0x1000) {
		t.Error("other dst")
	}
}

func TestDropRules(t *testing.T) {
	s := dropRules("criukit-group-1", []Tuple{
		{netip.MustParseAddrPort("10.0.0.1:1000"), netip.MustParseAddrPort("10.0.0.2:80")},
		{netip.MustParseAddrPort("[fd00::1]:1000"), netip.MustParseAddrPort("[fd00::2]:80")},
	})
	for _, want := range []string{
		"ip saddr 10.0.0.1 ip daddr 10.0.0.2 tcp sport 1000 tcp dport 80 counter drop",
		"ip saddr 10.0.0.2 ip daddr 10.0.0.1 tcp sport 80 tcp dport 1000 counter drop",
		"ip6 saddr fd00::2 ip6 daddr fd00::1 tcp sport 80 tcp dport 1000 counter drop",
		"type filter hook input", "type filter hook output",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("rules lack %q:\n%s", want, s)
		}
	}
}

func FuzzChainWriter(f *testing.F) {
	f.Add(session(false))
	f.Add(session(true))
	f.Fuzz(func(t *testing.T, in []byte) {
		w, _ := newChainWriter(t.TempDir(), "../round-0")
		_ = w.serve(&rwBuf{Reader: bytes.NewReader(in)})
	})
}

func FuzzUntar(f *testing.F) {
	var b bytes.Buffer
	d := f.TempDir()
	os.WriteFile(filepath.Join(d, "core-1.img"), []byte("x"), 0o600)
	sendTar(&b, d)
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, in []byte) {
		dir := t.TempDir()
		_, _ = untarFlat(bytes.NewReader(in), dir)
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if !e.Type().IsRegular() {
				t.Fatalf("untar made %s (%v)", e.Name(), e.Type())
			}
		}
	})
}

func TestUncovered(t *testing.T) {
	a := []span{{0, 10}, {20, 30}, {40, 50}}
	b := []span{{0, 5}, {7, 8}, {20, 30}, {45, 60}}
	got := uncovered(a, b)
	want := []span{{5, 7}, {8, 10}, {40, 45}}
	if len(got) != len(want) {
		t.Fatalf("%v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%v, want %v", got, want)
		}
	}
	if r := uncovered(b[:1], a); len(r) != 0 {
		t.Fatalf("%v", r)
	}
}
