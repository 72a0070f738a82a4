package memtrack_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/criukit/criukit/internal/testenv"
	"github.com/criukit/criukit/memtrack"
)

func anonHugeKiB(t *testing.T, pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "AnonHugePages:"); ok {
			var n int
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &n)
			return n
		}
	}
	return 0
}

// TestTHPSplitMeasured measures what the help documents: transparent huge pages written while
// tracked are split into 4 KiB pages (write-protect faults work per 4 KiB page), so the target's
// AnonHugePages drops by the written huge pages and stays so until khugepaged collapses them again.
// Also: the JSON report says "uffd_fds_left": [] (not null) after a clean release.
func TestTHPSplitMeasured(t *testing.T) {
	testenv.Root(t)
	py := testenv.Command(t, "/usr/bin/python3")
	if b, _ := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled"); !strings.Contains(string(b), "[always]") && !strings.Contains(string(b), "[madvise]") {
		testenv.Unavailable(t, "THP disabled: %s", b)
	}
	dir := t.TempDir()
	ready, gofile := filepath.Join(dir, "ready"), filepath.Join(dir, "go")
	cmd := exec.Command(py, "-c", `import mmap, os, time
m = mmap.mmap(-1, 128 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
m.madvise(mmap.MADV_HUGEPAGE)
for i in range(0, len(m), 4096): m[i] = 1
open("`+ready+`", "w").close()
while not os.path.exists("`+gofile+`"): time.sleep(0.01)
for i in range(0, 64 << 20, 2 << 20): m[i] = 2   # one byte in each of the first 32 huge pages
open("`+gofile+`.done", "w").close()
time.sleep(1000)`)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL); cmd.Wait() })
	for dl := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(dl) {
			t.Fatal("not ready")
		}
	}
	before := anonHugeKiB(t, pid)
	if before < 32<<10 {
		testenv.Unavailable(t, "only %d KiB of AnonHugePages in the target: no THP to measure", before)
	}
	progress := func(iv *memtrack.Interval) { os.WriteFile(gofile, nil, 0o644) } // after the first scan
	rep, err := memtrack.Run(context.Background(), pid, memtrack.RunOptions{Interval: 200 * time.Millisecond, Duration: 2 * time.Second, Progress: progress})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(gofile + ".done"); err != nil {
		t.Fatal("the target did not write while tracked")
	}
	after := anonHugeKiB(t, pid)
	t.Logf("AnonHugePages: %d KiB before, %d KiB after tracking with 32 huge pages written (%d pages reported written)", before, after, rep.Written)
	if lost := before - after; lost < 32*2048/2 {
		t.Errorf("AnonHugePages fell by %d KiB only: the help says written huge pages are split (update it)", lost)
	}
	b, _ := json.Marshal(rep)
	if !strings.Contains(string(b), `"uffd_fds_left":[]`) {
		t.Errorf("JSON has no \"uffd_fds_left\":[] : %.300s", b)
	}
}
