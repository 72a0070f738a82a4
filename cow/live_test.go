package cow

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/workload"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { harness.Main(m) }

// treeOf lists pid and its descendants.
func treeOf(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", out[i]))
		for _, t := range tasks {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", out[i], t.Name()))
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					out = append(out, c)
				}
			}
		}
	}
	return out
}

// uniqueAnonFrames counts the distinct physical frames of the anonymous (not file-backed) present
// pages of a process tree, from /proc/PID/pagemap (root sees PFNs).
func uniqueAnonFrames(t *testing.T, pids []int) int {
	t.Helper()
	seen := map[uint64]bool{}
	for _, pid := range pids {
		maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
		if err != nil {
			t.Fatal(err)
		}
		pm, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", pid))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(maps))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) > 5 && (f[5] == "[vsyscall]" || f[5] == "[vvar]" || f[5] == "[vvar_vclock]") {
				continue
			}
			var lo, hi uint64
			fmt.Sscanf(f[0], "%x-%x", &lo, &hi)
			n := (hi - lo) / 4096
			buf := make([]byte, n*8)
			if _, err := pm.ReadAt(buf, int64(lo/4096*8)); err != nil {
				continue
			}
			for i := uint64(0); i < n; i++ {
				e := binary.LittleEndian.Uint64(buf[i*8:])
				if e&(1<<63) == 0 || e&(1<<61) != 0 {
					continue
				}
				seen[e&((1<<55)-1)] = true
			}
		}
		pm.Close()
	}
	return len(seen)
}

func restoreCheck(t *testing.T, d *harness.Dump, dir, want string) {
	t.Helper()
	r := (&harness.Dump{Dir: dir, Workload: d.Workload, Info: d.Info, WorkDir: d.WorkDir}).Restore(t)
	got := r.Check(t)
	r.Kill()
	if got != want {
		t.Fatalf("restore of %s: checksums differ\n before: %s\n after:  %s", dir, want, got)
	}
}

