package cow

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"os"
	"path/filepath"
	"sync"

	"github.com/criukit/criukit/image"
	"golang.org/x/sys/unix"
)

// deduper writes the deduped layout into out, one process at a time, in dump order (parents
// first): each page is compared with pages stored before (any earlier process) and either stored
// in the process' own pages file or turned into a PE_PARENT entry resolved by a chain level.
type deduper struct {
	out        string
	opt        Options
	maxLv      int
	procs      []*procState
	byPid      map[int]int
	index      map[uint64]loc
	frameIndex locTable
	seed       maphash.Seed
	links      map[[2]uint32]bool // (level, source pages id)
	levelsUsed int
	res        *Result
	writers    sync.WaitGroup // pagemap writers running in the background
	wmu        sync.Mutex
	werr       error
	totalDone  int64
	totalDedup int64
}

func newDeduper(out string, opt Options) *deduper {
	maxLv := opt.MaxLevels
	if maxLv <= 0 {
		maxLv = MaxLevels
	}
	return &deduper{out: out, opt: opt, maxLv: maxLv, byPid: map[int]int{}, index: map[uint64]loc{},
		seed:  maphash.MakeSeed(),
		links: map[[2]uint32]bool{}, res: &Result{}}
}

func (d *deduper) close() {
	d.writers.Wait()
	for _, p := range d.procs {
		if p.pages != nil {
			_ = unix.Munmap(p.pages)
			p.pages = nil
		}
	}
}

// procWriter receives one process' pages in address order.
type procWriter struct {
	d        *deduper
	p        *procState
	me       int32
	st       ProcStat
	like     *image.Image
	nr5      bool
	f        *os.File
	w        *bufio.Writer
	top      *runs
	matches  []match
	lvls     []lvState
	parent   int
	nullZone int64
	started  bool
	frames   []FramePage
	used     [][]uint64 // per source process: bitset of pages this process already reads (a page used twice would need a new level each time)
	pcur     int        // cursor into the tree parent's vas (pages arrive in address order)
	sib      int        // the sibling that came just before (-1: none)
	scur     int        // cursor into its vas
	fcur     int        // cursor into frames
	huge     []vrange   // MAP_HUGETLB mappings: their pages are always stored (see hugetlb.go)
	hcur     int        // cursor into huge
}

func (w *procWriter) isUsed(l loc) bool {
	b := w.used[l.proc]
	i := l.idx >> 6
	return i < int64(len(b)) && b[i]&(1<<(l.idx&63)) != 0
}

func (w *procWriter) setUsed(l loc) {
	b := w.used[l.proc]
	if i := l.idx >> 6; i >= int64(len(b)) {
		n := max(i+1, int64(len(w.d.procs[l.proc].keptVA)+63)>>6)
		b = append(b, make([]uint64, n-int64(len(b)))...)
		w.used[l.proc] = b
	}
	b[l.idx>>6] |= 1 << (l.idx & 63)
}

// cursorLoc finds proc pi's page at va (cur: this writer's cursor into pi's vas).
func (w *procWriter) cursorLoc(pi int, cur *int, va uint64) (loc, bool) {
	p := w.d.procs[pi]
	if i, ok := seekVaddr(len(p.vas), func(k int) uint64 { return p.vas[k] }, cur, va); ok {
		return p.locs[i], true
	}
	return loc{}, false
}

type lvState struct {
	src  int32
	last int64
}

