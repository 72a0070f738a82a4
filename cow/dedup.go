package cow

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	pagemap "github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	pstree "github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/internal/outfile"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Options tune Dedup.
type Options struct {
	// MaxLevels caps the parent chain (default MaxLevels). Matches that do not fit stay stored.
	MaxLevels int
	// Progress, when set, is called after each process with its pid and the running totals.
	Progress func(pid int, pagesDone, pagesDeduped int64)
	// Frames, when set, is a snapshot of the dumped tree's physical pages (see ScanFrames), keyed
	// by the pid in the images (pstree). Pages sharing a frame are matched first; every match is
	// still confirmed by a byte comparison.
	Frames map[int][]FramePage
	// NoFrames turns off the page server's frame snapshot: every page is copied out of criu's
	// socket and matched by content (for comparison; the snapshot is the fast path).
	NoFrames bool
}

// ProcStat describes one process of a deduped directory.
type ProcStat struct {
	Pid     int           `json:"pid"`
	Ppid    int           `json:"ppid"`
	PagesID uint32        `json:"pages_id"`
	Pages   int64         `json:"pages"`   // pages in its pagemap (present + deduped)
	Stored  int64         `json:"stored"`  // pages in its own pages file
	Deduped int64         `json:"deduped"` // pages read through the parent chain
	Moved   int64         `json:"moved"`   // deduped pages found at another address in the source
	Levels  int           `json:"levels"`  // parent chain depth this process uses
	Sources map[int]int64 `json:"sources"` // source pid -> pages taken from it
}

// Result summarizes a dedup (or the stats of a deduped directory).
type Result struct {
	Dir         string     `json:"dir"`
	Levels      int        `json:"levels"`
	PagesBefore int64      `json:"pages_bytes_before"` // stock pages-*.img bytes (dedup only)
	PagesAfter  int64      `json:"pages_bytes_after"`  // pages-*.img bytes now
	Procs       []ProcStat `json:"processes"`
}

type loc struct {
	proc int32
	idx  int64 // page index in the process' OUTPUT pages file
}

type match struct {
	va  uint64
	src loc
	lvl int
}

// procState is one process while deduping.
type procState struct {
	pid, ppid int
	pagesID   uint32
	pages     []byte   // its OUTPUT pages file, mapped read-only once complete
	keptVA    []uint64 // output page index -> vaddr
	vas       []uint64 // every page's vaddr (sorted)
	locs      []loc    // where that page is stored
}

// seekVaddr finds va in a list of n addresses sorted ascending (at(i) is the i-th) and says
// whether it is there. Lookups come mostly in increasing order, so *cur walks forward from the
// previous answer; an earlier va falls back to a binary search.
func seekVaddr(n int, at func(int) uint64, cur *int, va uint64) (int, bool) {
	i := min(*cur, n)
	if i > 0 && at(i-1) >= va {
		i = sort.Search(n, func(k int) bool { return at(k) >= va })
	} else {
		for i < n && at(i) < va {
			i++
		}
	}
	*cur = i
	return i, i < n && at(i) == va
}

type task struct{ pid, ppid int }

// readPstree returns the processes (not threads) of a dump in pstree order (parents first).
func readPstree(dir string) ([]task, error) {
	img, err := image.ReadFile(filepath.Join(dir, "pstree.img"))
	if err != nil {
		return nil, fmt.Errorf("read process tree: %w", err)
	}
	var out []task
	for i, e := range img.Entries {
		pe, ok := e.Msg.(*pstree.PstreeEntry)
		if !ok {
			return nil, fmt.Errorf("pstree.img entry %d: %w: not a pstree_entry", i, ErrBadImages)
		}
		out = append(out, task{int(pe.GetPid()), int(pe.GetPpid())})
	}
	return out, nil
}

// checkStock refuses inputs this package cannot rewrite.
func checkStock(dir string) error {
	if IsDeduped(dir) {
		return fmt.Errorf("%s: %w (use `criukit cow materialize` first)", dir, ErrDeduped)
	}
	if _, err := os.Lstat(filepath.Join(dir, "parent")); err == nil {
		return fmt.Errorf("%s has a `parent` link: %w; dedup of pre-dump chains is not supported, dump again without pre-dump", dir, ErrIncremental)
	}
	return nil
}

