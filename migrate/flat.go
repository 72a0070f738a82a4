package migrate

import (
	"bufio"
	"fmt"
	"sort"

	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	pagemap "github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"google.golang.org/protobuf/proto"

	"github.com/criukit/criukit/image"
)

// flatImage is the receiver's rolled-forward copy of the migration's memory, for lazy restores:
// criu 4.2's lazy-pages daemon cannot serve PE_PARENT pages lazily, so a lazy restore of a parent
// chain reads every parent page eagerly. The receiver copies round 0 (stored without dedup, so
// every entry is PE_PRESENT) into DIR/flat in the background, and writes each later round's data
// pages into that copy in place, at the offsets of the same addresses. While every round covers
// exactly the addresses round 0 covered, DIR/flat holds the last round's memory with round 0's
// flags (PE_PRESENT|PE_LAZY for private anonymous pages), which `criu restore --lazy-pages` serves
// lazily. A round that covers other addresses (a new mapping, a freed page) invalidates it and the
// restore falls back to the chain.
type flatImage struct {
	dir   string
	done  chan struct{} // closed when the copy of round 0 ended
	mu    sync.Mutex
	err   error // why the flat copy cannot be used
	round int   // last round applied
}

func startFlat(round0, dir string) *flatImage {
	f := &flatImage{dir: dir, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		if err := f.copyRound0(round0); err != nil {
			f.invalidate(err)
		}
	}()
	return f
}

func (f *flatImage) invalidate(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

func (f *flatImage) usable(round int) error {
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	if f.round != round {
		return fmt.Errorf("flat copy is at round %d, not %d", f.round, round)
	}
	return nil
}

// pagemaps lists the pagemap files of dir and opens their memory (entries only).
func pagemaps(dir string) (map[string]*image.Memory, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]*image.Memory{}
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, "pagemap-") || !strings.HasSuffix(n, ".img") {
			continue
		}
		var m *image.Memory
		if s, ok := strings.CutPrefix(strings.TrimSuffix(n, ".img"), "pagemap-shmem-"); ok {
			id, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: bad name", n)
			}
			m, err = image.OpenShmem(dir, id)
			if err != nil {
				return nil, err
			}
		} else {
			pid, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(n, "pagemap-"), ".img"))
			if err != nil {
				return nil, fmt.Errorf("%s: bad name", n)
			}
			if m, err = image.OpenMemory(dir, pid); err != nil {
				return nil, err
			}
		}
		out[n] = m
	}
	return out, nil
}

