package image

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	pagemap "github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
)

func writeImg(t testing.TB, dir, name string, b *builder) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func page(c byte) []byte { return bytes.Repeat([]byte{c}, int(PageSize)) }

// TestMemoryIncremental builds a two-level incremental dump by hand: the child has present, parent,
// lazy and legacy (in_parent, compat_nr_pages) entries; the parent has the pages it refers to.
func TestMemoryIncremental(t *testing.T) {
	top := t.TempDir()
	par := filepath.Join(top, "d1")
	child := filepath.Join(top, "d2")
	os.Mkdir(par, 0o755)
	os.Mkdir(child, 0o755)
	if err := os.Symlink("../d1", filepath.Join(child, "parent")); err != nil {
		t.Fatal(err)
	}
	const A = 0x10000
	// parent: 4 pages at A (A..A+4p) in <= 4.1 encoding, pages 'a','b','c','d'
	b := new(builder).head(0x56084025).msg(&pagemap.PagemapHead{PagesId: u32p(7)})
	b.msg(&pagemap.PagemapEntry{Vaddr: u64p(A), CompatNrPages: u32p(4)}) // no flags: PE_PRESENT
	writeImg(t, par, "pagemap-42.img", b)
	writeImg(t, par, "pages-7.img", new(builder).raw(page('a')).raw(page('b')).raw(page('c')).raw(page('d')))
	// child: page 0 present ('X'), pages 1-2 in parent (flags), page 3 legacy in_parent, then a lazy page
	// and a second present range after a hole
	b = new(builder).head(0x56084025).msg(&pagemap.PagemapHead{PagesId: u32p(9)})
	b.msg(&pagemap.PagemapEntry{Vaddr: u64p(A), CompatNrPages: u32p(0), NrPages: u64p(1), Flags: u32p(PEPresent)})
	b.msg(&pagemap.PagemapEntry{Vaddr: u64p(A + 0x1000), CompatNrPages: u32p(0), NrPages: u64p(2), Flags: u32p(PEParent)})
	b.msg(&pagemap.PagemapEntry{Vaddr: u64p(A + 0x3000), CompatNrPages: u32p(1), InParent: bp(true)})
	b.msg(&pagemap.PagemapEntry{Vaddr: u64p(A + 0x4000), CompatNrPages: u32p(0), NrPages: u64p(1), Flags: u32p(PELazy)})
	b.msg(&pagemap.PagemapEntry{Vaddr: u64p(A + 0x8000), CompatNrPages: u32p(0), NrPages: u64p(1), Flags: u32p(PEPresent | PELazy)})
	writeImg(t, child, "pagemap-42.img", b)
	writeImg(t, child, "pages-9.img", new(builder).raw(page('X')).raw(page('Y')))

	m, err := OpenMemory(child, 42)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	buf := make([]byte, 4*PageSize)
	n, err := m.ReadAt(buf, A)
	if err != nil || n != len(buf) {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	want := append(append(append(page('X'), page('b')...), page('c')...), page('d')...)
	if !bytes.Equal(buf, want) {
		t.Errorf("pages differ: got %q...", []byte{buf[0], buf[PageSize], buf[2*PageSize], buf[3*PageSize]})
	}
	// unaligned read across the present/parent boundary
	small := make([]byte, 10)
	if n, err := m.ReadAt(small, A+PageSize-5); err != nil || string(small) != "XXXXXbbbbb" {
		t.Errorf("cross-boundary ReadAt = %d %q %v", n, small, err)
	}
	if _, err := m.ReadAt(small, A+4*PageSize); !errors.Is(err, ErrPageLazy) {
		t.Errorf("lazy page: err = %v, want ErrPageLazy", err)
	}
	if _, err := m.ReadAt(small, A+5*PageSize); !errors.Is(err, ErrPageNotDumped) {
		t.Errorf("hole: err = %v, want ErrPageNotDumped", err)
	}
	if n, err := m.ReadAt(small, A+8*PageSize); err != nil || small[0] != 'Y' || n != 10 {
		t.Errorf("present|lazy page = %q %v", small, err)
	}
	// reading past the end of a range stops with the bytes read so far
	if n, err := m.ReadAt(make([]byte, 2*PageSize), A+3*PageSize); n != int(PageSize) || !errors.Is(err, ErrPageLazy) {
		t.Errorf("ReadAt into lazy range = %d, %v", n, err)
	}
	p, off, _, err := m.Locate(A + 0x3004)
	if err != nil || filepath.Base(p) != "pages-7.img" || off != 0x3004 {
		t.Errorf("Locate = %s %d %v", p, off, err)
	}
	// without the parent link, parent pages fail with ErrNoParent
	os.Remove(filepath.Join(child, "parent"))
	m2, err := OpenMemory(child, 42)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if _, err := m2.ReadAt(small, A+PageSize); !errors.Is(err, ErrNoParent) {
		t.Errorf("missing parent: err = %v, want ErrNoParent", err)
	}
	// a pages file shorter than the pagemap says gives a FormatError
	writeImg(t, child, "pages-9.img", new(builder).raw(page('X')))
	m3, _ := OpenMemory(child, 42)
	defer m3.Close()
	var fe *FormatError
	if _, err := m3.ReadAt(small, A+8*PageSize); !errors.As(err, &fe) || !errors.Is(err, ErrTruncated) {
		t.Errorf("short pages file: err = %v", err)
	}
}

// TestMemoryHugeSparse reads from a 10 GiB sparse pages file: memory use must not depend on its size.
func TestMemoryHugeSparse(t *testing.T) {
	dir := t.TempDir()
	const nr = 10 << 30 / 4096
	b := new(builder).head(0x56084025).msg(&pagemap.PagemapHead{PagesId: u32p(1)})
	b.msg(&pagemap.PagemapEntry{Vaddr: u64p(0x7f0000000000), CompatNrPages: u32p(0), NrPages: u64p(nr), Flags: u32p(PEPresent)})
	writeImg(t, dir, "pagemap-1.img", b)
	f, err := os.Create(filepath.Join(dir, "pages-1.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(nr * 4096); err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("end"), nr*4096-3)
	f.Close()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m, err := OpenMemory(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p := make([]byte, 3)
	for i := 0; i < 1000; i++ {
		if _, err := m.ReadAt(p, 0x7f0000000000+int64(nr)*4096-3); err != nil || string(p) != "end" {
			t.Fatalf("ReadAt = %q, %v", p, err)
		}
	}
	ents, err := ReadDir(dir)
	if err != nil || len(ents) != 2 || ents[1].Size != nr*4096 {
		t.Fatalf("ReadDir = %+v, %v", ents, err)
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
		t.Errorf("reading a 10 GiB sparse pages file allocated %d bytes", grew)
	}
}

var pagemapHead1 = pagemap.PagemapHead{PagesId: u32p(1)}

func pagemapEntry(va, nr uint64) *pagemap.PagemapEntry {
	return &pagemap.PagemapEntry{Vaddr: u64p(va), CompatNrPages: u32p(0), NrPages: u64p(nr), Flags: u32p(PEPresent)}
}

// TestMemoryParallelReadAt: io.ReaderAt promises parallel calls are safe; the pages file and the
// parent are opened lazily by whichever call comes first (run with -race: scripts/test does).
func TestMemoryParallelReadAt(t *testing.T) {
	top := t.TempDir()
	par, child := filepath.Join(top, "d1"), filepath.Join(top, "d2")
	os.Mkdir(par, 0o755)
	os.Mkdir(child, 0o755)
	os.Symlink("../d1", filepath.Join(child, "parent"))
	const A = 0x10000
	writeImg(t, par, "pagemap-7.img", new(builder).head(0x56084025).msg(&pagemap.PagemapHead{PagesId: u32p(1)}).
		msg(&pagemap.PagemapEntry{Vaddr: u64p(A + 0x1000), NrPages: u64p(1), CompatNrPages: u32p(0), Flags: u32p(PEPresent)}))
	writeImg(t, par, "pages-1.img", new(builder).raw(page('p')))
	writeImg(t, child, "pagemap-7.img", new(builder).head(0x56084025).msg(&pagemap.PagemapHead{PagesId: u32p(2)}).
		msg(&pagemap.PagemapEntry{Vaddr: u64p(A), NrPages: u64p(1), CompatNrPages: u32p(0), Flags: u32p(PEPresent)}).
		msg(&pagemap.PagemapEntry{Vaddr: u64p(A + 0x1000), NrPages: u64p(1), CompatNrPages: u32p(0), Flags: u32p(PEParent)}))
	writeImg(t, child, "pages-2.img", new(builder).raw(page('c')))
	m, err := OpenMemory(child, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		go func() {
			buf := make([]byte, 2*PageSize)
			_, err := m.ReadAt(buf, A)
			if err == nil && (buf[0] != 'c' || buf[PageSize] != 'p') {
				err = errors.New("wrong bytes")
			}
			errs <- err
		}()
	}
	for i := 0; i < 16; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