// Dedup reads the stock images directory src and writes the deduped layout into dst, which must
// not exist (it is built in a temporary directory next to dst and renamed at the end). src is never
// modified. Pages are matched by content (hash, then byte comparison), preferring the tree parent's
// page at the same address.
func Dedup(src, dst string, opt Options) (*Result, error) {
	return DedupContext(context.Background(), src, dst, opt)
}

// DedupContext is Dedup that stops when ctx is done (checked per pagemap entry), leaving no
// temporary directory and nothing at dst.
func DedupContext(ctx context.Context, src, dst string, opt Options) (*Result, error) {
	if _, err := os.Lstat(dst); err == nil {
		return nil, fmt.Errorf("%s: %w (choose a new directory)", dst, ErrExists)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(dst)), "."+filepath.Base(dst)+".criukit-tmp-")
	if err != nil {
		return nil, err
	}
	res, err := dedupInto(ctx, src, tmp, opt)
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return nil, err
	}
	res.Dir = dst
	return res, nil
}

// DedupInPlace dedups dir and atomically swaps the result in (renameat2 RENAME_EXCHANGE). On any
// error dir is left as it was.
func DedupInPlace(dir string, opt Options) (*Result, error) {
	return DedupInPlaceContext(context.Background(), dir, opt)
}

// DedupInPlaceContext is DedupInPlace that stops when ctx is done (dir is then left as it was).
func DedupInPlaceContext(ctx context.Context, dir string, opt Options) (*Result, error) {
	dir = filepath.Clean(dir)
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".criukit-tmp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	res, err := dedupInto(ctx, dir, tmp, opt)
	if err != nil {
		return nil, err
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dir, unix.RENAME_EXCHANGE); err != nil {
		return nil, fmt.Errorf("swap %s into %s: %w", tmp, dir, err)
	}
	res.Dir = dir
	return res, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

func pagemapName(pid int) string { return fmt.Sprintf("pagemap-%d.img", pid) }
func pagesName(id uint32) string { return fmt.Sprintf("pages-%d.img", id) }
func pageSize() int64            { return image.PageSize }

// readPagemap reads a stock pagemap: its head and entries, refusing parent/lazy entries.
func readPagemap(path string) (*image.Image, *pagemap.PagemapHead, []*pagemap.PagemapEntry, error) {
	img, err := image.ReadFile(path)
	if err != nil {
		return nil, nil, nil, err
	}
	if img.Desc.Kind != image.KindPagemap || len(img.Entries) == 0 {
		return nil, nil, nil, fmt.Errorf("%s: %w: not a pagemap", path, ErrBadImages)
	}
	head, ok := img.Entries[0].Msg.(*pagemap.PagemapHead)
	if !ok {
		return nil, nil, nil, fmt.Errorf("%s: %w: no pagemap_head", path, ErrBadImages)
	}
	var ents []*pagemap.PagemapEntry
	for i, e := range img.Entries[1:] {
		pe, ok := e.Msg.(*pagemap.PagemapEntry)
		if !ok {
			return nil, nil, nil, fmt.Errorf("%s entry %d: %w: not a pagemap_entry", path, i+1, ErrBadImages)
		}
		ents = append(ents, pe)
	}
	return img, head, ents, nil
}

// pment is one pagemap entry to write: a run built here (va, n, flags) or, when orig is set, an
// entry kept as it was in the input. Values, not messages: a big pagemap has one per run and the
// message is only built (into one reused struct) when the file is written.
type pment struct {
	va, n uint64
	flags uint32
	nr5   bool
	orig  *pagemap.PagemapEntry
}

func newEntry(va, n uint64, flags uint32, nr5 bool) pment {
	return pment{va: va, n: n, flags: flags, nr5: nr5}
}

// appendWire appends e encoded as a pagemap_entry message: the bytes proto.Marshal gives for the
// message newEntry used to build (fields in number order: vaddr, compat_nr_pages, in_parent,
// flags, nr_pages), without building one.
func (e *pment) appendWire(b []byte) []byte {
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, e.va)
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, min(e.n, 0xffffffff))
	if e.flags&image.PEParent != 0 {
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	b = protowire.AppendTag(b, 4, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(e.flags))
	if e.nr5 || e.n > 0xffffffff {
		b = protowire.AppendTag(b, 5, protowire.VarintType)
		b = protowire.AppendVarint(b, e.n)
	}
	return b
}

