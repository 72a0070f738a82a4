package inspect

import (
	"bytes"
	"io/fs"

	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"

	criu_core "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	"github.com/criukit/criukit/ckpt"
	"github.com/criukit/criukit/image/explore"

	"github.com/criukit/criukit/image"
)

// SearchOptions select what Search looks for, and where.
type SearchOptions struct {
	Patterns []string // literal byte strings (several at once)
	Regexps  []string // Go regular expressions (RE2 syntax), matched on the raw bytes
	Pids     []uint32 // only these tasks (none: all tasks with memory)
	VMA      string   // only VMAs of these kinds (heap,stack,anon,file,shmem,...) or whose path contains it
	Prot     string   // only VMAs with at least these rights ("w", "rx"...); "-" prefix: without ("-x")
	From, To uint64   // only this address range (To 0: no upper bound)
	Context  int      // bytes of context around each hit
	Max      int      // stop after this many hits (0: no limit)
}

// Hit is one match in a task's memory.
type Hit struct {
	Pid     uint32 `json:"pid"`
	Comm    string `json:"command"`
	Vaddr   uint64 `json:"vaddr"`
	Pattern string `json:"pattern"`
	Length  int    `json:"length"`
	Match   string `json:"match"` // the match with its context, non-printable bytes as '?' (checkpointctl's form)
	CtxFrom uint64 `json:"context_vaddr,omitempty"`
	VMA     VMA    `json:"vma"`
	Parent  bool   `json:"in_parent,omitempty"` // the page lives in a parent dump (incremental or COW-shared)
}

