package memtrack_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/testenv"
	"github.com/criukit/criukit/internal/workload"
	"github.com/criukit/criukit/memtrack"
)

func TestMain(m *testing.M) { harness.Main(m) }

// writer controls a memtrack-writer workload.
type writer struct {
	p     *harness.Proc
	addr  uint64
	pages int
	seq   int
}

func startWriter(t *testing.T, pages int) *writer { return startWriterTB(t, pages) }

func startWriterTB(t testing.TB, pages int) *writer {
	t.Helper()
	p := harness.Start(t, "memtrack-writer", harness.WithArgs(strconv.Itoa(pages)))
	w := &writer{p: p}
	if _, err := fmt.Sscanf(p.Info, "addr=%v pages=%d", &w.addr, &w.pages); err != nil || w.pages != pages {
		t.Fatalf("bad ready info %q: %v", p.Info, err)
	}
	return w
}

// write makes the workload write the listed pages once and waits until it did.
func (w *writer) write(t testing.TB, idx []int) {
	t.Helper()
	var s []string
	for _, i := range idx {
		s = append(s, strconv.Itoa(i))
	}
	w.command(t, strings.Join(s, ","))
}

func (w *writer) command(t testing.TB, what string) {
	t.Helper()
	w.seq++
	cmd := filepath.Join(w.p.Dir, workload.MemtrackCmdFile)
	if err := os.WriteFile(cmd+".tmp", fmt.Appendf(nil, "%d %s", w.seq, what), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(cmd+".tmp", cmd); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(w.p.Pid, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	ack := filepath.Join(w.p.Dir, workload.MemtrackAckFile)
	want := strconv.Itoa(w.seq)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if b, err := os.ReadFile(ack); err == nil && string(b) == want {
			return
		}
	}
	t.Fatalf("memtrack-writer pid %d did not acknowledge write %d", w.p.Pid, w.seq)
}

// inRegion returns the page indexes of the workload's region that iv reports as written.
func (w *writer) inRegion(iv *memtrack.Interval) []int {
	ps := uint64(os.Getpagesize())
	lo, hi := w.addr, w.addr+uint64(w.pages)*ps
	var out []int
	for _, rw := range iv.Regions {
		for _, r := range rw.Ranges {
			for a := max(r.Start, lo); a < min(r.End, hi); a += ps {
				out = append(out, int((a-lo)/ps))
			}
		}
	}
	return out
}

func TestTrackExactPagesThenDump(t *testing.T) {
	testenv.Root(t)
	harness.Criu(t)
	const pages = 64
	w := startWriter(t, pages)
	tr, err := memtrack.Attach(w.p.Pid, memtrack.Options{FollowNew: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	if fds, err := memtrack.UffdFDs(w.p.Pid); err != nil || len(fds) != 0 {
		t.Fatalf("target holds uffd fds %v while tracked (err %v); it must hold none", fds, err)
	}
	var found bool
	for _, r := range tr.Regions() {
		if r.Start == w.addr && r.End == w.addr+pages*uint64(os.Getpagesize()) {
			found = true
		}
	}
	if !found {
		t.Fatalf("region %#x (+%d pages) not registered; regions: %+v", w.addr, pages, tr.Regions())
	}
	if _, err := tr.Scan(true); err != nil { // baseline: whatever happened before
		t.Fatal(err)
	}
	all := make([]int, pages)
	for i := range all {
		all[i] = i
	}
	every7 := []int{}
	for i := 0; i < pages; i += 7 {
		every7 = append(every7, i)
	}
	rounds := []struct {
		name  string
		write []int
	}{
		{"one page", []int{0}},
		{"run of three", []int{1, 2, 3}},
		{"nothing", nil},
		{"last page", []int{pages - 1}},
		{"every 7th", every7},
		{"same page again", []int{0}},
		{"all", all},
		{"two runs", []int{5, 6, 40, 41, 42}},
	}
	for _, rd := range rounds {
		w.write(t, rd.write)
		iv, err := tr.Scan(true)
		if err != nil {
			t.Fatalf("%s: %v", rd.name, err)
		}
		got := w.inRegion(iv)
		want := slices.Clone(rd.write)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: memtrack reported pages %v, the target wrote %v", rd.name, got, want)
		}
		t.Logf("%s: region pages %v; whole process %d pages in %d regions, scan %v", rd.name, got, iv.Pages, len(iv.Regions), iv.ScanTime)
	}
	// The target holds no uffd while tracked, so criu can even dump it mid-tracking; tracking goes
	// on exactly afterwards (criu's own writes into the target, e.g. its parasite, are not in the
	// region).
	mid := w.p.Dump(t, "--leave-running")
	if _, err := tr.Scan(true); err != nil {
		t.Fatal(err)
	}
	w.write(t, []int{7, 8})
	iv, err := tr.Scan(true)
	if err != nil {
		t.Fatal(err)
	}
	if got := w.inRegion(iv); !slices.Equal(got, []int{7, 8}) {
		t.Errorf("after a criu dump --leave-running: reported %v, wrote [7 8]", got)
	}
	t.Logf("criu dump --leave-running while tracked: ok (%s)", mid.Dir)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if fds, _ := memtrack.UffdFDs(w.p.Pid); len(fds) != 0 {
		t.Fatalf("target holds uffd fds %v after Close", fds)
	}
	if s, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", w.p.Pid)); err == nil && strings.Contains(string(s), " uw") {
		t.Errorf("a VMA still has the uffd-wp flag (uw) after Close")
	}
	d := w.p.Dump(t)
	r := d.Restore(t)
	r.Check(t)
}

// A VMA replaced in place (munmap + mmap at the same address) is found and armed again.
func TestFollowReplacedVMA(t *testing.T) {
	testenv.Root(t)
	w := startWriter(t, 16)
	for _, follow := range []bool{true, false} {
		tr, err := memtrack.Attach(w.p.Pid, memtrack.Options{FollowNew: follow})
		if err != nil {
			t.Fatal(err)
		}
		w.write(t, []int{1, 2})
		iv, err := tr.Scan(true)
		if err != nil {
			t.Fatal(err)
		}
		if got := w.inRegion(iv); !slices.Equal(got, []int{1, 2}) {
			t.Fatalf("follow=%v before remap: %v", follow, got)
		}
		w.command(t, "remap")
		iv, err = tr.Scan(true) // sees the new VMA and arms it (FollowNew)
		if err != nil {
			t.Fatal(err)
		}
		if follow && iv.NewRegions == 0 {
			t.Errorf("replaced VMA not re-armed")
		}
		w.write(t, []int{3})
		iv, err = tr.Scan(true)
		if err != nil {
			t.Fatal(err)
		}
		got := w.inRegion(iv)
		if follow && !slices.Equal(got, []int{3}) {
			t.Errorf("after remap: reported %v, wrote [3]", got)
		}
		if !follow && len(got) != 0 {
			t.Errorf("without FollowNew the new VMA is not tracked, yet %v reported", got)
		}
		retired := 0
		for _, r := range tr.AllRegions() {
			if r.Retired {
				retired++
			}
		}
		if follow && retired == 0 {
			t.Errorf("the replaced region was not retired")
		}
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if fds, _ := memtrack.UffdFDs(w.p.Pid); len(fds) != 0 {
		t.Fatalf("uffd left: %v", fds)
	}
}
