package image

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"sort"
	"sync"

	pagemap "github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
)

// Pagemap entry flags (criu/include/pagemap.h).
const (
	PEParent  uint32 = 1 << 0 // pages are in the parent images directory
	PELazy    uint32 = 1 << 1 // pages may be restored lazily
	PEPresent uint32 = 1 << 2 // pages are in pages-<pages_id>.img
)

// PageSize is the page size of the images (x86_64, aarch64 with 4K pages...).
var PageSize int64 = 4096

// NrPages returns the page count of a pagemap entry: field 5 (CRIU >= 4.2) when set, field 2 otherwise.
func NrPages(e *pagemap.PagemapEntry) uint64 {
	if e.NrPages != nil {
		return e.GetNrPages()
	}
	return uint64(e.GetCompatNrPages())
}

// PagemapFlags returns the effective flags of an entry as CRIU computes them: legacy in_parent means
// PE_PARENT, missing flags mean PE_PRESENT.
func PagemapFlags(e *pagemap.PagemapEntry) uint32 {
	f := e.GetFlags()
	if e.GetInParent() {
		return f | PEParent
	}
	if e.Flags == nil {
		return PEPresent
	}
	return f
}

// PageRange is one pagemap entry with its position in the pages file.
type PageRange struct {
	Vaddr   uint64
	NrPages uint64
	Flags   uint32 // effective flags (PagemapFlags)
	Off     int64  // offset in the pages file when PE_PRESENT, else -1
}

// End returns the first address after the range.
func (r PageRange) End() uint64 { return r.Vaddr + r.NrPages*uint64(PageSize) }

// Memory reads the dumped memory of one pagemap (a task's, or a shared memory object's) without
// loading the pages file. It follows the `parent` link of incremental dumps for PE_PARENT pages.
type Memory struct {
	Dir      string // images directory
	Pagemap  string // pagemap file name
	PagesID  uint32 // pagemap_head.pages_id
	ranges   []PageRange
	pages    pagesFile
	fsys     fs.FS // nil: Dir is an OS path
	depth    int
	parent   *Memory
	parentOK bool
	parentEr error
	mu       sync.Mutex // guards pages, parent*: ReadAt may be called in parallel (io.ReaderAt)
}

type pagesFile interface {
	io.ReaderAt
	io.Closer
}

// OpenMemory opens the memory of task pid in an images directory (pagemap-<pid>.img + pages-<id>.img).
func OpenMemory(dir string, pid int) (*Memory, error) {
	return openMemory(dir, fmt.Sprintf("pagemap-%d.img", pid), 0)
}

// OpenShmem opens a shared memory object's pages (pagemap-shmem-<shmid>.img): anonymous shared
// mappings, memfd (memfd_inode.shmid) and SysV shm.
func OpenShmem(dir string, shmid uint64) (*Memory, error) {
	return openMemory(dir, fmt.Sprintf("pagemap-shmem-%d.img", shmid), 0)
}

func openMemory(dir, name string, depth int) (*Memory, error) {
	img, err := ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	return memoryOf(img, dir, name, depth)
}

// memoryOf indexes a decoded pagemap.
func memoryOf(img *Image, dir, name string, depth int) (*Memory, error) {
	if img.Desc.Kind != KindPagemap || len(img.Entries) == 0 {
		return nil, fmt.Errorf("%s: %w: not a pagemap with a head", name, ErrWrongMessage)
	}
	head, ok := img.Entries[0].Msg.(*pagemap.PagemapHead)
	if !ok {
		return nil, fmt.Errorf("%s: %w: entry 0 is not pagemap_head", name, ErrWrongMessage)
	}
	m := &Memory{Dir: dir, Pagemap: name, PagesID: head.GetPagesId(), depth: depth}
	var off int64
	for i, e := range img.Entries[1:] {
		pe, ok := e.Msg.(*pagemap.PagemapEntry)
		if !ok {
			return nil, ferr(name, e.Offset, i+1, ErrWrongMessage, "not pagemap_entry")
		}
		r := PageRange{Vaddr: pe.GetVaddr(), NrPages: NrPages(pe), Flags: PagemapFlags(pe), Off: -1}
		if r.NrPages > (1<<64-1)/uint64(PageSize) || r.End() < r.Vaddr {
			return nil, ferr(name, e.Offset, i+1, ErrBadPayload, "range %#x + %d pages overflows", r.Vaddr, r.NrPages)
		}
		if r.Flags&PEPresent != 0 {
			if r.NrPages > uint64((math.MaxInt64-off)/PageSize) {
				return nil, ferr(name, e.Offset, i+1, ErrBadPayload, "%d pages overflow the pages file offset", r.NrPages)
			}
			r.Off = off
			off += int64(r.NrPages) * PageSize
		}
		m.ranges = append(m.ranges, r)
	}
	sort.SliceStable(m.ranges, func(i, j int) bool { return m.ranges[i].Vaddr < m.ranges[j].Vaddr })
	return m, nil
}

// Ranges returns the pagemap entries sorted by address.
func (m *Memory) Ranges() []PageRange { return m.ranges }

// PagesFile returns the path of the pages file.
func (m *Memory) PagesFile() string {
	if m.fsys != nil {
		return path.Join(m.Dir, fmt.Sprintf("pages-%d.img", m.PagesID))
	}
	return filepath.Join(m.Dir, fmt.Sprintf("pages-%d.img", m.PagesID))
}

func (m *Memory) stat(p string) (fs.FileInfo, error) {
	if m.fsys != nil {
		return fs.Stat(m.fsys, p)
	}
	return os.Stat(p)
}

