package inspect

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"

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

const (
	chunkSize    = 4 << 20
	regexOverlap = 64 << 10 // regexp matches longer than this that cross a 4 MiB chunk boundary are missed
)

type matcher struct {
	name string
	lit  []byte
	re   *regexp.Regexp
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

// Search streams the memory of the selected tasks and calls fn for every hit, in address order per
// task. Pages are read in 4 MiB chunks straight from pages-*.img (in place for plain tars and
// directories); pages in a parent dump are read through it.
func (im *Images) Search(o SearchOptions, fn func(Hit) error) (SearchStats, error) {
	start := time.Now()
	var st SearchStats
	var ms []matcher
	maxLit := 0
	for _, p := range o.Patterns {
		if p == "" {
			return st, errors.New("empty search pattern")
		}
		ms = append(ms, matcher{name: p, lit: []byte(p)})
		maxLit = max(maxLit, len(p))
	}
	for _, p := range o.Regexps {
		re, err := regexp.Compile(p)
		if err != nil {
			return st, fmt.Errorf("--search-regex %q: %w", p, err)
		}
		ms = append(ms, matcher{name: p, re: re})
	}
	if len(ms) == 0 {
		return st, errors.New("nothing to search for (give --search or --search-regex)")
	}
	overlap := maxLit - 1
	if len(o.Regexps) > 0 {
		overlap = max(overlap, regexOverlap)
	}
	overlap = max(overlap, 0)
	tasks, err := im.Tasks()
	if err != nil {
		return st, err
	}
	want := map[uint32]bool{}
	for _, p := range o.Pids {
		want[p] = true
	}
	found := map[uint32]bool{}
	buf := make([]byte, chunkSize+overlap)
	for _, t := range tasks {
		if len(want) > 0 && !want[t.Pid()] {
			continue
		}
		found[t.Pid()] = true
		if !t.HasMemory() {
			continue
		}
		st.Tasks++
		segs, closeMem, err := im.segments(t, o)
		if err != nil {
			return st, err
		}
		err = func() error {
			defer closeMem()
			comm := t.Core.GetTc().GetComm()
			for _, s := range segs {
				for pos := uint64(0); pos < s.n; pos += chunkSize {
					n := min(uint64(chunkSize+overlap), s.n-pos)
					b := buf[:n]
					if _, err := s.ra.ReadAt(b, s.off+int64(pos)); err != nil && !(err == io.EOF) {
						return fmt.Errorf("%s: pid %d at %#x: %w", im.C.Path, t.Pid(), s.vaddr+pos, err)
					}
					st.Bytes += int64(min(uint64(chunkSize), n))
					limit := min(uint64(chunkSize), n) // hits must start in this chunk's own part
					var hits []Hit
					for _, m := range ms {
						add := func(i, l int) {
							h := Hit{Pid: t.Pid(), Comm: comm, Vaddr: s.vaddr + pos + uint64(i), Pattern: m.name, Length: l, Parent: s.parent}
							if s.vma != nil {
								h.VMA = *s.vma
							}
							h.Match, h.CtxFrom = contextOf(s, pos, b, i, l, o.Context)
							hits = append(hits, h)
						}
						if m.lit != nil {
							for i := 0; i < len(b); {
								k := bytes.Index(b[i:], m.lit)
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
					if len(ms) > 1 {
						sort.SliceStable(hits, func(i, j int) bool { return hits[i].Vaddr < hits[j].Vaddr })
					}
					for _, h := range hits {
						st.Hits++
						if err := fn(h); err != nil {
							return err
						}
						if o.Max > 0 && st.Hits >= o.Max {
							return ErrStop
						}
					}
				}
			}
			return nil
		}()
		if err == ErrStop {
			break
		}
		if err != nil {
			return st, err
		}
	}
	for _, p := range o.Pids {
		if !found[p] {
			return st, fmt.Errorf("%s: no process with PID %d (use `criukit inspect --ps-tree` to see all PIDs)", im.C.Path, p)
		}
	}
	st.Elapsed = time.Since(start)
	return st, nil
}

// contextOf returns the match with o.Context bytes around it (clipped to the segment), printable.
func contextOf(s segment, pos uint64, b []byte, i, l, ctx int) (string, uint64) {
	lo, hi := i-ctx, i+l+ctx
	var out []byte
	var from uint64
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

// segments lists the task's dumped memory runs that pass the filters, each with its VMA.
func (im *Images) segments(t *Task, o SearchOptions) ([]segment, func(), error) {
	vmas, _, err := im.MemoryMap(t)
	if err != nil {
		return nil, nil, err
	}
	m, err := im.Memory(t.Pid())
	if err != nil {
		return nil, nil, err
	}
	pages, err := m.PagesReader()
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("%s: pid %d: %w", im.C.Path, t.Pid(), err)
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
					s.ra, s.off = pages, r.Off+int64(a-r.Vaddr)
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
	return segs, func() { m.Close() }, nil
}