// message builds e as a pagemap_entry (tests compare it with appendWire).
func (e *pment) message() *pagemap.PagemapEntry {
	m := &pagemap.PagemapEntry{Vaddr: proto.Uint64(e.va), CompatNrPages: proto.Uint32(uint32(min(e.n, 0xffffffff))), Flags: proto.Uint32(e.flags)}
	if e.nr5 || e.n > 0xffffffff {
		m.NrPages = proto.Uint64(e.n)
	}
	if e.flags&image.PEParent != 0 {
		m.InParent = proto.Bool(true)
	}
	return m
}

// runs accumulates pagemap entries, merging contiguous pages of one kind.
type runs struct {
	ents []pment
	nr5  bool
	// last run
	va, n   uint64
	flags   uint32
	idx     int64 // source index after the run (use runs)
	open    bool
	breakNx bool
}

func (r *runs) add(va uint64, flags uint32, idx int64) {
	if r.open && !r.breakNx && flags == r.flags && va == r.va+r.n*uint64(pageSize()) && (idx < 0 || idx == r.idx) {
		r.n++
		if idx >= 0 {
			r.idx++
		}
		return
	}
	r.flush()
	r.va, r.n, r.flags, r.open, r.breakNx = va, 1, flags, true, false
	r.idx = idx
	if idx >= 0 {
		r.idx = idx + 1
	}
}

func (r *runs) flush() {
	if r.open {
		r.ents = append(r.ents, newEntry(r.va, r.n, r.flags, r.nr5))
		r.open = false
	}
}

// skip appends null-zone entries covering n source pages: [0, m pages) each.
func (r *runs) skip(n, m int64) {
	r.flush()
	for n > 0 {
		k := min(n, m)
		r.ents = append(r.ents, newEntry(0, uint64(k), image.PEPresent, r.nr5))
		n -= k
	}
}