// SearchStats says how much was searched.
type SearchStats struct {
	Bytes   int64         `json:"bytes_scanned"`
	Hits    int           `json:"hits"`
	Tasks   int           `json:"tasks"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// GBps is the scan rate in GB/s.
func (s SearchStats) GBps() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Bytes) / s.Elapsed.Seconds() / 1e9
}

// ErrStop stops a search from its hit callback without an error.
var ErrStop = errors.New("stop")

// chunkSize is the search window (a variable for the tests' small-window runs).
var chunkSize uint64 = 4 << 20

// regexOverlap: regexp matches longer than this that cross a 4 MiB window boundary are missed.
const regexOverlap = 64 << 10

type matcher struct {
	name string
	lit  []byte
	rare int // index in lit of the byte least likely in memory (scanned for with IndexByte)
	re   *regexp.Regexp
}

// byteRank estimates how common a byte is in process memory (higher: more common): NUL and 0xff
// fill pages, letters, digits and spaces fill text and base64; punctuation is rarer.
func byteRank(c byte) int {
	switch {
	case c == 0:
		return 255
	case c == 0xff:
		return 250
	case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == ' ':
		return 200
	case c >= 'A' && c <= 'Z':
		return 160
	case c == '/' || c == '.' || c == '_' || c == '\n' || c == '+':
		return 130
	case c < 0x20 || c >= 0x80:
		return 110
	}
	return 60
}

func rarest(p []byte) int {
	k := 0
	for i := range p {
		if byteRank(p[i]) < byteRank(p[k]) {
			k = i
		}
	}
	return k
}

// index finds lit in b: IndexByte (vectorized) on its rarest byte, then a comparison; when that
// byte turns out common here, bytes.Index takes over for the rest of b.
func (m *matcher) index(b []byte) int {
	k, c, n := m.rare, m.lit[m.rare], len(m.lit)
	fails := 0
	for i := 0; i+n <= len(b); {
		j := bytes.IndexByte(b[i+k:len(b)-n+k+1], c)
		if j < 0 {
			return -1
		}
		s := i + j
		if bytes.Equal(b[s:s+n], m.lit) {
			return s
		}
		i = s + 1
		if fails++; fails > 8+i>>6 {
			if r := bytes.Index(b[i:], m.lit); r >= 0 {
				return i + r
			}
			return -1
		}
	}
	return -1
}

// protOK checks a VMA against --prot: "rw" needs r and w; "-x" needs no x.
func protOK(prot, want string) bool {
	if want == "" {
		return true
	}
	neg := strings.HasPrefix(want, "-")
	for _, c := range strings.TrimPrefix(want, "-") {
		has := strings.ContainsRune(prot, c)
		if has == neg {
			return false
		}
	}
	return true
}

// segment is a run of memory readable at one place: pages file offsets or parent memory by vaddr.
type segment struct {
	vaddr  uint64
	n      uint64
	ra     io.ReaderAt
	off    int64
	vma    *VMA
	parent bool
}

// searcher holds the compiled patterns and running totals of one search.
type searcher struct {
	o       SearchOptions
	ms      []matcher
	overlap int
	buf     []byte
	ahead   [3][]byte // readAhead's buffers
	st      SearchStats
	fn      func(Hit) error
}

func newSearcher(o SearchOptions, fn func(Hit) error) (*searcher, error) {
	sr := &searcher{o: o, fn: fn}
	maxLit := 0
	for _, p := range o.Patterns {
		if p == "" {
			return nil, errors.New("empty search pattern")
		}
		sr.ms = append(sr.ms, matcher{name: p, lit: []byte(p), rare: rarest([]byte(p))})
		maxLit = max(maxLit, len(p))
	}
	for _, p := range o.Regexps {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("--search-regex %q: %w", p, err)
		}
		sr.ms = append(sr.ms, matcher{name: p, re: re})
	}
	if len(sr.ms) == 0 {
		return nil, errors.New("nothing to search for (give --search or --search-regex)")
	}
	sr.overlap = max(maxLit-1, 0)
	if len(o.Regexps) > 0 {
		sr.overlap = max(sr.overlap, regexOverlap)
	}
	sr.buf = make([]byte, chunkSize+uint64(sr.overlap))
	return sr, nil
}

func (sr *searcher) wantPid(pid uint32) bool {
	if len(sr.o.Pids) == 0 {
		return true
	}
	for _, p := range sr.o.Pids {
		if p == pid {
			return true
		}
	}
	return false
}

// windows yields the windows of a run: [pos, pos+n) for pos = 0, chunkSize, 2*chunkSize... with
// n = min(chunkSize+overlap, size-pos), so each overlaps the previous one by overlap bytes.
func (sr *searcher) window(size, pos uint64) uint64 {
	return min(chunkSize+uint64(sr.overlap), size-pos)
}

// segment scans one run. next(pos, n) returns the run's bytes [pos, pos+n); windows are asked for in
// increasing pos (see window). s.ra (for context across windows) may be nil.
func (sr *searcher) segment(pid uint32, comm string, s segment, next func(pos, n uint64) ([]byte, error)) error {
	for pos := uint64(0); pos < s.n; pos += chunkSize {
		n := sr.window(s.n, pos)
		b, err := next(pos, n)
		if err != nil {
			return fmt.Errorf("pid %d at %#x: %w", pid, s.vaddr+pos, err)
		}
		sr.st.Bytes += int64(min(chunkSize, n))
		limit := min(chunkSize, n) // hits must start in this window's own part
		var hits []Hit
		for mi := range sr.ms {
			m := &sr.ms[mi]
			add := func(i, l int) {
				h := Hit{Pid: pid, Comm: comm, Vaddr: s.vaddr + pos + uint64(i), Pattern: m.name, Length: l, Parent: s.parent}
				if s.vma != nil {
					h.VMA = *s.vma
				}
				h.Match, h.CtxFrom = contextOf(s, pos, b, i, l, sr.o.Context)
				hits = append(hits, h)
			}
			if m.lit != nil {
				for i := 0; i < len(b); {
					k := m.index(b[i:])
					if k < 0 || uint64(i+k) >= limit {
						break
					}
					add(i+k, len(m.lit))
					i += k + 1
				}
			} else {
				for _, ix := range m.re.FindAllIndex(b, -1) {
					if uint64(ix[0]) >= limit {
						break
					}
					add(ix[0], ix[1]-ix[0])
				}
			}
		}
		if len(sr.ms) > 1 {
			sort.SliceStable(hits, func(i, j int) bool { return hits[i].Vaddr < hits[j].Vaddr })
		}
		for _, h := range hits {
			sr.st.Hits++
			if err := sr.fn(h); err != nil {
				return err
			}
			if sr.o.Max > 0 && sr.st.Hits >= sr.o.Max {
				return ErrStop
			}
		}
	}
	return nil
}

// Search streams the memory of the selected tasks and calls fn for every hit, in address order per
// task. Pages are read in 4 MiB chunks straight from pages-*.img (in place for plain tars and
// directories); pages in a parent dump are read through it.
func (im *Images) Search(o SearchOptions, fn func(Hit) error) (SearchStats, error) {
	start := time.Now()
	sr, err := newSearcher(o, fn)
	if err != nil {
		return SearchStats{}, err
	}
	tasks, err := im.Tasks()
	if err != nil {
		return sr.st, err
	}
	found := map[uint32]bool{}
	for _, t := range tasks {
		if !sr.wantPid(t.Pid()) {
			continue
		}
		found[t.Pid()] = true
		if !t.HasMemory() {
			continue
		}
		err := im.searchTask(sr, t)
		if err == ErrStop {
			break
		}
		if err != nil {
			return sr.st, err
		}
	}
	if err := missingPid(im.C.Path, o.Pids, found); err != nil {
		return sr.st, err
	}
	sr.st.Elapsed = time.Since(start)
	return sr.st, nil
}

func (im *Images) searchTask(sr *searcher, t *Task) error {
	sr.st.Tasks++
	segs, m, err := im.segments(t, sr.o)
	if err != nil {
		return err
	}
	defer m.Close()
	pages, err := m.PagesReader()
	if err != nil && len(segs) > 0 {
		return fmt.Errorf("%s: pid %d: %w", im.C.Path, t.Pid(), err)
	}
	comm := t.Core.GetTc().GetComm()
	for _, s := range segs {
		if s.ra == nil {
			s.ra = pages
		}
		var err error
		if s.n <= chunkSize {
			err = sr.segment(t.Pid(), comm, s, func(pos, n uint64) ([]byte, error) {
				b := sr.buf[:n]
				_, err := s.ra.ReadAt(b, s.off+int64(pos))
				if err == io.EOF {
					err = nil
				}
				return b, err
			})
		} else {
			err = sr.readAhead(t.Pid(), comm, s)
		}
		if err != nil {
			if err == ErrStop {
				return err
			}
			return fmt.Errorf("%s: %w", im.C.Path, err)
		}
	}
	return nil
}

// searchStream searches one task's pages file while it streams by (a compressed archive being
// opened): its present runs in file order; nothing is spooled. Context is clipped to the window.
func (im *Images) searchStream(sr *searcher, t *Task, r io.Reader) error {
	sr.st.Tasks++
	segs, m, err := im.segments(t, sr.o)
	if err != nil {
		return err
	}
	m.Close()
	sort.SliceStable(segs, func(i, j int) bool { return segs[i].off < segs[j].off })
	comm := t.Core.GetTc().GetComm()
	var at int64 // bytes of r consumed
	for _, s := range segs {
		if s.ra != nil { // in a parent dump: not in this stream
			continue
		}
		if s.off < at {
			return fmt.Errorf("pid %d: overlapping page ranges at pages offset %d", t.Pid(), s.off)
		}
		if _, err := io.CopyN(io.Discard, r, s.off-at); err != nil {
			return fmt.Errorf("pid %d: pages file ends before offset %d: %w", t.Pid(), s.off, err)
		}
		at = s.off
		var have uint64 // bytes of the segment already in buf (the previous window)
		err := sr.segment(t.Pid(), comm, s, func(pos, n uint64) ([]byte, error) {
			b := sr.buf[:n]
			keep := 0
			if pos > 0 {
				keep = int(have - pos) // the overlap the previous window already read
				copy(b, sr.buf[chunkSize:chunkSize+uint64(keep)])
			}
			k, err := io.ReadFull(r, b[keep:])
			at += int64(k)
			have = pos + uint64(len(b))
			if err != nil {
				return nil, fmt.Errorf("pages file ends early: %w", err)
			}
			return b, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// contextOf returns the match with o.Context bytes around it (clipped to the segment), printable.
func contextOf(s segment, pos uint64, b []byte, i, l, ctx int) (string, uint64) {
	lo, hi := i-ctx, i+l+ctx
	var out []byte
	var from uint64
	if s.ra == nil { // streaming: only the window is at hand
		lo, hi = max(lo, 0), min(hi, len(b))
	}
	if lo >= 0 && hi <= len(b) {
		out = append(out, b[lo:hi]...)
		from = s.vaddr + pos + uint64(lo)
	} else {
		// Context crosses the chunk: read it from the segment.
		a := max(int64(pos)+int64(lo), 0)
		e := min(int64(pos)+int64(hi), int64(s.n))
		out = make([]byte, e-a)
		n, _ := s.ra.ReadAt(out, s.off+a)
		out = out[:n]
		from = s.vaddr + uint64(a)
	}
	for k, c := range out {
		if c < 32 || c >= 127 {
			out[k] = '?'
		}
	}
	if ctx == 0 {
		from = 0
	}
	return string(out), from
}

// segments lists the task's dumped memory runs that pass the filters, each with its VMA; present
// runs have ra nil (the pages file, opened by the caller) and off their pages-file offset.
func (im *Images) segments(t *Task, o SearchOptions) ([]segment, *image.Memory, error) {
	vmas, _, err := im.MemoryMap(t)
	if err != nil {
		return nil, nil, err
	}
	m, err := im.Memory(t.Pid())
	if err != nil {
		return nil, nil, err
	}
	var segs []segment
	hi := o.To
	if hi == 0 {
		hi = ^uint64(0)
	}
	vi := 0
	for _, r := range m.Ranges() {
		if r.Flags&(image.PEPresent|image.PEParent) == 0 {
			continue
		}
		a, e := max(r.Vaddr, o.From), min(r.End(), hi)
		for a < e {
			// the VMA holding a (pagemap ranges never cross VMAs in CRIU's dumps; be safe anyway)
			for vi < len(vmas) && vmas[vi].End <= a {
				vi++
			}
			var v *VMA
			end := e
			if vi < len(vmas) && vmas[vi].Start <= a {
				v = &vmas[vi]
				end = min(end, v.End)
			} else if vi < len(vmas) {
				end = min(end, vmas[vi].Start)
			}
			ok := (v != nil || o.VMA == "" && o.Prot == "") && (v == nil || v.matchKind(o.VMA) && protOK(v.Prot, o.Prot))
			if ok {
				s := segment{vaddr: a, n: end - a, vma: v}
				if r.Flags&image.PEPresent != 0 {
					s.off = r.Off + int64(a-r.Vaddr)
				} else {
					s.ra, s.off, s.parent = m, int64(a), true
				}
				// join with the previous run when contiguous in memory and in the file
				if k := len(segs) - 1; k >= 0 && segs[k].ra == s.ra && segs[k].vma == s.vma && segs[k].vaddr+segs[k].n == s.vaddr && segs[k].off+int64(segs[k].n) == s.off {
					segs[k].n += s.n
				} else {
					segs = append(segs, s)
				}
			}
			a = end
		}
	}
	return segs, m, nil
}

// SearchPath searches a checkpoint by path. Compressed archives are searched while they are
// decompressed (each pages file as it streams by; nothing is spooled but the small images), so a
// search costs one decompression pass; plain tars and directories are read in place.
func SearchPath(p string, o SearchOptions, fn func(Hit) error) (SearchStats, error) {
	start := time.Now()
	sr, err := newSearcher(o, fn)
	if err != nil {
		return SearchStats{}, err
	}
	streamed := map[uint32]bool{}
	stopped := false
	// Hits found while streaming wait until pstree.img (after the pages in the archive) confirms
	// their task is part of the dump.
	held := map[uint32][]Hit{}
	deliver := sr.fn
	sr.fn = func(h Hit) error { held[h.Pid] = append(held[h.Pid], h); return nil }
	hook := func(sofar fs.FS, name string, size int64, r io.Reader) error {
		if stopped {
			return nil
		}
		pid, t, im, err := taskOfPages(sofar, name)
		if err != nil || t == nil {
			return ckpt.ErrKeep // pagemap/mm/core not seen yet: search it after opening
		}
		streamed[pid] = true
		if !sr.wantPid(pid) {
			return nil
		}
		err = im.searchStream(sr, t, r)
		if err == ErrStop {
			stopped = true
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		return nil
	}
	c, err := ckpt.Open(p, ckpt.Options{StreamPages: hook})
	if err != nil {
		return sr.st, err
	}
	defer c.Close()
	im, err := NewImages(c)
	if err != nil {
		return sr.st, err
	}
	tasks, err := im.Tasks()
	if err != nil {
		return sr.st, err
	}
	sr.fn = deliver
	found := map[uint32]bool{}
	hits := 0
	for _, t := range tasks {
		if !sr.wantPid(t.Pid()) {
			continue
		}
		found[t.Pid()] = true
		if streamed[t.Pid()] {
			for _, h := range held[t.Pid()] {
				hits++
				if err := deliver(h); err != nil {
					return sr.st, err
				}
			}
			continue
		}
		if stopped || !t.HasMemory() {
			continue
		}
		err := im.searchTask(sr, t)
		if err == ErrStop {
			break
		}
		if err != nil {
			return sr.st, err
		}
	}
	if err := missingPid(p, o.Pids, found); err != nil {
		return sr.st, err
	}
	// Held hits of stale tasks are dropped: count only what was delivered.
	for pid, hs := range held {
		if !found[pid] {
			sr.st.Hits -= len(hs)
		}
	}
	_ = hits
	sr.st.Elapsed = time.Since(start)
	return sr.st, nil
}

// taskOfPages finds, among the images seen so far, the task whose pagemap points at the pages file
// name (pages-<id>.img), with its core and mm.
func taskOfPages(sofar fs.FS, name string) (uint32, *Task, *Images, error) {
	var id uint32
	if _, err := fmt.Sscanf(name, "pages-%d.img", &id); err != nil {
		return 0, nil, nil, err
	}
	des, err := fs.ReadDir(sofar, ".")
	if err != nil {
		return 0, nil, nil, err
	}
	im := &Images{FS: sofar, Dir: ".", X: explore.OpenFSPartial(sofar, "."), C: &ckpt.Checkpoint{Path: name}}
	var found uint32
	n := 0
	for _, de := range des {
		var pid uint32
		if _, err := fmt.Sscanf(de.Name(), "pagemap-%d.img", &pid); err != nil || de.Name() != fmt.Sprintf("pagemap-%d.img", pid) {
			continue
		}
		m, err := im.Memory(pid)
		if err != nil {
			continue
		}
		pagesID := m.PagesID
		m.Close()
		if pagesID == id {
			found, n = pid, n+1
		}
	}
	// Several pagemaps naming this pages file: stale images of an earlier dump in the same
	// directory (podman re-checkpointing a container leaves them); only pstree.img, later in the
	// archive, tells which is live.
	if n == 1 {
		pid := found
		core, err := first[*criu_core.CoreEntry](im, fmt.Sprintf("core-%d.img", pid))
		if err != nil {
			return 0, nil, nil, err
		}
		mmE, err := first[*mm.MmEntry](im, fmt.Sprintf("mm-%d.img", pid))
		if err != nil {
			return 0, nil, nil, err
		}
		return pid, &Task{Entry: &pstree.PstreeEntry{Pid: &pid}, Core: core, MM: mmE}, im, nil
	}
	return 0, nil, nil, nil
}

// KeepArgsEnv is a ckpt.Options.KeepPages hook: of each pages file it keeps only the pages holding
// its task's command line and environment (what inspect --ps-tree-cmd/--ps-tree-env read).
func KeepArgsEnv(sofar fs.FS, name string) ([]ckpt.Range, bool) {
	pid, t, im, err := taskOfPages(sofar, name)
	if err != nil || t == nil {
		return nil, false
	}
	m, err := im.Memory(pid)
	if err != nil {
		return nil, false
	}
	defer m.Close()
	var keep []ckpt.Range
	ps := uint64(image.PageSize)
	for _, v := range [][2]uint64{{t.MM.GetMmArgStart(), t.MM.GetMmArgEnd()}, {t.MM.GetMmEnvStart(), t.MM.GetMmEnvEnd()}} {
		lo, hi := v[0]&^(ps-1), (v[1]+ps-1)&^(ps-1)
		if hi <= lo || hi-lo > maxArgs {
			continue
		}
		for _, r := range m.Ranges() {
			if r.Flags&image.PEPresent == 0 || r.End() <= lo || r.Vaddr >= hi {
				continue
			}
			a, e := max(lo, r.Vaddr), min(hi, r.End())
			keep = append(keep, ckpt.Range{Off: r.Off + int64(a-r.Vaddr), Len: int64(e - a)})
		}
	}
	return keep, true
}

// readAhead scans a large run with the next window read by a second goroutine while this one
// searches (three buffers: the one searched, the one handed over, the one being read).
func (sr *searcher) readAhead(pid uint32, comm string, s segment) error {
	type win struct {
		b   []byte
		err error
	}
	if sr.ahead[0] == nil {
		for i := range sr.ahead {
			sr.ahead[i] = make([]byte, chunkSize+uint64(sr.overlap))
		}
	}
	ch := make(chan win, 1)
	done := make(chan struct{})
	// The reader must be gone before the buffers are reused (next run) or the search returns.
	defer func() {
		close(done)
		for range ch {
		}
	}()
	step, size := chunkSize, s.n
	window := func(pos uint64) uint64 { return min(step+uint64(sr.overlap), size-pos) }
	go func() {
		defer close(ch)
		i := 0
		for pos := uint64(0); pos < size; pos += step {
			b := sr.ahead[i%3][:window(pos)]
			i++
			_, err := s.ra.ReadAt(b, s.off+int64(pos))
			if err == io.EOF {
				err = nil
			}
			select {
			case ch <- win{b, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return sr.segment(pid, comm, s, func(pos, n uint64) ([]byte, error) {
		w, ok := <-ch
		if !ok {
			return nil, io.ErrUnexpectedEOF
		}
		return w.b, w.err
	})
}

// errNoPid says that the checkpoint at path has no process pid, and how to list them.
func errNoPid(path string, pid uint32) error {
	return fmt.Errorf("%s: no process with PID %d (use `criukit inspect --ps-tree` to see all PIDs)", path, pid)
}

// missingPid is errNoPid for the first of pids not found.
func missingPid(path string, pids []uint32, found map[uint32]bool) error {
	for _, p := range pids {
		if !found[p] {
			return errNoPid(path, p)
		}
	}
	return nil
}
