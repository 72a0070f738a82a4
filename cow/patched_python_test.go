package cow

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/testenv"
)

// pyForkTree is a python3 program, not one of ours: it fills 16 MiB, and a task of it (the root,
// or with "middle" a child of the root) forks 3 children that only wait, then rewrites every other
// page of the buffer (python touches its own heap pages too). On SIGUSR1 every process writes the
// sha1 of its buffer to DIR/sum.PID. DIR/ready lists the pids, root first.
const pyForkTree = `
import os, sys, time, signal, hashlib
d, shape = sys.argv[1], sys.argv[2]
buf = bytearray(os.urandom(1 << 20)) * 16
def report(*_):
    with open(f"{d}/sum.{os.getpid()}.tmp", "w") as f:
        f.write(hashlib.sha1(buf).hexdigest())
    os.rename(f"{d}/sum.{os.getpid()}.tmp", f"{d}/sum.{os.getpid()}")
signal.signal(signal.SIGUSR1, report)
def forever():
    while True:
        time.sleep(1)
def fork_and_rewrite():
    kids = []
    for i in range(3):
        pid = os.fork()
        if pid == 0:
            forever()
        kids.append(pid)
    for off in range(0, len(buf), 8192):
        buf[off] = (buf[off] + 1) & 255
    return kids
pids = [os.getpid()]
if shape == "middle":
    r, w = os.pipe()
    m = os.fork()
    if m == 0:
        os.write(w, " ".join(map(str, fork_and_rewrite())).encode())
        forever()
    pids += [m] + [int(p) for p in os.read(r, 1000).split()]
else:
    pids += fork_and_rewrite()
with open(f"{d}/ready.tmp", "w") as f:
    f.write(" ".join(map(str, pids)))
os.rename(f"{d}/ready.tmp", f"{d}/ready")
forever()
`

// pySums asks every process of the tree for its buffer's sha1 (in pid order of pids).
func pySums(t *testing.T, dir string, pids []int) string {
	t.Helper()
	var out []string
	for _, pid := range pids {
		_ = os.Remove(filepath.Join(dir, "sum."+strconv.Itoa(pid)))
		if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
			t.Fatalf("signal %d: %v", pid, err)
		}
	}
	for _, pid := range pids {
		f := filepath.Join(dir, "sum."+strconv.Itoa(pid))
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if b, err := os.ReadFile(f); err == nil {
				out = append(out, string(b))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("process %d wrote no checksum to %s", pid, f)
			}
		}
	}
	return strings.Join(out, " ")
}

// TestLivePatchedCriuPython: a python3 fork tree whose parent rewrote every other page after the
// fork (sibling sharing, patch 0003), dumped by the patched CRIU and restored by it and by stock
// CRIU: the same checksums in all processes after both restores, the patched restore as small as
// the tree before the dump, the stock one with a private copy per child. "middle": the rewriting
// parent is itself a forked child (three levels).
func TestLivePatchedCriuPython(t *testing.T) {
	stock := stockCriu(t)
	patched := patchedCriu(t)
	if !criurun.Cow(patched).Siblings {
		testenv.Unavailable(t, "%s lacks criukit's COW patch 0003 (cow_siblings); rebuild it with scripts/build-criu", patched)
	}
	py := testenv.Command(t, "python3")
	for _, shape := range []string{"root", "middle"} {
		t.Run(shape, func(t *testing.T) { pyTree(t, py, shape, stock, patched) })
	}
}

func pyTree(t *testing.T, py, shape, stock, patched string) {
	dir := t.TempDir()
	script := filepath.Join(dir, "tree.py")
	if err := os.WriteFile(script, []byte(pyForkTree), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, script, dir, shape)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait() }()
	var pids []int
	t.Cleanup(func() {
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		_ = cmd.Process.Kill()
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(filepath.Join(dir, "ready")); err == nil {
			for _, f := range strings.Fields(string(b)) {
				p, _ := strconv.Atoi(f)
				pids = append(pids, p)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("python3 tree not ready after 30s")
		}
	}
	before, pssBefore := pySums(t, dir, pids), treePss(pids)

	imgs := filepath.Join(dir, "imgs")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := criurun.Dump(ctx, pids[0], criurun.Opts{Criu: patched, ImagesDir: imgs, LogFile: imgs + ".dump.log",
		Args: []string{"--network-lock", "skip"}}); err != nil {
		t.Fatalf("dump with %s: %v", patched, err)
	}
	reapTree(pids) // the root's children are reparented to the test (harness: subreaper)
	waitGone(t, pids)
	_, sibPages, _ := imageHints(t, imgs)
	if want := int64(3 * 8 << 20 / 4096); sibPages < want {
		t.Errorf("patched dump marked %d pages PE_SIB, want >= %d (3 children x the rewritten 8 MiB)", sibPages, want)
	}

	restore := func(criu string) (string, int64) {
		t.Helper()
		pid, err := criurun.Restore(ctx, criurun.Opts{Criu: criu, ImagesDir: imgs, LogFile: filepath.Join(t.TempDir(), "restore.log")})
		if err != nil {
			t.Fatalf("restore with %s: %v", criu, err)
		}
		if pid != pids[0] {
			t.Errorf("restored root pid %d, dumped %d", pid, pids[0])
		}
		defer func() {
			for _, p := range pids {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
			reapTree(pids)
			waitGone(t, pids)
		}()
		return pySums(t, dir, pids), treePss(pids)
	}
	sumPat, pssPat := restore(patched)
	sumStk, pssStk := restore(stock)
	t.Logf("python3 tree (%s): ΣPss before %s, patched restore %s, stock restore %s", shape, Human(pssBefore), Human(pssPat), Human(pssStk))
	if sumPat != before || sumStk != before {
		t.Errorf("checksums differ\n before:          %s\n patched restore: %s\n stock restore:   %s", before, sumPat, sumStk)
	}
	if limit := pssBefore + pssBefore/10; pssPat > limit {
		t.Errorf("patched restore: ΣPss %s, before the dump %s: sibling sharing lost", Human(pssPat), Human(pssBefore))
	}
	if pssStk < pssPat+12<<20 {
		t.Errorf("stock restore: ΣPss %s, patched %s: want stock >= patched + 12 MiB (3 children x 8 MiB rewritten)", Human(pssStk), Human(pssPat))
	}
}
