package memtrack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/criukit/criukit/internal/testenv"
	"github.com/criukit/criukit/memtrack"
)

// Run over a few intervals while the test makes the target write; the report adds up, the plot is
// well-formed SVG, and the target is released.
func TestRunReportAndPlot(t *testing.T) {
	testenv.Root(t)
	w := startWriter(t, 32)
	// After each of the first scans, write 4 distinct pages; the next interval must report them.
	var wroteAfter []int
	progress := func(iv *memtrack.Interval) {
		if k := len(wroteAfter); k < 4 {
			w.write(t, []int{k, k + 8, k + 16, k + 24})
			wroteAfter = append(wroteAfter, iv.Index)
		}
	}
	rep, err := memtrack.Run(context.Background(), w.p.Pid, memtrack.RunOptions{Interval: 100 * time.Millisecond,
		Duration: 800 * time.Millisecond, Ranges: true, Progress: progress})
	if err != nil {
		t.Fatal(err)
	}
	scanned := 0 // writes followed by another scan
	for _, k := range wroteAfter {
		if k < len(rep.Intervals) {
			scanned++
		}
	}
	if scanned == 0 {
		t.Fatalf("no write was followed by a scan (%d intervals)", len(rep.Intervals))
	}
	if !rep.Released || len(rep.UffdLeft) != 0 {
		t.Fatalf("not released: %+v", rep.UffdLeft)
	}
	if n := len(rep.Intervals); n < 2 || n > 9 {
		t.Errorf("%d intervals for 800ms at 100ms", n)
	}
	sum := 0
	for _, iv := range rep.Intervals {
		sum += iv.Pages
	}
	if sum != rep.Written {
		t.Errorf("intervals sum to %d pages, report says %d", sum, rep.Written)
	}
	var region *memtrack.RegionSummary
	for i, r := range rep.Regions {
		if r.Start == w.addr {
			region = &rep.Regions[i]
		}
	}
	if region == nil {
		t.Fatalf("writer region %#x not in report", w.addr)
	}
	if region.Unique != 4*scanned || region.Written != 4*scanned {
		t.Errorf("writer region: %+v; want %d pages written, all distinct", region, 4*scanned)
	}
	if len(rep.Skipped) == 0 {
		t.Errorf("nothing skipped: a Go binary has file-backed text at least")
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "plot.svg")
	if err := memtrack.WriteSVGFile(path, rep); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b))
	for {
		if _, err := dec.Token(); err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("plot is not well-formed XML: %v", err)
			}
			break
		}
	}
	if !strings.Contains(string(b), "<polyline") {
		t.Errorf("plot has no data line")
	}
	t.Logf("%d intervals, %d pages written, working set %d, mean rate %.0f B/s, mean scan %v",
		len(rep.Intervals), rep.Written, rep.Unique, rep.MeanRate, rep.MeanScan)
}

// Injection must leave any target as it was, including a thread blocked in a restartable syscall.
func TestAttachLeavesTargetsIntact(t *testing.T) {
	testenv.Root(t)
	for _, tc := range []struct {
		name string
		argv []string
	}{
		{"sleep in clock_nanosleep (restart block)", []string{"sleep", "1000"}},
		{"cat blocked in read", []string{"cat"}},
		{"python busy writing", []string{"python3", "-c", "b=bytearray(1<<22)\nwhile True:\n for i in range(0,len(b),4096): b[i]=(b[i]+1)&255"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, err := exec.LookPath(tc.argv[0])
			if err != nil {
				testenv.Unavailable(t, "%s not installed", tc.argv[0])
			}
			cmd := exec.Command(path, tc.argv[1:]...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			pr, pw, err := os.Pipe() // stdin that never ends
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			t.Cleanup(func() { pw.Close() })
			cmd.Stdin = pr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
			pid := cmd.Process.Pid
			// the child runs the program only after execve (and a wrapper such as pyenv's python3
			// shim execs once more): attaching before would see the exec
			for deadline := time.Now().Add(10 * time.Second); ; {
				if exe, _ := os.Readlink("/proc/" + itoa(pid) + "/exe"); strings.HasPrefix(filepath.Base(exe), tc.argv[0]) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("pid %d did not execute %s", pid, tc.argv[0])
				}
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(150 * time.Millisecond)
			sysBefore, _ := os.ReadFile("/proc/" + itoa(pid) + "/syscall")
			tr, err := memtrack.Attach(pid, memtrack.Options{})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
			iv, err := tr.Scan(false)
			if err != nil {
				t.Fatal(err)
			}
			if err := tr.Close(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			if fds, _ := memtrack.UffdFDs(pid); len(fds) != 0 {
				t.Fatalf("uffd fds left: %v", fds)
			}
			var ws syscall.WaitStatus
			if wpid, _ := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); wpid == pid {
				t.Fatalf("target ended after injection: %v", ws)
			}
			sysAfter, _ := os.ReadFile("/proc/" + itoa(pid) + "/syscall")
			nr := func(b []byte) string {
				f := strings.Fields(string(b))
				if len(f) == 0 {
					return ""
				}
				return f[0]
			}
			// clock_nanosleep (230) interrupted by the injection continues as restart_syscall (219).
			restarted := nr(sysBefore) == "230" && nr(sysAfter) == "219"
			if tc.name != "python busy writing" && nr(sysBefore) != nr(sysAfter) && !restarted {
				t.Errorf("blocked in syscall %s before, %s after", nr(sysBefore), nr(sysAfter))
			}
			t.Logf("%d regions, %d pages written in %v; syscall %s", len(tr.Regions()), iv.Pages, iv.End.Sub(iv.Start).Round(time.Millisecond), nr(sysAfter))
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// A target that executes a new program after Attach makes Scan fail with ErrExec instead of
// reporting nothing.
func TestExecDetected(t *testing.T) {
	testenv.Root(t)
	sh, err := exec.LookPath("sh")
	if err != nil {
		testenv.Unavailable(t, "no sh")
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	// sh waits for a line on stdin, then becomes sleep.
	cmd := exec.Command(sh, "-c", "read x; exec sleep 1000")
	cmd.Stdin = pr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pw.Close(); cmd.Process.Kill(); cmd.Wait() })
	time.Sleep(100 * time.Millisecond)
	tr, err := memtrack.Attach(cmd.Process.Pid, memtrack.Options{FollowNew: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if _, err := tr.Scan(false); err != nil {
		t.Fatal(err)
	}
	pw.Write([]byte("go\n"))
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/comm"); strings.TrimSpace(string(b)) == "sleep" {
			break
		}
	}
	if _, err := tr.Scan(false); !errors.Is(err, memtrack.ErrExec) {
		t.Fatalf("Scan after exec: %v, want ErrExec", err)
	}
}