// PagesReader returns the pages file (pages-<id>.img) as an io.ReaderAt, opened on first use.
func (m *Memory) PagesReader() (io.ReaderAt, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pages == nil {
		var f pagesFile
		var err error
		if m.fsys != nil {
			var ff fs.File
			if ff, err = m.fsys.Open(m.PagesFile()); err == nil {
				var ok bool
				if f, ok = ff.(pagesFile); !ok {
					ff.Close()
					err = fmt.Errorf("%s: file system gives no random access", m.PagesFile())
				}
			}
		} else {
			f, err = os.Open(m.PagesFile())
		}
		if err != nil {
			return nil, err
		}
		m.pages = f
	}
	return m.pages, nil
}

// Close closes the pages files (also of parents).
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var err error
	if m.pages != nil {
		err = m.pages.Close()
		m.pages = nil
	}
	if m.parent != nil {
		if e := m.parent.Close(); err == nil {
			err = e
		}
	}
	return err
}

func (m *Memory) find(va uint64) (PageRange, bool) {
	i := sort.Search(len(m.ranges), func(i int) bool { return m.ranges[i].End() > va })
	if i < len(m.ranges) && m.ranges[i].Vaddr <= va {
		return m.ranges[i], true
	}
	return PageRange{}, false
}

func (m *Memory) getParent() (*Memory, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.parentOK {
		return m.parent, m.parentEr
	}
	m.parentOK = true
	pdir := filepath.Join(m.Dir, "parent")
	if m.fsys != nil {
		pdir = path.Join(m.Dir, "parent")
	}
	if _, err := m.stat(pdir); err != nil {
		m.parentEr = fmt.Errorf("%w (%s)", ErrNoParent, pdir)
		return nil, m.parentEr
	}
	if m.depth >= 64 {
		m.parentEr = fmt.Errorf("%w: more than 64 parent levels (link loop?) at %s", ErrNoParent, pdir)
		return nil, m.parentEr
	}
	var p *Memory
	var err error
	if m.fsys != nil {
		p, err = openMemoryFS(m.fsys, pdir, m.Pagemap, m.depth+1)
	} else {
		p, err = openMemory(pdir, m.Pagemap, m.depth+1)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%w: %s has no %s: %v", ErrNoParent, pdir, m.Pagemap, err)
		}
		m.parentEr = err
		return nil, err
	}
	m.parent = p
	return p, nil
}

// Locate returns the file and offset holding the byte at vaddr, and how many bytes from there on are
// contiguous in that file (up to the end of the page range).
func (m *Memory) Locate(vaddr uint64) (path string, off int64, n int64, err error) {
	r, ok := m.find(vaddr)
	if !ok {
		return "", 0, 0, fmt.Errorf("%s: address %#x: %w", m.Pagemap, vaddr, ErrPageNotDumped)
	}
	switch {
	case r.Flags&PEPresent != 0:
		d := int64(vaddr - r.Vaddr)
		return m.PagesFile(), r.Off + d, int64(r.End()-r.Vaddr) - d, nil
	case r.Flags&PEParent != 0:
		p, err := m.getParent()
		if err != nil {
			return "", 0, 0, fmt.Errorf("%s: address %#x: %w", m.Pagemap, vaddr, err)
		}
		path, off, n, err := p.Locate(vaddr)
		if err == nil && n > int64(r.End()-vaddr) {
			n = int64(r.End() - vaddr)
		}
		return path, off, n, err
	case r.Flags&PELazy != 0:
		return "", 0, 0, fmt.Errorf("%s: address %#x: %w", m.Pagemap, vaddr, ErrPageLazy)
	}
	return "", 0, 0, fmt.Errorf("%s: address %#x (flags %#x): %w", m.Pagemap, vaddr, r.Flags, ErrPageNotDumped)
}

// ReadAt reads len(p) bytes of memory starting at virtual address vaddr (an io.ReaderAt over the
// address space). It stops with an error at the first byte that is not in the images (ErrPageNotDumped,
// ErrPageLazy, ErrNoParent), returning the bytes read before it.
func (m *Memory) ReadAt(p []byte, vaddr int64) (int, error) {
	done := 0
	for done < len(p) {
		va := uint64(vaddr) + uint64(done)
		r, ok := m.find(va)
		if !ok {
			return done, fmt.Errorf("%s: address %#x: %w", m.Pagemap, va, ErrPageNotDumped)
		}
		want := len(p) - done
		if rest := r.End() - va; uint64(want) > rest {
			want = int(rest)
		}
		var n int
		var err error
		switch {
		case r.Flags&PEPresent != 0:
			n, err = m.readPages(p[done:done+want], r.Off+int64(va-r.Vaddr))
		case r.Flags&PEParent != 0:
			var par *Memory
			if par, err = m.getParent(); err == nil {
				n, err = par.ReadAt(p[done:done+want], int64(va))
			}
		case r.Flags&PELazy != 0:
			err = ErrPageLazy
		default:
			err = ErrPageNotDumped
		}
		done += n
		if err != nil {
			var fe *FormatError
			if errors.As(err, &fe) || errors.Is(err, ErrPageNotDumped) && n > 0 {
				return done, err
			}
			return done, fmt.Errorf("%s: address %#x: %w", m.Pagemap, va+uint64(n), err)
		}
	}
	return done, nil
}

func (m *Memory) readPages(p []byte, off int64) (int, error) {
	pf, err := m.PagesReader()
	if err != nil {
		return 0, err
	}
	n, err := pf.ReadAt(p, off)
	if err == io.EOF {
		err = &FormatError{File: filepath.Base(m.PagesFile()), Offset: off + int64(n), Entry: -1,
			Err: fmt.Errorf("%w: pages file ends before the pagemap says", ErrTruncated)}
	}
	return n, err
}
