package cow

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/criukit/criukit/image"
)

// Stats reads a deduped (or stock) images directory and reports, per process, its pages, where the
// deduped ones come from (source process, level of the parent chain) and how many moved.
func Stats(dir string) (*Result, error) {
	tasks, err := readPstree(dir)
	if err != nil {
		return nil, err
	}
	res := &Result{Dir: dir}
	type srcInfo struct {
		pid     int
		present []image.PageRange
	}
	byID := map[uint32]srcInfo{}
	var mems []*image.Memory
	defer func() {
		for _, m := range mems {
			m.Close()
		}
	}()
	for _, t := range tasks {
		if _, err := os.Stat(filepath.Join(dir, pagemapName(t.pid))); err != nil {
			continue
		}
		m, err := image.OpenMemory(dir, t.pid)
		if err != nil {
			return nil, err
		}
		mems = append(mems, m)
		var pr []image.PageRange
		for _, r := range m.Ranges() {
			if r.Flags&image.PEPresent != 0 {
				pr = append(pr, r)
			}
		}
		byID[m.PagesID] = srcInfo{t.pid, pr}
		res.Procs = append(res.Procs, ProcStat{Pid: t.pid, Ppid: t.ppid, PagesID: m.PagesID, Sources: map[int]int64{}})
	}
	ps := uint64(pageSize())
	prefix := filepath.Clean(dir) + string(filepath.Separator)
	for i, m := range mems {
		st := &res.Procs[i]
		for _, r := range m.Ranges() {
			switch {
			case r.Flags&image.PEPresent != 0:
				st.Pages += int64(r.NrPages)
				st.Stored += int64(r.NrPages)
			case r.Flags&image.PEParent != 0:
				for va := r.Vaddr; va < r.End(); {
					path, off, n, err := m.Locate(va)
					if err != nil {
						return nil, fmt.Errorf("pid %d: %w", st.Pid, err)
					}
					np := uint64(n) / ps
					if np == 0 {
						return nil, fmt.Errorf("pid %d: address %#x: %w: empty location", st.Pid, va, ErrBadImages)
					}
					rel := strings.TrimPrefix(path, prefix)
					lvl := strings.Count(rel, "parent"+string(filepath.Separator))
					st.Levels = max(st.Levels, lvl)
					id, _ := pagesIDOf(path)
					src, ok := byID[id]
					st.Pages += int64(np)
					st.Deduped += int64(np)
					if !ok {
						st.Sources[-1] += int64(np)
					} else {
						st.Sources[src.pid] += int64(np)
						st.Moved += movedPages(src.present, off, va, np)
					}
					va += np * ps
				}
			}
		}
	}
	res.Levels = 0
	for _, p := range res.Procs {
		res.Levels = max(res.Levels, p.Levels)
	}
	if res.PagesAfter, err = pagesFilesBytes(dir); err != nil {
		return nil, err
	}
	if mk, err := ReadMarker(dir); err == nil {
		res.PagesBefore = mk.PagesBefore
	}
	return res, nil
}

// movedPages counts pages of [off, off+np pages) in src's pages file whose address in src differs
// from the child's address va.
func movedPages(rs []image.PageRange, off int64, va uint64, np uint64) int64 {
	ps := pageSize()
	var moved int64
	for k := uint64(0); k < np; k++ {
		o := off + int64(k)*ps
		i := sort.Search(len(rs), func(i int) bool {
			return rs[i].Off+int64(rs[i].NrPages)*ps > o
		})
		if i >= len(rs) || rs[i].Off > o {
			moved++
			continue
		}
		if rs[i].Vaddr+uint64(o-rs[i].Off) != va+k*uint64(ps) {
			moved++
		}
	}
	return moved
}