// begin starts process pid (tree parent ppid, 0 if unknown) whose pages go to pages-<pagesID>.img.
// like gives the pagemap image's descriptor and head.
func (d *deduper) begin(pid, ppid int, pagesID uint32, like *image.Image, nr5 bool) (*procWriter, error) {
	if _, dup := d.byPid[pid]; dup {
		return nil, fmt.Errorf("pid %d: %w: its memory arrives twice", pid, ErrBadImages)
	}
	f, err := os.OpenFile(filepath.Join(d.out, pagesName(pagesID)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	p := &procState{pid: pid, ppid: ppid, pagesID: pagesID}
	me := int32(len(d.procs))
	d.procs = append(d.procs, p)
	d.byPid[pid] = int(me)
	w := &procWriter{d: d, p: p, me: me, like: like, nr5: nr5, f: f, w: bufio.NewWriterSize(f, 1<<20),
		top: &runs{nr5: nr5}, parent: -1, sib: -1, frames: d.opt.Frames[pid], used: make([][]uint64, len(d.procs)),
		st: ProcStat{Pid: pid, Ppid: ppid, PagesID: pagesID, Sources: map[int]int64{}}}
	for k := len(d.procs) - 2; k >= 0 && ppid != 0; k-- {
		if d.procs[k].ppid == ppid {
			w.sib = k // pages the parent no longer has are often shared by siblings, at the same address
			break
		}
	}
	if i, ok := d.byPid[ppid]; ok && ppid != pid {
		w.parent = i
		// a forked child usually maps about what its parent maps
		p.vas = make([]uint64, 0, len(d.procs[i].vas))
		p.locs = make([]loc, 0, len(d.procs[i].vas))
	}
	return w, nil
}

func (w *procWriter) abort() {
	w.f.Close()
}

// other keeps a pagemap entry that has no pages (a hole).
func (w *procWriter) other(e pment) {
	w.top.flush()
	w.top.ents = append(w.top.ents, e)
}

func (w *procWriter) frameOf(va uint64) (PageKey, bool) {
	fr := w.frames
	if i, ok := seekVaddr(len(fr), func(k int) uint64 { return fr[k].Vaddr }, &w.fcur, va); ok {
		return fr[i].Key, true
	}
	return 0, false
}

func (w *procWriter) same(l loc, buf []byte) bool {
	sp := w.d.procs[l.proc]
	off := l.idx * pageSize()
	if off+pageSize() > int64(len(sp.pages)) {
		return false
	}
	return bytes.Equal(sp.pages[off:off+pageSize()], buf)
}

// dupPage adds the page at va whose frame (key) was received before from an earlier process: it
// is that page (same physical frame of a frozen tree), so it is matched without a comparison.
func (w *procWriter) dupPage(va uint64, flags uint32, first bool, key PageKey) error {
	l, ok := w.d.frameIndex.get(key)
	if !ok || l.proc == w.me || l.proc < 0 || int(l.proc) >= len(w.d.procs) {
		return fmt.Errorf("pid %d page %#x: frame %#x was not received from an earlier process (internal error)", w.p.pid, va, key)
	}
	sp := w.d.procs[l.proc]
	off := l.idx * pageSize()
	if off+pageSize() > int64(len(sp.pages)) {
		return fmt.Errorf("pid %d page %#x: source page %d of pid %d is not stored (internal error)", w.p.pid, va, l.idx, sp.pid)
	}
	// the source's bytes: stored again if the chain cannot take the match
	return w.page(va, flags, first, sp.pages[off:off+pageSize()], &l)
}

// page adds the page at va (flags of its pagemap entry; first: first page of a CRIU entry). hint,
// when set, is where an equal page is stored (no comparison is made).
func (w *procWriter) page(va uint64, flags uint32, first bool, buf []byte, hint *loc) error {
	d := w.d
	if !w.started {
		w.started = true
		w.nullZone = int64(va) / pageSize() // pages below every page of this process
	}
	if first {
		w.top.breakNx = true // keep CRIU's entry boundaries
	}
	w.st.Pages++
	found := false
	var cand loc
	var h uint64
	hashed := false
	key, hasKey := w.frameOf(va)
	huge := len(w.huge) > 0 && inRanges(w.huge, &w.hcur, va)
	if hint != nil && w.nullZone > 0 && !huge {
		cand, found = *hint, true
	} else if w.nullZone > 0 && !huge {
		if hasKey {
			if l, ok := d.frameIndex.get(key); ok && l.proc != w.me && w.same(l, buf) {
				cand, found = l, true
			}
		}
		tried := loc{proc: -1}
		if !found && w.parent >= 0 {
			if l, ok := w.cursorLoc(w.parent, &w.pcur, va); ok && l.proc != w.me {
				if tried = l; w.same(l, buf) {
					cand, found = l, true
				}
			}
		}
		if !found && w.sib >= 0 {
			if l, ok := w.cursorLoc(w.sib, &w.scur, va); ok && l.proc != w.me && l != tried && w.same(l, buf) {
				cand, found = l, true
			}
		}
		if !found {
			h, hashed = maphash.Bytes(d.seed, buf), true
			if l, ok := d.index[h]; ok && l.proc != w.me && w.same(l, buf) {
				cand, found = l, true
			}
		}
	}
	if found && w.isUsed(cand) {
		found = false // e.g. many equal (zero-filled) pages: store them, do not open a level per copy
	}
	lvl := -1
	if found {
		for k := range w.lvls {
			if w.lvls[k].src == cand.proc && w.lvls[k].last < cand.idx {
				lvl = k
				break
			}
		}
		if lvl < 0 && len(w.lvls) < d.maxLv {
			w.lvls = append(w.lvls, lvState{src: cand.proc})
			lvl = len(w.lvls) - 1
		}
		if lvl >= 0 {
			w.lvls[lvl].last = cand.idx
		}
	}
	p := w.p
	if lvl >= 0 {
		if hasKey {
			d.frameIndex.setIfAbsent(key, cand)
		}
		w.setUsed(cand)
		w.matches = append(w.matches, match{va: va, src: cand, lvl: lvl})
		p.vas, p.locs = append(p.vas, va), append(p.locs, cand)
		w.top.add(va, image.PEParent|flags&(PECow|PESib), -1) // keep the patched CRIU's restore hints (docs/cow-criu.md)
		w.st.Deduped++
		w.st.Sources[d.procs[cand.proc].pid]++
		if d.procs[cand.proc].keptVA[cand.idx] != va {
			w.st.Moved++
		}
		return nil
	}
	if _, err := w.w.Write(buf); err != nil {
		return err
	}
	l := loc{w.me, int64(len(p.keptVA))}
	p.keptVA = append(p.keptVA, va)
	p.vas, p.locs = append(p.vas, va), append(p.locs, l)
	if !hashed {
		h = maphash.Bytes(d.seed, buf)
	}
	if _, ok := d.index[h]; !ok {
		d.index[h] = l
	}
	if hasKey {
		d.frameIndex.setIfAbsent(key, l)
	}
	w.top.add(va, flags, -1)
	w.st.Stored++
	return nil
}

// finish writes the process' pagemap and chain levels. copyFrom, when set and nothing was deduped,
// is the original pagemap copied byte for byte.
func (w *procWriter) finish(copyFrom string) error {
	d := w.d
	w.top.flush()
	if err := w.w.Flush(); err != nil {
		w.f.Close()
		return err
	}
	if err := w.f.Close(); err != nil {
		return err
	}
	// Later processes compare their pages with this file: map it (read-only, shared).
	if n := int64(len(w.p.keptVA)) * pageSize(); n > 0 {
		pf, err := os.Open(w.f.Name())
		if err != nil {
			return err
		}
		m, err := unix.Mmap(int(pf.Fd()), 0, int(n), unix.PROT_READ, unix.MAP_SHARED)
		pf.Close()
		if err != nil {
			return fmt.Errorf("map %s: %w", w.f.Name(), err)
		}
		w.p.pages = m
	}
	w.st.Levels = len(w.lvls)
	d.levelsUsed = max(d.levelsUsed, len(w.lvls))
	pm := filepath.Join(d.out, pagemapName(w.p.pid))
	type pmFile struct {
		path    string
		pagesID uint32
		ents    []pment
	}
	var files []pmFile
	switch {
	case w.st.Deduped == 0 && copyFrom != "":
		if err := copyFile(copyFrom, pm); err != nil {
			return err
		}
	default:
		files = append(files, pmFile{pm, w.p.pagesID, w.top.ents})
	}
	for k := range w.lvls {
		lr := &runs{nr5: w.nr5}
		var cursor int64
		for _, m := range w.matches {
			switch {
			case m.lvl == k:
				if m.src.idx > cursor {
					lr.skip(m.src.idx-cursor, w.nullZone)
				}
				lr.add(m.va, image.PEPresent, m.src.idx)
				cursor = m.src.idx + 1
			case m.lvl > k:
				lr.add(m.va, image.PEParent, -1)
			}
		}
		lr.flush()
		dir := filepath.Join(d.out, levelDir(k+1))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		sid := d.procs[w.lvls[k].src].pagesID
		files = append(files, pmFile{filepath.Join(dir, pagemapName(w.p.pid)), sid, lr.ents})
		d.links[[2]uint32{uint32(k + 1), sid}] = true
	}
	// Encoding big pagemaps takes a while: do it while the next process' pages arrive.
	like := w.like
	d.writers.Add(1)
	go func() {
		defer d.writers.Done()
		for _, f := range files {
			if err := writePagemap(f.path, like, f.pagesID, f.ents); err != nil {
				d.wmu.Lock()
				if d.werr == nil {
					d.werr = err
				}
				d.wmu.Unlock()
				return
			}
		}
	}()
	d.totalDone += w.st.Pages
	d.totalDedup += w.st.Deduped
	d.res.Procs = append(d.res.Procs, w.st)
	if d.opt.Progress != nil {
		d.opt.Progress(w.p.pid, d.totalDone, d.totalDedup)
	}
	return nil
}

// finish writes the chain links and the marker. before is the stock pages bytes.
func (d *deduper) finish(before int64) (*Result, error) {
	d.writers.Wait()
	if d.werr != nil {
		return nil, d.werr
	}
	for l := range d.links {
		if err := os.Symlink(filepath.Join("..", pagesName(l[1])), filepath.Join(d.out, levelDir(int(l[0])), pagesName(l[1]))); err != nil {
			return nil, err
		}
	}
	if d.levelsUsed > 0 {
		if err := os.Symlink(levelDir(1), filepath.Join(d.out, "parent")); err != nil {
			return nil, err
		}
		for k := 1; k < d.levelsUsed; k++ {
			if err := os.Symlink(filepath.Join("..", levelDir(k+1)), filepath.Join(d.out, levelDir(k), "parent")); err != nil {
				return nil, err
			}
		}
	}
	res := d.res
	res.Levels = d.levelsUsed
	res.PagesBefore = before
	var err error
	if res.PagesAfter, err = pagesFilesBytes(d.out); err != nil {
		return nil, err
	}
	mk, _ := json.MarshalIndent(Marker{Format: Format, Levels: d.levelsUsed, Match: matchKind(d.opt), PagesBefore: res.PagesBefore, PagesAfter: res.PagesAfter}, "", "  ")
	if err := os.WriteFile(filepath.Join(d.out, MarkerFile), append(mk, '\n'), 0o644); err != nil {
		return nil, err
	}
	return res, nil
}