func (f *flatImage) copyRound0(src string) error {
	pms, err := pagemaps(src)
	if err != nil {
		return err
	}
	defer func() {
		for _, m := range pms {
			m.Close()
		}
	}()
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		return err
	}
	for name, m := range pms {
		for _, r := range m.Ranges() {
			if r.Flags&image.PEPresent == 0 {
				return fmt.Errorf("round 0 %s has entries without data (deduplicated)", name)
			}
		}
		for _, file := range []string{name, filepath.Base(m.PagesFile())} {
			if err := copyFile(filepath.Join(src, file), filepath.Join(f.dir, file)); err != nil {
				return err
			}
		}
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// spans merges ranges into covered address runs.
func spans(rs []image.PageRange) []span {
	var out []span
	for _, r := range rs {
		if k := len(out); k > 0 && out[k-1].end == r.Vaddr {
			out[k-1].end = r.End()
			continue
		}
		out = append(out, span{r.Vaddr, r.End()})
	}
	return out
}

// apply rolls the flat copy forward to round r (stored in dir): every data page of round r is
// written over the flat copy's page at the same address.
func (f *flatImage) apply(r int, dir string) {
	<-f.done
	f.mu.Lock()
	bad := f.err != nil
	f.mu.Unlock()
	if bad {
		return
	}
	if err := f.applyErr(dir); err != nil {
		f.invalidate(fmt.Errorf("round %d: %w", r, err))
		return
	}
	f.mu.Lock()
	f.round = r
	f.mu.Unlock()
}

func (f *flatImage) applyErr(dir string) error {
	next, err := pagemaps(dir)
	if err != nil {
		return err
	}
	cur, err := pagemaps(f.dir)
	if err != nil {
		return err
	}
	defer func() {
		for _, m := range next {
			m.Close()
		}
		for _, m := range cur {
			m.Close()
		}
	}()
	buf := make([]byte, 1<<20)
	for name, nm := range next {
		cm := cur[name]
		if cm == nil {
			continue // a new process or segment: its pages come from the chain (finish)
		}
		if r := uncovered(spans(cm.Ranges()), spans(nm.Ranges())); len(r) > 0 {
			return fmt.Errorf("%s: pages at %#x-%#x are gone since round 0", name, r[0].start, r[0].end)
		}
		in, err := os.Open(nm.PagesFile())
		if err != nil {
			return err
		}
		out, err := os.OpenFile(cm.PagesFile(), os.O_WRONLY, 0)
		if err != nil {
			in.Close()
			return err
		}
		err = func() error {
			crs := cm.Ranges()
			j := 0
			for _, r := range nm.Ranges() {
				if r.Flags&image.PEPresent == 0 {
					continue
				}
				for va := r.Vaddr; va < r.End(); {
					for j < len(crs) && crs[j].End() <= va {
						j++
					}
					if j == len(crs) {
						break // pages added after round 0: read from the chain
					}
					if crs[j].Vaddr > va {
						va = min(crs[j].Vaddr, r.End()) // added pages before the next flat range
						continue
					}
					n := min(r.End(), crs[j].End()) - va
					src := r.Off + int64(va-r.Vaddr)
					dst := crs[j].Off + int64(va-crs[j].Vaddr)
					for left := int64(n); left > 0; {
						k := min(left, int64(len(buf)))
						if _, err := in.ReadAt(buf[:k], src); err != nil {
							return err
						}
						if _, err := out.WriteAt(buf[:k], dst); err != nil {
							return err
						}
						src, dst, left = src+k, dst+k, left-k
					}
					va += n
				}
			}
			return nil
		}()
		in.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// uncovered returns the parts of the spans a that b does not cover (both sorted).
func uncovered(a, b []span) []span {
	var out []span
	j := 0
	for _, x := range a {
		cur := x.start
		for j < len(b) && b[j].end <= cur {
			j++
		}
		for k := j; k < len(b) && b[k].start < x.end && cur < x.end; k++ {
			if b[k].start > cur {
				out = append(out, span{cur, b[k].start})
			}
			cur = max(cur, b[k].end)
		}
		if cur < x.end {
			out = append(out, span{cur, x.end})
		}
	}
	return out
}

// finish makes the flat copy restorable as the last round (stored in dir): its other images
// (everything but pagemaps, pages, parent and logs) are copied next to the flat pages; every
// pagemap gets PE_PARENT entries for the pages added since round 0 (and a process or segment that
// is new gets a pagemap of PE_PARENT entries only), resolved through `parent` -> the last round.
func (f *flatImage) finish(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || strings.HasPrefix(n, "pagemap-") || strings.HasPrefix(n, "pages-") || strings.HasPrefix(n, ".") || strings.HasSuffix(n, ".log") {
			continue
		}
		if err := copyFile(filepath.Join(dir, n), filepath.Join(f.dir, n)); err != nil {
			return "", err
		}
	}
	last, err := pagemaps(dir)
	if err != nil {
		return "", err
	}
	cur, err := pagemaps(f.dir)
	if err != nil {
		return "", err
	}
	defer func() {
		for _, m := range last {
			m.Close()
		}
		for _, m := range cur {
			m.Close()
		}
	}()
	nextID := uint32(1)
	for _, m := range cur {
		nextID = max(nextID, m.PagesID+1)
	}
	needParent := false
	for name, lm := range last {
		var ents []*pagemap.PagemapEntry
		var pagesID uint32
		var have []span
		if cm := cur[name]; cm != nil {
			pagesID = cm.PagesID
			have = spans(cm.Ranges())
			for _, r := range cm.Ranges() {
				ents = append(ents, &pagemap.PagemapEntry{Vaddr: proto.Uint64(r.Vaddr), CompatNrPages: proto.Uint32(uint32(min(r.NrPages, 0xffffffff))),
					Flags: proto.Uint32(r.Flags), NrPages: proto.Uint64(r.NrPages)})
			}
		} else {
			pagesID = nextID
			nextID++
			if err := os.WriteFile(filepath.Join(f.dir, fmt.Sprintf("pages-%d.img", pagesID)), nil, 0o600); err != nil {
				return "", err
			}
		}
		added := uncovered(spans(lm.Ranges()), have)
		if len(added) == 0 {
			continue
		}
		needParent = true
		ps := uint64(image.PageSize)
		for _, a := range added {
			n := (a.end - a.start) / ps
			ents = append(ents, &pagemap.PagemapEntry{Vaddr: proto.Uint64(a.start), CompatNrPages: proto.Uint32(uint32(min(n, 0xffffffff))),
				InParent: proto.Bool(true), Flags: proto.Uint32(uint32(image.PEParent)), NrPages: proto.Uint64(n)})
		}
		sort.SliceStable(ents, func(i, j int) bool { return ents[i].GetVaddr() < ents[j].GetVaddr() })
		if err := writePagemapFile(filepath.Join(f.dir, name), pagesID, ents); err != nil {
			return "", err
		}
	}
	if needParent {
		rel, err := filepath.Rel(f.dir, dir)
		if err != nil {
			return "", err
		}
		link := filepath.Join(f.dir, "parent")
		_ = os.Remove(link)
		if err := os.Symlink(rel, link); err != nil {
			return "", err
		}
	}
	return f.dir, nil
}

// writePagemapFile writes a pagemap image (temp + rename).
func writePagemapFile(path string, pagesID uint32, ents []*pagemap.PagemapEntry) error {
	tmp := path + ".tmp"
	if err := writePagemap(tmp, filepath.Base(path), pagesID, ents); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// writePagemap writes the pagemap image name (head pagesID, then ents) into the file path,
// removed again on failure.
func writePagemap(path, name string, pagesID uint32, ents []*pagemap.PagemapEntry) error {
	desc, err := image.Classify(name)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	iw, err := image.NewWriter(bw, name, desc, image.DefaultHead(desc))
	if err == nil {
		err = iw.Write(&pagemap.PagemapHead{PagesId: proto.Uint32(pagesID)}, nil)
	}
	for _, e := range ents {
		if err != nil {
			break
		}
		err = iw.Write(e, nil)
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}