// sameMemory compares every dumped page of every process of two image directories.
func sameMemory(t *testing.T, a, b string) {
	t.Helper()
	tasks, err := readPstree(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tasks {
		ma, err := image.OpenMemory(a, tk.pid)
		if err != nil {
			t.Fatal(err)
		}
		mb, err := image.OpenMemory(b, tk.pid)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range ma.Ranges() {
			x, y := make([]byte, r.NrPages*4096), make([]byte, r.NrPages*4096)
			if _, err := ma.ReadAt(x, int64(r.Vaddr)); err != nil {
				t.Fatal(err)
			}
			if _, err := mb.ReadAt(y, int64(r.Vaddr)); err != nil {
				t.Fatalf("pid %d %#x: %v", tk.pid, r.Vaddr, err)
			}
			if !bytes.Equal(x, y) {
				t.Fatalf("pid %d: memory at %#x (%d pages) differs between %s and %s", tk.pid, r.Vaddr, r.NrPages, a, b)
			}
		}
		ma.Close()
		mb.Close()
	}
}

func TestLiveDedupRestore(t *testing.T) {
	harness.Criu(t)
	const mib, kids = 4, 3
	for _, mode := range workload.CowModes {
		t.Run(mode, func(t *testing.T) {
			p := harness.Start(t, "cow", harness.WithArgs("-mib", fmt.Sprint(mib), "-children", fmt.Sprint(kids), "-mode", mode))
			before := p.Check(t)
			frames := uniqueAnonFrames(t, treeOf(p.Pid))
			d := p.Dump(t)
			out := filepath.Join(t.TempDir(), "dedup")
			res, err := Dedup(d.Dir, out, Options{})
			if err != nil {
				t.Fatal(err)
			}
			var stored, deduped int64
			for _, ps := range res.Procs {
				stored += ps.Stored
				deduped += ps.Deduped
			}
			t.Logf("%s: pages %d -> %d bytes (%.1fx), stored %d pages, unique anon frames %d, deduped %d, levels %d",
				mode, res.PagesBefore, res.PagesAfter, float64(res.PagesBefore)/float64(res.PagesAfter), stored, frames, deduped, res.Levels)
			if res.PagesAfter != stored*4096 {
				t.Errorf("pages files hold %d bytes, want stored pages %d x 4096", res.PagesAfter, stored)
			}
			// Content dedup may find more than the frames (equal bytes in different frames), never
			// noticeably fewer: allow a few pages the Go runtime touched between scan and dump.
			if float64(stored) > 1.01*float64(frames)+64 {
				t.Errorf("stored %d pages, unique anonymous frames before dump %d (want <= 1.01x)", stored, frames)
			}
			if res.PagesBefore < int64(kids)*mib<<20 {
				t.Errorf("stock pages %d bytes: the tree did not share %d MiB x %d", res.PagesBefore, mib, kids)
			}
			sameMemory(t, d.Dir, out)

			st, err := Stats(out)
			if err != nil {
				t.Fatal(err)
			}
			var sd int64
			for i, ps := range st.Procs {
				sd += ps.Deduped
				if ps.Deduped != res.Procs[i].Deduped || ps.Moved != res.Procs[i].Moved || ps.Levels != res.Procs[i].Levels {
					t.Errorf("stats of pid %d disagree with dedup: %+v vs %+v", ps.Pid, ps, res.Procs[i])
				}
			}
			c0 := st.Procs[1]
			switch mode {
			case workload.CowMremapBig:
				if c0.Moved < int64(mib<<20/4096/4) || c0.Levels < 2 {
					t.Errorf("mremapbig child 0: moved %d levels %d, want >= %d moved in >= 2 levels", c0.Moved, c0.Levels, mib<<20/4096/4)
				}
			case workload.CowMremap1:
				if c0.Moved < 1 {
					t.Errorf("mremap1 child 0: moved %d, want >= 1", c0.Moved)
				}
			case workload.CowParentDiv50:
				c1 := st.Procs[2]
				if c1.Sources[c0.Pid] < int64(mib<<20/4096/2)-8 {
					t.Errorf("parentdiv50 child 1 takes %d pages from sibling %d, want ~half the region", c1.Sources[c0.Pid], c0.Pid)
				}
			}
			if err := CheckRestoreArgs([]string{"-D", out, "--auto-dedup"}); !errors.Is(err, ErrUnsafeOpt) {
				t.Errorf("--auto-dedup on a deduped dir: got %v, want ErrUnsafeOpt", err)
			}
			if err := CheckRestoreArgs([]string{"--stream", "--images-dir=" + out}); !errors.Is(err, ErrUnsafeOpt) {
				t.Errorf("--stream on a deduped dir: got %v, want ErrUnsafeOpt", err)
			}
			if err := CheckRestoreArgs([]string{"-D", d.Dir, "--auto-dedup"}); err != nil {
				t.Errorf("--auto-dedup on a stock dir refused: %v", err)
			}

			restoreCheck(t, d, out, before)

			mat := filepath.Join(t.TempDir(), "mat")
			if err := Materialize(out, mat); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(filepath.Join(mat, "parent")); err == nil {
				t.Error("materialized dir still has a parent link")
			}
			sameMemory(t, d.Dir, mat)
			if mode == workload.CowParentDiv50 || mode == workload.CowMremapBig {
				restoreCheck(t, d, mat, before)
			}
		})
	}
}

// TestLiveRefuse: deduping twice, a parent chain without marker and existing outputs are refused.
func TestLiveRefuse(t *testing.T) {
	harness.Criu(t)
	p := harness.Start(t, "cow", harness.WithArgs("-mib", "1", "-children", "1"))
	d := p.Dump(t)
	out := filepath.Join(t.TempDir(), "dedup")
	if _, err := Dedup(d.Dir, out, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Dedup(out, out+"2", Options{}); !errors.Is(err, ErrDeduped) {
		t.Errorf("dedup of a deduped dir: %v, want ErrDeduped", err)
	}
	if _, err := Dedup(d.Dir, out, Options{}); !errors.Is(err, ErrExists) {
		t.Errorf("dedup into an existing dir: %v, want ErrExists", err)
	}
	if err := os.Remove(filepath.Join(out, MarkerFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Dedup(out, out+"3", Options{}); !errors.Is(err, ErrIncremental) {
		t.Errorf("dedup of an incremental dir: %v, want ErrIncremental", err)
	}
	if err := CheckRestoreArgs([]string{"-D", out, "--auto-dedup"}); !errors.Is(err, ErrUnsafeOpt) {
		t.Errorf("--auto-dedup on a cow chain without marker: %v, want ErrUnsafeOpt", err)
	}
	// In place: the directory is swapped atomically and stays restorable.
	d2 := filepath.Join(t.TempDir(), "inplace")
	if err := os.CopyFS(d2, os.DirFS(d.Dir)); err != nil {
		t.Fatal(err)
	}
	if _, err := DedupInPlace(d2, Options{}); err != nil {
		t.Fatal(err)
	}
	if !IsDeduped(d2) {
		t.Fatal("in-place dedup left no marker")
	}
	sameMemory(t, d.Dir, d2)
}

// TestLiveDumpDedup: criukit dump --cow's path (criu dump + frame snapshot at post-dump + in-place
// rewrite) on a tree where a child moved a quarter of the shared region.
func TestLiveDumpDedup(t *testing.T) {
	criu := harness.Criu(t)
	p := harness.Start(t, "cow", harness.WithArgs("-mib", "4", "-children", "2", "-mode", workload.CowMremapBig))
	before := p.Check(t)
	tree := TreePids(p.Pid)
	base := t.TempDir()
	dir := filepath.Join(base, "images")
	res, err := DumpDedup(t.Context(), p.Pid, criurun.Opts{Criu: criu, ImagesDir: dir, LogFile: filepath.Join(base, "dump.log"),
		Args: []string{"--network-lock", "skip"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	reapTree(tree)
	if res.SnapshotError != "" || res.SnapshotPages == 0 {
		t.Fatalf("no frame snapshot: %q (%d pages)", res.SnapshotError, res.SnapshotPages)
	}
	mk, err := ReadMarker(dir)
	if err != nil || mk.Match != "frames+content" {
		t.Fatalf("marker %+v, %v", mk, err)
	}
	c0 := res.Procs[1]
	if c0.Moved < 256 || c0.Levels < 2 {
		t.Errorf("moving child: moved %d levels %d, want >= 256 moved pages in >= 2 levels", c0.Moved, c0.Levels)
	}
	t.Logf("dump %.2fs (snapshot %.3fs, %d pages), rewrite %.2fs, pages %d -> %d", res.DumpSeconds, res.SnapshotSeconds,
		res.SnapshotPages, res.DedupSeconds, res.PagesBefore, res.PagesAfter)
	restoreCheck(t, &harness.Dump{Workload: p.Workload, Info: p.Info, WorkDir: p.Dir}, dir, before)
}

func reapTree(tree []int) {
	for _, pid := range tree {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			var ws unix.WaitStatus
			unix.Wait4(pid, &ws, unix.WNOHANG, nil)
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
				break
			}
		}
	}
}

// TestLiveDumpPageServer: criu dump sends its pages to the dedup page server, which never writes a
// duplicate; stock criu restores the result.
func TestLiveDumpPageServer(t *testing.T) {
	criu := harness.Criu(t)
	for _, c := range []struct {
		mode     string
		noFrames bool // content matching only: every page copied out of the socket
	}{{workload.CowPlain, false}, {workload.CowMremapBig, false}, {workload.CowParentDiv50, false}, {workload.CowParentDiv50, true}} {
		mode := c.mode
		name := mode
		if c.noFrames {
			name += "-noframes"
		}
		t.Run(name, func(t *testing.T) {
			p := harness.Start(t, "cow", harness.WithArgs("-mib", "4", "-children", "3", "-mode", mode))
			before := p.Check(t)
			tree := TreePids(p.Pid)
			frames, _, err := UniqueFrames(tree)
			if err != nil {
				t.Fatal(err)
			}
			base := t.TempDir()
			dir := filepath.Join(base, "images")
			res, err := DumpDedupPageServer(t.Context(), p.Pid, criurun.Opts{Criu: criu, ImagesDir: dir, LogFile: filepath.Join(base, "dump.log"),
				Args: []string{"--network-lock", "skip"}}, Options{NoFrames: c.noFrames})
			if err != nil {
				t.Fatal(err)
			}
			reapTree(tree)
			var stored, deduped int64
			for _, ps := range res.Procs {
				stored += ps.Stored
				deduped += ps.Deduped
			}
			// With the frame snapshot, pages sharing a frame with one received before are not
			// copied out of the socket; for a plain fork that is nearly every deduped page.
			t.Logf("%s: %d of %d deduped pages spliced away", name, res.SkippedPages, deduped)
			switch {
			case c.noFrames && res.SkippedPages != 0:
				t.Errorf("NoFrames: %d pages skipped", res.SkippedPages)
			case !c.noFrames && res.SkippedPages == 0:
				t.Error("no page skipped by frame")
			case !c.noFrames && mode == workload.CowPlain && res.SkippedPages < deduped*9/10:
				t.Errorf("plain fork: only %d of %d deduped pages skipped by frame", res.SkippedPages, deduped)
			}
			t.Logf("%s: received %d bytes, wrote %d (%d pages; unique frames %d), %d levels, dump %.2fs", mode, res.PagesBefore, res.PagesAfter,
				stored, frames, res.Levels, res.DumpSeconds)
			if float64(stored) > 1.01*float64(frames)+64 || res.PagesAfter != stored*4096 {
				t.Errorf("stored %d pages (%d bytes), unique frames %d", stored, res.PagesAfter, frames)
			}
			st, err := Stats(dir)
			if err != nil {
				t.Fatal(err)
			}
			for i, ps := range st.Procs {
				if ps.Deduped != res.Procs[i].Deduped {
					t.Errorf("stats of pid %d: %d deduped, page server said %d", ps.Pid, ps.Deduped, res.Procs[i].Deduped)
				}
			}
			restoreCheck(t, &harness.Dump{Workload: p.Workload, Info: p.Info, WorkDir: p.Dir}, dir, before)
			mat := filepath.Join(t.TempDir(), "mat")
			if err := Materialize(dir, mat); err != nil {
				t.Fatal(err)
			}
			sameMemory(t, mat, dir)
		})
	}
}

// TestLiveDumpPageServerNetns: the socketpair reaches criu through nsenter too.
func TestLiveDumpPageServerNetns(t *testing.T) {
	criu := harness.Criu(t)
	ns := harness.NewNetns(t)
	p := harness.Start(t, "cow", harness.WithNetns(ns), harness.WithArgs("-mib", "2", "-children", "2"))
	before := p.Check(t)
	tree := TreePids(p.Pid)
	base := t.TempDir()
	dir := filepath.Join(base, "images")
	res, err := DumpDedupPageServer(t.Context(), p.Pid, criurun.Opts{Criu: criu, ImagesDir: dir, LogFile: filepath.Join(base, "dump.log"),
		Netns: ns, Args: []string{"--network-lock", "skip"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	reapTree(tree)
	if res.PagesAfter*2 > res.PagesBefore {
		t.Errorf("pages %d -> %d: not deduped", res.PagesBefore, res.PagesAfter)
	}
	r := (&harness.Dump{Dir: dir, Workload: p.Workload, Info: p.Info, WorkDir: p.Dir}).RestoreIn(t, ns)
	if got := r.Check(t); got != before {
		t.Fatalf("checksums differ\n before: %s\n after:  %s", before, got)
	}
	r.Kill()
}

// TestLiveDumpPageServerPidns: a tree in its own pid namespace; the frame snapshot maps the pids in
// the images (as the tree sees them) to ours, so shared frames are still spliced away.
func TestLiveDumpPageServerPidns(t *testing.T) {
	criu := harness.Criu(t)
	p := harness.Start(t, "cow", harness.WithNamespaces(syscall.CLONE_NEWPID), harness.WithArgs("-mib", "4", "-children", "2"))
	before := p.Check(t)
	tree := TreePids(p.Pid)
	if vpid(p.Pid) != 1 {
		t.Fatalf("workload pid %d is %d in its namespace, want 1", p.Pid, vpid(p.Pid))
	}
	base := t.TempDir()
	dir := filepath.Join(base, "images")
	res, err := DumpDedupPageServer(t.Context(), p.Pid, criurun.Opts{Criu: criu, ImagesDir: dir, LogFile: filepath.Join(base, "dump.log"),
		Args: []string{"--network-lock", "skip"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	reapTree(tree)
	var deduped int64
	for _, ps := range res.Procs {
		deduped += ps.Deduped
	}
	if res.SkippedPages < deduped*9/10 {
		t.Errorf("only %d of %d deduped pages spliced away (pid mapping of the snapshot?)", res.SkippedPages, deduped)
	}
	restoreCheck(t, &harness.Dump{Workload: p.Workload, Info: p.Info, WorkDir: p.Dir}, dir, before)
}
