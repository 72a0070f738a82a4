package cow

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/internal/pageproto"
	"google.golang.org/protobuf/proto"
)

func TestImagesDirArg(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "."},
		{[]string{"-D", "/a"}, "/a"},
		{[]string{"-D/b", "-d"}, "/b"},
		{[]string{"--images-dir", "/c", "--auto-dedup"}, "/c"},
		{[]string{"--images-dir=/d"}, "/d"},
		{[]string{"-v4", "--", "-D", "/e"}, "."},
		{[]string{"-D"}, "."},
	} {
		if got := ImagesDirArg(tc.args); got != tc.want {
			t.Errorf("ImagesDirArg(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestCheckRestoreArgs(t *testing.T) {
	deduped, stock, chain := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(deduped, MarkerFile), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("cow-1", filepath.Join(chain, "parent")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args    []string
		refused bool
	}{
		{[]string{"-D", deduped, "-d"}, false},
		{[]string{"-D", deduped, "--auto-dedup"}, true},
		{[]string{"--images-dir=" + deduped, "--stream"}, true},
		{[]string{"-D" + deduped, "--stream=true"}, true},
		{[]string{"-D", stock, "--auto-dedup", "--stream"}, false},
		{[]string{"-D", chain, "--auto-dedup"}, true},
		{[]string{"-D", deduped, "--", "--auto-dedup"}, false},
	} {
		err := CheckRestoreArgs(tc.args)
		if got := errors.Is(err, ErrUnsafeOpt); got != tc.refused {
			t.Errorf("CheckRestoreArgs(%q) = %v, refused want %v", tc.args, err, tc.refused)
		}
	}
}

// psMsg builds one page-server header.
func psMsg(cmd uint32, nr, va, dst uint64) []byte {
	return pageproto.Header{Cmd: cmd & 0xffff, Flags: cmd >> 16, Nr: nr, Vaddr: va, DstID: dst}.Bytes()
}

type rw struct {
	r *bytes.Reader
	w bytes.Buffer
}

func (x *rw) Read(p []byte) (int, error)  { return x.r.Read(p) }
func (x *rw) Write(p []byte) (int, error) { return x.w.Write(p) }

// pageStream is a minimal criu session: two processes, the second sharing the first's 2 pages
// (one moved), then close.
func pageStream() []byte {
	page := func(v byte) []byte { return bytes.Repeat([]byte{v}, 4096) }
	var s []byte
	s = append(s, psMsg(pageproto.IovOpen2, 0, 0, 10<<8|pageproto.TypePid)...)
	s = append(s, psMsg(pageproto.IovAddF|6<<16, 2, 0x10000, 10<<8|pageproto.TypePid)...)
	s = append(s, page(1)...)
	s = append(s, page(2)...)
	s = append(s, psMsg(pageproto.IovOpen2, 0, 0, 11<<8|pageproto.TypePid)...)
	s = append(s, psMsg(pageproto.IovAddF|4<<16, 3, 0x8000, 11<<8|pageproto.TypePid)...)
	s = append(s, page(2)...)
	s = append(s, page(7)...)
	s = append(s, page(1)...)
	s = append(s, psMsg(pageproto.IovClose, 0, 0, 0)...)
	return s
}

func TestPageServerStream(t *testing.T) {
	dir := t.TempDir()
	s := &PageServer{dir: dir, d: newDeduper(dir, Options{}), ppids: map[int]int{11: 10}}
	c := &rw{r: bytes.NewReader(pageStream())}
	if err := s.Serve(c); err != nil {
		t.Fatal(err)
	}
	s.recvd = 5 * 4096
	res, err := s.d.finish(s.recvd)
	s.d.close()
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0, 0, 0, 0, 0, 0}; !bytes.Equal(c.w.Bytes(), want) { // 2 x has_parent, close status
		t.Errorf("replies %v, want %v", c.w.Bytes(), want)
	}
	if res.PagesAfter != 3*4096 || res.Levels != 2 || res.Procs[1].Deduped != 2 || res.Procs[1].Moved != 2 {
		t.Errorf("result %+v (proc 11: %+v), want 3 pages stored, 2 levels, 2 deduped+moved", res, res.Procs[1])
	}
}

func FuzzImagesDirArg(f *testing.F) {
	f.Add("-D\x00/x\x00--auto-dedup")
	f.Add("--images-dir=/y")
	f.Fuzz(func(t *testing.T, s string) {
		_ = ImagesDirArg(strings.Split(s, "\x00"))
	})
}

func FuzzPageServer(f *testing.F) {
	f.Add(pageStream())
	f.Add(psMsg(pageproto.IovClose, 0, 0, 0))
	f.Add(psMsg(pageproto.IovOpen2, 0, 0, 3<<8|pageproto.TypeShmem))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		s := &PageServer{dir: dir, d: newDeduper(dir, Options{})}
		_ = s.Serve(&rw{r: bytes.NewReader(b)})
		s.d.close()
	})
}

// TestEntryWire: the hand-encoded pagemap entries are the bytes proto.Marshal gives.
func TestEntryWire(t *testing.T) {
	for _, e := range []pment{
		{va: 0x7f0000000000, n: 1, flags: image.PEPresent},
		{va: 0x7f0000001000, n: 300, flags: image.PEParent, nr5: true},
		{va: 0, n: 1 << 33, flags: image.PEPresent},
		{va: 0x400000, n: 0xffffffff, flags: image.PEPresent | image.PELazy, nr5: true},
		{va: 1<<64 - 4096, n: 7, flags: image.PEParent},
	} {
		want, err := proto.Marshal(e.message())
		if err != nil {
			t.Fatal(err)
		}
		if got := e.appendWire(nil); !bytes.Equal(got, want) {
			t.Errorf("%+v: wire %x, proto.Marshal %x", e, got, want)
		}
	}
}

func TestFrameTable(t *testing.T) {
	var lt locTable
	keys := []PageKey{1, 0xffff, 0x10000, 0x123456, 1<<36 + 5, 1<<63 | 77}
	for i, k := range keys {
		if _, ok := lt.get(k); ok {
			t.Fatalf("%#x present before set", k)
		}
		lt.set(k, loc{proc: int32(i), idx: 0}) // proc 0 idx 0 is a real location
	}
	for i, k := range keys {
		if l, ok := lt.get(k); !ok || l != (loc{proc: int32(i)}) {
			t.Errorf("%#x: got %+v %v", k, l, ok)
		}
	}
	if _, ok := lt.get(0x123457); ok {
		t.Error("neighbour frame present")
	}
}
