package ghosts_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/criukit/criukit/ghosts"
	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// dumpArgs keep the workload running (so one process serves every limit) and skip the network lock.
var dumpArgs = []string{"--leave-running", "--network-lock", "skip"}

func dump(t *testing.T, criu string, c ghosts.DumpConfig) (*ghosts.DumpResult, error) {
	t.Helper()
	c.Criu = criu
	c.ImagesDir = t.TempDir()
	c.Args = append(c.Args, dumpArgs...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return ghosts.Dump(ctx, c)
}

// TestBoundary: the prediction matches criu's own pass/fail at limit-1 block, -1 byte, exact and
// +1 block, for a dense file and a sparse one (both allocated > 1 MiB, so a pass also proves that
// criu honoured the limit), with the limit given by --ghost-limit and by CRIUKIT_GHOST_LIMIT (a
// generated config file through CRIU_CONFIG_FILE).
func TestBoundary(t *testing.T) {
	criu := harness.Criu(t)
	for _, spec := range []struct {
		name, arg string
		sparse    bool
	}{
		{"dense", "1500000", false},
		{"sparse", "1100000@104857600", true},
		{"tmpfs-sparse", "shm:1100000@104857600", true}, // /dev/shm: no FIEMAP, SEEK_DATA/SEEK_HOLE
	} {
		t.Run(spec.name, func(t *testing.T) {
			p := harness.Start(t, "doctor-ghost", harness.WithArgs(spec.arg))
			r, err := ghosts.Scan(p.Pid)
			if err != nil {
				t.Fatal(err)
			}
			var g *ghosts.Item
			for i := range r.Items {
				if r.Items[i].Kind == ghosts.KindGhost {
					if g != nil {
						t.Fatalf("two ghosts predicted: %+v", r.Items)
					}
					g = &r.Items[i]
				}
			}
			if g == nil {
				t.Fatalf("no ghost predicted: %+v", r.Items)
			}
			a := g.Allocated
			if a <= ghosts.DefaultGhostLimit || r.MinGhostLimit != a {
				t.Fatalf("allocated %d, min limit %d: want both equal and > 1 MiB", a, r.MinGhostLimit)
			}
			if spec.sparse && (g.Size < 100<<20 || !g.Chunked) {
				t.Fatalf("sparse file predicted as size %d chunked=%v", g.Size, g.Chunked)
			}
			t.Logf("%s: size %d allocated %d predicted image %d bytes", spec.name, g.Size, a, g.ImageBytes)
			// Each step predicts from a fresh scan right before criu runs: a passing dump reads the
			// file (moving its atime, stored as varints in the image), and on tmpfs CRIU's build-id
			// probe maps page 0 of the file, which allocates that page when it was a hole.
			const block = 4096
			ghost := func() ghosts.Item {
				now, err := ghosts.Scan(p.Pid)
				if err != nil {
					t.Fatal(err)
				}
				for _, it := range now.Items {
					if it.Kind == ghosts.KindGhost {
						return it
					}
				}
				t.Fatalf("ghost gone: %+v", now.Items)
				return ghosts.Item{}
			}
			for _, off := range []int64{-block, -1, 0, block} {
				for _, via := range []string{ghosts.ViaFlag, "env"} {
					g := ghost()
					limit := g.Allocated + off
					predictPass := g.Allocated <= limit
					if predictPass != (off >= 0) || g.MinGhostLimit != g.Allocated {
						t.Fatalf("prediction at allocated%+d: pass=%v, min limit %d", off, predictPass, g.MinGhostLimit)
					}
					c := ghosts.DumpConfig{Pid: p.Pid, NoPreflight: true, CopyBudget: -1, GhostLimit: limit, Via: via}
					if via == "env" {
						t.Setenv(ghosts.EnvGhostLimit, fmt.Sprint(limit))
						gl, _, err := ghosts.LimitsFromEnv(os.Getenv)
						if err != nil || gl != limit {
							t.Fatalf("LimitsFromEnv: %d, %v", gl, err)
						}
						c.GhostLimit, c.Via = gl, ghosts.ViaConfig
					}
					res, err := dump(t, criu, c)
					criuPass := err == nil
					log, _ := os.ReadFile(res.Log)
					t.Logf("allocated %d, limit %d (%+d) via %s: predicted pass=%v, criu pass=%v", g.Allocated, limit, off, via, predictPass, criuPass)
					if criuPass != predictPass {
						t.Fatalf("limit %d via %s: prediction pass=%v but criu pass=%v (%v)", limit, via, predictPass, criuPass, err)
					}
					if !criuPass {
						want := fmt.Sprintf("of %d size, increase limit", g.Allocated)
						if !strings.Contains(string(log), want) {
							t.Fatalf("criu failed for another reason: %v (want %q in the log)", err, want)
						}
						continue
					}
					if via == "env" && !strings.Contains(string(log), "Parsing config file "+res.ConfigFile) {
						t.Errorf("criu did not read the generated config %s (CRIU_CONFIG_FILE)", res.ConfigFile)
					}
					imgs, _ := filepath.Glob(filepath.Join(filepath.Dir(res.Log), "ghost-file-*.img"))
					if len(imgs) != 1 {
						t.Fatalf("want one ghost image, got %v", imgs)
					}
					fi, _ := os.Stat(imgs[0])
					if fi.Size() != g.ImageBytes {
						t.Errorf("ghost image %d bytes, predicted %d", fi.Size(), g.ImageBytes)
					}
				}
			}
			// The preflight refuses the same case before criu freezes anything.
			a = ghost().Allocated
			_, err = dump(t, criu, ghosts.DumpConfig{Pid: p.Pid, GhostLimit: a - 1, CopyBudget: -1})
			var gle *ghosts.GhostLimitError
			if !errors.As(err, &gle) || gle.Need != a {
				t.Fatalf("preflight at limit %d: got %v, want a GhostLimitError needing %d", a-1, err, a)
			}
		})
	}
}

// TestPredictFiles: the files workload's ghosts are predicted byte-exactly, and the other copies
// (pipe, fifo, unix queues, memfd) are found; the audit of a real dump sees the same kinds.
func TestPredictFiles(t *testing.T) {
	criu := harness.Criu(t)
	p := harness.Start(t, "files")
	r, err := ghosts.Scan(p.Pid)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[ghosts.Kind]int{}
	for _, it := range r.Items {
		kinds[it.Kind]++
	}
	for _, k := range []ghosts.Kind{ghosts.KindGhost, ghosts.KindPipe, ghosts.KindFifo, ghosts.KindUnixQueue, ghosts.KindMemfd} {
		if kinds[k] == 0 {
			t.Errorf("no %s predicted; items: %+v", k, r.Items)
		}
	}
	if kinds[ghosts.KindGhost] != 2 {
		t.Errorf("want 2 ghosts (small and big), got %d", kinds[ghosts.KindGhost])
	}
	res, err := dump(t, criu, ghosts.DumpConfig{Pid: p.Pid, GhostLimit: -1, CopyBudget: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	got := map[ghosts.Kind]int64{}
	for _, it := range res.Audit.Items {
		got[it.Kind] += it.Bytes
	}
	var want int64
	for _, it := range r.Items {
		if it.Kind == ghosts.KindGhost {
			want += it.ImageBytes
		}
	}
	if got[ghosts.KindGhost] != want {
		t.Errorf("ghost images: %d bytes, predicted %d", got[ghosts.KindGhost], want)
	}
	for _, k := range []ghosts.Kind{ghosts.KindPipe, ghosts.KindFifo, ghosts.KindUnixQueue, ghosts.KindMemfd} {
		if got[k] == 0 {
			t.Errorf("audit found no %s: %+v", k, res.Audit.Items)
		}
	}
	t.Logf("predicted total %d bytes, audited %d bytes", r.TotalImageBytes, res.Audit.Total)
	for _, it := range r.Items {
		t.Logf("predicted %-10s %6d %s %s", it.Kind, it.ImageBytes, it.Where, it.Path)
	}
	for _, it := range res.Audit.Items {
		t.Logf("audited   %-10s %6d %s %s", it.Kind, it.Bytes, it.File, it.Note)
	}
}

// TestBudget: CRIUKIT_COPY_BUDGET is enforced by the preflight and, without it, by the audit.
func TestBudget(t *testing.T) {
	criu := harness.Criu(t)
	p := harness.Start(t, "doctor-ghost", harness.WithArgs("500000", "20000"))
	t.Setenv(ghosts.EnvCopyBudget, "100K")
	_, budget, err := ghosts.LimitsFromEnv(os.Getenv)
	if err != nil || budget != 100<<10 {
		t.Fatalf("budget %d, %v", budget, err)
	}
	_, err = dump(t, criu, ghosts.DumpConfig{Pid: p.Pid, GhostLimit: -1, CopyBudget: budget})
	var be *ghosts.BudgetError
	if !errors.As(err, &be) || be.Phase != "preflight" || !errors.Is(err, ghosts.ErrOverBudget) {
		t.Fatalf("preflight: got %v, want a preflight BudgetError", err)
	}
	if !strings.Contains(err.Error(), "ghost-0.bin") || !strings.Contains(err.Error(), ghosts.EnvCopyBudget) {
		t.Errorf("error does not name the biggest item and what to do:\n%v", err)
	}
	_, err = dump(t, criu, ghosts.DumpConfig{Pid: p.Pid, GhostLimit: -1, CopyBudget: budget, NoPreflight: true})
	if !errors.As(err, &be) || be.Phase != "audit" || be.Total < 500000 {
		t.Fatalf("audit: got %v, want an audit BudgetError over 500000 bytes", err)
	}
	var ce *criurun.Error
	if errors.As(err, &ce) {
		t.Fatalf("criu itself failed: %v", err)
	}
	res, err := dump(t, criu, ghosts.DumpConfig{Pid: p.Pid, GhostLimit: -1, CopyBudget: 1 << 20})
	if err != nil || res.Audit.Total < 520000 {
		t.Fatalf("dump under a 1 MiB budget: %v (audit %+v)", err, res.Audit)
	}
}

// TestPredictTmpfs: sparse and small deleted files on tmpfs (no FIEMAP: CRIU falls back to
// SEEK_DATA/SEEK_HOLE), and a deleted file held only by a mapping, are predicted byte-exactly.
func TestPredictTmpfs(t *testing.T) {
	criu := harness.Criu(t)
	p := harness.Start(t, "doctor-ghost", harness.WithArgs("shm:8192@1048576", "shm:100", "shm:map20000"))
	r, err := ghosts.Scan(p.Pid)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]bool{}
	for _, it := range r.Items {
		if it.Kind == ghosts.KindGhost {
			want[it.ImageBytes] = true
			t.Logf("%s %s size %d allocated %d image %d", it.Where, it.Path, it.Size, it.Allocated, it.ImageBytes)
		}
	}
	if len(want) != 3 {
		t.Fatalf("want 3 ghosts of distinct sizes, got %+v", r.Items)
	}
	res, err := dump(t, criu, ghosts.DumpConfig{Pid: p.Pid, GhostLimit: -1, CopyBudget: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range res.Audit.Items {
		if it.Kind == ghosts.KindGhost {
			if !want[it.Bytes] {
				t.Errorf("%s: %d bytes, not among the predictions %v", it.File, it.Bytes, want)
			}
			delete(want, it.Bytes)
		}
	}
	if len(want) != 0 {
		t.Errorf("predicted but not written: %v", want)
	}
}

// TestPredictNamespaces: a tree with its own mount and IPC namespaces (the ns workload) has its
// tmpfs contents and SysV shm predicted; the audit of a real dump finds both kinds of images.
func TestPredictNamespaces(t *testing.T) {
	criu := harness.Criu(t)
	p := harness.Start(t, "ns")
	r, err := ghosts.Scan(p.Pid)
	if err != nil {
		t.Fatal(err)
	}
	pred := map[ghosts.Kind]int64{}
	for _, it := range r.Items {
		pred[it.Kind] += it.ImageBytes
		t.Logf("predicted %-10s %8d %s %s", it.Kind, it.ImageBytes, it.Where, it.Note)
	}
	for _, w := range r.Warnings {
		t.Logf("warning: %s", w)
	}
	if len(r.Pids) < 2 {
		t.Errorf("tree of the ns workload: pids %v, want its child too", r.Pids)
	}
	if pred[ghosts.KindTmpfs] == 0 || pred[ghosts.KindSysVShm] == 0 {
		t.Fatalf("tmpfs/sysv-shm not predicted: %v", pred)
	}
	res, err := dump(t, criu, ghosts.DumpConfig{Pid: p.Pid, GhostLimit: -1, CopyBudget: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	got := map[ghosts.Kind]int64{}
	for _, it := range res.Audit.Items {
		got[it.Kind] += it.Bytes
		t.Logf("audited   %-10s %8d %s", it.Kind, it.Bytes, it.File)
	}
	if got[ghosts.KindTmpfs] == 0 || got[ghosts.KindSysVShm] == 0 {
		t.Fatalf("audit: %v", got)
	}
}

// TestPredictTCP: queued TCP data is predicted, and found in tcp-stream images of a dump with
// --tcp-established.
func TestPredictTCP(t *testing.T) {
	criu := harness.Criu(t)
	p := harness.Start(t, "tcp")
	r, err := ghosts.Scan(p.Pid)
	if err != nil {
		t.Fatal(err)
	}
	var pred int64
	for _, it := range r.Items {
		if it.Kind == ghosts.KindTCPQueue {
			pred += it.Size
			t.Logf("predicted %s %d bytes (%s)", it.Where, it.Size, it.Note)
		}
	}
	if pred == 0 {
		t.Fatalf("no TCP queue predicted: %+v", r.Items)
	}
	res, err := dump(t, criu, ghosts.DumpConfig{Pid: p.Pid, GhostLimit: -1, CopyBudget: 1 << 30, Args: []string{"--tcp-established"}})
	if err != nil {
		t.Fatal(err)
	}
	var got int64
	for _, it := range res.Audit.Items {
		if it.Kind == ghosts.KindTCPQueue {
			got += it.Bytes
		}
	}
	t.Logf("queued bytes %d, tcp-stream images %d bytes", pred, got)
	if got < pred {
		t.Fatalf("tcp-stream images (%d bytes) smaller than the queued data (%d)", got, pred)
	}
}
