package cow

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/criukit/criukit/image"
)

// MAP_HUGETLB pages are never deduped. CRIU does not premap a private MAP_HUGETLB mapping: the
// restorer reads its pages with preadv straight from the process' own pages file (criu/mem.c
// premap_priv_vmas skips them, restore_priv_vma_content enqueues the iovec), and it cannot follow a
// PE_PARENT entry there. A deduped page inside such a mapping makes the restorer's preadv return 0
// forever: the restore hangs (zdtm static/maps10: parent and child share private huge pages). The
// endless loop is itself a CRIU bug worth reporting: criu/pie/restorer.c (4.2.1, the vma_ios loop
// around preadv_limited) fails on r < 0 but retries r == 0 (end of the pages file) forever.
// So pages inside MAP_HUGETLB mappings are always stored in the process' own pages file; they
// may still be the source of other processes' (regular) pages.

const mapHugetlb = 0x40000 // MAP_HUGETLB in vma_entry.flags

type vrange struct{ lo, hi uint64 }

// hugetlbFromImages returns the MAP_HUGETLB mappings of pid from dir/mm-<pid>.img (none if the
// process has no mm image).
func hugetlbFromImages(dir string, pid int) ([]vrange, error) {
	p := filepath.Join(dir, fmt.Sprintf("mm-%d.img", pid))
	img, err := image.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mappings of pid %d: %w", pid, err)
	}
	var out []vrange
	for _, e := range img.Entries {
		m, ok := e.Msg.(*mm.MmEntry)
		if !ok {
			return nil, fmt.Errorf("%s: %w: not an mm entry", p, ErrBadImages)
		}
		for _, v := range m.GetVmas() {
			if v.GetFlags()&mapHugetlb != 0 {
				out = append(out, vrange{v.GetStart(), v.GetEnd()})
			}
		}
	}
	return out, nil
}

// hugetlbFromProc returns the hugetlb mappings of a live process (VmFlags "ht" in smaps).
func hugetlbFromProc(pid int) ([]vrange, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return nil, fmt.Errorf("mappings of pid %d: %w", pid, err)
	}
	var out []vrange
	var cur vrange
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "VmFlags:"); ok {
			for _, f := range strings.Fields(rest) {
				if f == "ht" {
					out = append(out, cur)
					break
				}
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) > 0 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			var lo, hi uint64
			if _, err := fmt.Sscanf(f[0], "%x-%x", &lo, &hi); err == nil {
				cur = vrange{lo, hi}
			}
		}
	}
	return out, sc.Err()
}

// inRanges says whether va lies in one of rs (sorted by address; *cur walks forward with
// increasing va and restarts for an earlier one).
func inRanges(rs []vrange, cur *int, va uint64) bool {
	if *cur > len(rs) || (*cur > 0 && *cur <= len(rs) && rs[*cur-1].hi > va) {
		*cur = 0
	}
	for *cur < len(rs) && rs[*cur].hi <= va {
		*cur++
	}
	return *cur < len(rs) && rs[*cur].lo <= va
}
