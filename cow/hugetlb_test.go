package cow

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/testenv"
	"github.com/criukit/criukit/internal/workload"
)

// needHugePages makes sure n free 2 MiB huge pages exist (raising vm.nr_hugepages, put back at
// the end).
func needHugePages(t *testing.T, n int) {
	t.Helper()
	const knob = "/proc/sys/vm/nr_hugepages"
	b, err := os.ReadFile(knob)
	if err != nil {
		testenv.Unavailable(t, "no hugetlbfs support: %v", err)
	}
	total, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	free := 0
	mi, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if v, ok := strings.CutPrefix(l, "HugePages_Free:"); ok {
			free, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if free >= n {
		return
	}
	want := total + n - free
	if err := os.WriteFile(knob, []byte(strconv.Itoa(want)), 0o644); err != nil {
		testenv.Unavailable(t, "cannot reserve %d huge pages: %v", n, err)
	}
	t.Cleanup(func() {
		// other users may hold some by now: shrinking only frees unused ones
		_ = os.WriteFile(knob, []byte(strconv.Itoa(total)), 0o644)
	})
}

// hugeRegion returns the MAP_HUGETLB mappings of every process of a dump, from its mm images.
func hugeRegion(t *testing.T, dir string) map[int][]vrange {
	t.Helper()
	tasks, err := readPstree(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int][]vrange{}
	for _, tk := range tasks {
		rs, err := hugetlbFromImages(dir, tk.pid)
		if err != nil {
			t.Fatal(err)
		}
		out[tk.pid] = rs
	}
	return out
}

// noParentInHuge fails if a process' top pagemap has a PE_PARENT page inside one of its
// MAP_HUGETLB mappings (criu's restorer cannot read those from the parent chain and hangs).
func noParentInHuge(t *testing.T, dir string) int {
	t.Helper()
	huge := hugeRegion(t, dir)
	n := 0
	for pid, rs := range huge {
		if len(rs) == 0 {
			continue
		}
		n += len(rs)
		m, err := image.OpenMemory(dir, pid)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range m.Ranges() {
			if r.Flags&image.PEParent == 0 {
				continue
			}
			for _, h := range rs {
				if r.Vaddr < h.hi && r.End() > h.lo {
					t.Errorf("pid %d: PE_PARENT pages %#x-%#x inside the MAP_HUGETLB mapping %#x-%#x", pid, r.Vaddr, r.End(), h.lo, h.hi)
				}
			}
		}
		m.Close()
	}
	return n
}

// TestLiveHugetlbDedup: a parent and its children share private MAP_HUGETLB memory (zdtm
// static/maps10). Dedup (in place, and through the page server) must keep those pages in each
// process' own pages file, and the restore must finish with the same memory. Before the fix the
// restore hung in criu's restorer (preadv of a huge mapping returning 0 forever).
func TestLiveHugetlbDedup(t *testing.T) {
	criu := harness.Criu(t)
	needHugePages(t, 8) // 2 parent + 1 per child (copied on the child's write), then the same for the restore
	for _, via := range []string{"in-place", "page-server"} {
		t.Run(via, func(t *testing.T) {
			p := harness.Start(t, "cow", harness.WithArgs("-mib", "4", "-children", "2", "-mode", workload.CowDiv10, "-hugetlb"))
			before := p.Check(t)
			// A restore stuck in criu's restorer leaves the tree spinning under the dumped pids
			// (comm "criu") after criu itself is killed: kill those at the end.
			stuck := TreePids(p.Pid)
			t.Cleanup(func() {
				for _, pid := range stuck {
					if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(b)) == "criu" {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			})
			var dir string
			var d *harness.Dump
			if via == "in-place" {
				d = p.Dump(t)
				dir = d.Dir
				res, err := DedupInPlace(dir, Options{})
				if err != nil {
					t.Fatal(err)
				}
				var st, dd int64
				for _, ps := range res.Procs {
					st += ps.Stored
					dd += ps.Deduped
				}
				t.Logf("in place: stored %d pages, deduped %d", st, dd)
			} else {
				tree := TreePids(p.Pid)
				base := t.TempDir()
				dir = filepath.Join(base, "images")
				if _, err := DumpDedupPageServer(t.Context(), p.Pid, criurun.Opts{Criu: criu, ImagesDir: dir, LogFile: filepath.Join(base, "dump.log"),
					Args: []string{"--network-lock", "skip"}}, Options{}); err != nil {
					t.Fatal(err)
				}
				reapTree(tree)
				d = &harness.Dump{Workload: p.Workload, Info: p.Info, WorkDir: p.Dir}
			}
			if n := noParentInHuge(t, dir); n < 3 {
				t.Fatalf("%d MAP_HUGETLB mappings in the dump, want one per process (3): did the workload map huge pages?", n)
			}
			restoreCheck(t, d, dir, before)
		})
	}
}