// writePagemap streams a pagemap image (head + entries) to path (internal/outfile: temp file + rename).
func writePagemap(path string, like *image.Image, pagesID uint32, ents []pment) error {
	err := outfile.Write(path, func(f io.Writer) error {
		bw := bufio.NewWriterSize(f, 1<<20)
		w, err := image.NewWriter(bw, filepath.Base(path), like.Desc, like.Head)
		if err != nil {
			return err
		}
		if err := w.Write(&pagemap.PagemapHead{PagesId: proto.Uint32(pagesID)}, nil); err != nil {
			return err
		}
		var buf []byte
		for i := range ents {
			e := &ents[i]
			if e.orig != nil {
				if err := w.Write(e.orig, nil); err != nil {
					return err
				}
				continue
			}
			buf = e.appendWire(buf[:0])
			if err := w.WriteEncoded(buf); err != nil {
				return err
			}
		}
		return bw.Flush()
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func dedupInto(ctx context.Context, src, out string, opt Options) (res *Result, err error) {
	if err := checkStock(src); err != nil {
		return nil, err
	}
	tasks, err := readPstree(src)
	if err != nil {
		return nil, err
	}
	// Memory files of the tree's processes are rewritten; everything else is copied.
	own := map[string]bool{}
	for _, t := range tasks {
		own[pagemapName(t.pid)] = true
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if own[e.Name()] || strings.HasPrefix(e.Name(), "pages-") {
			continue
		}
		if !e.Type().IsRegular() {
			return nil, fmt.Errorf("%s: %w: %s is not a regular file", src, ErrBadImages, e.Name())
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(out, e.Name())); err != nil {
			return nil, err
		}
	}
	d := newDeduper(out, opt)
	defer d.close()
	usedPages := map[uint32]bool{}
	ps := pageSize()
	buf := make([]byte, ps)
	for _, t := range tasks {
		pmPath := filepath.Join(src, pagemapName(t.pid))
		if _, err := os.Stat(pmPath); err != nil {
			continue // zombie or no memory
		}
		like, head, pents, err := readPagemap(pmPath)
		if err != nil {
			return nil, err
		}
		usedPages[head.GetPagesId()] = true
		nr5 := false
		var prevEnd uint64
		for i, e := range pents {
			if image.PagemapFlags(e)&image.PEParent != 0 {
				return nil, fmt.Errorf("%s entry %d (vaddr %#x): %w; dump again without pre-dump", pmPath, i+1, e.GetVaddr(), ErrIncremental)
			}
			nr5 = nr5 || e.NrPages != nil
			if e.GetVaddr() < prevEnd {
				return nil, fmt.Errorf("%s entry %d (vaddr %#x): %w: entries not sorted by address", pmPath, i+1, e.GetVaddr(), ErrBadImages)
			}
			prevEnd = e.GetVaddr() + image.NrPages(e)*uint64(ps)
		}
		in, err := os.Open(filepath.Join(src, pagesName(head.GetPagesId())))
		if err != nil {
			return nil, fmt.Errorf("pages of pid %d: %w", t.pid, err)
		}
		w, err := d.begin(t.pid, t.ppid, head.GetPagesId(), like, nr5)
		if err != nil {
			in.Close()
			return nil, err
		}
		if w.huge, err = hugetlbFromImages(src, t.pid); err != nil {
			in.Close()
			w.abort()
			return nil, err
		}
		r := bufio.NewReaderSize(in, 1<<20)
		var inIdx int64
		for _, e := range pents {
			if err := ctx.Err(); err != nil {
				in.Close()
				w.abort()
				return nil, err
			}
			fl := image.PagemapFlags(e)
			if fl&image.PEPresent == 0 {
				w.other(pment{orig: e})
				continue
			}
			for j := uint64(0); j < image.NrPages(e); j++ {
				if j&4095 == 4095 && ctx.Err() != nil { // big entries: every 16 MiB
					in.Close()
					w.abort()
					return nil, ctx.Err()
				}
				va := e.GetVaddr() + j*uint64(ps)
				if _, err := io.ReadFull(r, buf); err != nil {
					in.Close()
					w.abort()
					return nil, fmt.Errorf("%s: page %d (vaddr %#x): %w: pages file shorter than its pagemap", pagesName(head.GetPagesId()), inIdx, va, image.ErrTruncated)
				}
				if err := w.page(va, fl, j == 0, buf, nil); err != nil {
					in.Close()
					w.abort()
					return nil, err
				}
				inIdx++
			}
		}
		n, _ := r.Read(buf[:1])
		in.Close()
		if n > 0 {
			w.abort()
			return nil, fmt.Errorf("%s: %w: pages file longer than its pagemap (%d pages)", pagesName(head.GetPagesId()), ErrBadImages, inIdx)
		}
		if err := w.finish(pmPath); err != nil {
			return nil, err
		}
	}
	// Pages files not owned by a tree process (shared memory) are copied.
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "pages-") {
			var id uint32
			if _, err := fmt.Sscanf(e.Name(), "pages-%d.img", &id); err == nil && usedPages[id] {
				continue
			}
			if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(out, e.Name())); err != nil {
				return nil, err
			}
		}
	}
	var before int64
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "pages-") {
			if fi, err := e.Info(); err == nil {
				before += fi.Size()
			}
		}
	}
	return d.finish(before)
}

// pagesFilesBytes sums the sizes of the regular pages-*.img files of dir (symlinks not counted).
func pagesFilesBytes(dir string) (int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "pages-") && e.Type().IsRegular() {
			fi, err := e.Info()
			if err != nil {
				return 0, err
			}
			n += fi.Size()
		}
	}
	return n, nil
}

func matchKind(opt Options) string {
	if opt.Frames != nil {
		return "frames+content"
	}
	return "content"
}
