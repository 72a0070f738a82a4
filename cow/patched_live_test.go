package cow

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mmpb "github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	pagemap "github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/testenv"
	"github.com/criukit/criukit/internal/workload"
	"google.golang.org/protobuf/encoding/protowire"
)

// patchedCriu returns CRIU built by scripts/build-criu with criukit's COW patches (criu-patches/).
func patchedCriu(t *testing.T) string {
	t.Helper()
	testenv.Root(t)
	p := os.Getenv(criurun.EnvCriuCow)
	if p == "" {
		p = criurun.CowDefaultBin
	}
	if _, err := os.Stat(p); err != nil {
		testenv.Unavailable(t, "CRIU with criukit's COW patches: %v (build it with scripts/build-criu)", err)
	}
	if f := criurun.Cow(p); !f.MovedVMAs || !f.Hints {
		testenv.Unavailable(t, "%s lacks criukit's COW patches (has: %s); rebuild it with scripts/build-criu", p, f)
	}
	return p
}

// stockCriu returns a CRIU without criukit's patches (the comparison baseline): harness.Criu's
// choice, or /usr/local/sbin/criu when CRIUKIT_CRIU points the whole suite at the patched one.
func stockCriu(t *testing.T) string {
	t.Helper()
	c := harness.Criu(t)
	if !criurun.Cow(c).Any() {
		return c
	}
	for _, cand := range criurun.Candidates {
		p, err := exec.LookPath(cand)
		if err != nil {
			continue
		}
		if v, err := criurun.Version(p); err == nil && strings.HasPrefix(v, "4.") && !criurun.Cow(p).Any() {
			return p
		}
	}
	testenv.Unavailable(t, "a stock CRIU >= 4.2 to compare the patched one with (%s has the patches)", c)
	return ""
}

func treePss(pids []int) int64 {
	var sum int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "Pss:" {
				var kb int64
				fmt.Sscan(f[1], &kb)
				sum += kb << 10
			}
		}
	}
	return sum
}

// dumpWith dumps p's tree with criu (-R: the tree keeps running), then kills it and waits until
// all its pids are gone, so that a restore can reuse them.
func dumpWith(t *testing.T, criu string, p *harness.Proc, dir string) {
	t.Helper()
	tree := treeOf(p.Pid)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := criurun.Dump(ctx, p.Pid, criurun.Opts{Criu: criu, ImagesDir: dir, LogFile: dir + ".dump.log",
		Args: []string{"--network-lock", "skip", "--leave-running"}})
	if err != nil {
		t.Fatalf("dump with %s: %v", criu, err)
	}
	p.Kill()
	waitGone(t, tree)
}

func waitGone(t *testing.T, pids []int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		alive := 0
		for _, pid := range pids {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
				alive = pid
			}
		}
		if alive == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still exists 10s after it was killed", alive)
		}
	}
}

// restoreWith restores dir with criu and returns the tree's checksums and summed Pss; the restored
// tree is killed before it returns.
func restoreWith(t *testing.T, criu string, p *harness.Proc, dir string) (string, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pid, err := criurun.Restore(ctx, criurun.Opts{Criu: criu, ImagesDir: dir, LogFile: filepath.Join(t.TempDir(), "restore.log")})
	if err != nil {
		t.Fatalf("restore of %s with %s: %v", dir, criu, err)
	}
	r := &harness.Proc{Pid: pid, Info: p.Info, Dir: p.Dir, Workload: p.Workload}
	tree := treeOf(pid)
	defer func() { r.Kill(); waitGone(t, tree) }()
	time.Sleep(100 * time.Millisecond)
	return r.Check(t), treePss(tree)
}

// imageCow counts pages flagged PE_COW in dir's pagemaps and VMAs that carry cow_src (VmaEntry field
// 11, unknown to go-criu: read from the unknown fields).
func imageCow(t *testing.T, dir string) (cowPages int64, cowSrc int) {
	cowPages, _, cowSrc = imageHints(t, dir)
	return
}

// imageHints is imageCow plus the pages flagged PE_SIB (patch 0003).
func imageHints(t *testing.T, dir string) (cowPages, sibPages int64, cowSrc int) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		n := e.Name()
		switch {
		case strings.HasPrefix(n, "pagemap-") && !strings.HasPrefix(n, "pagemap-shmem"):
			img, err := image.ReadFile(filepath.Join(dir, n))
			if err != nil {
				t.Fatal(err)
			}
			for _, en := range img.Entries[1:] {
				pe := en.Msg.(*pagemap.PagemapEntry)
				if image.PagemapFlags(pe)&PECow != 0 {
					cowPages += int64(image.NrPages(pe))
				}
				if image.PagemapFlags(pe)&PESib != 0 {
					sibPages += int64(image.NrPages(pe))
				}
			}
		case strings.HasPrefix(n, "mm-"):
			img, err := image.ReadFile(filepath.Join(dir, n))
			if err != nil {
				t.Fatal(err)
			}
			for _, en := range img.Entries {
				if m, ok := en.Msg.(*mmpb.MmEntry); ok {
					for _, v := range m.GetVmas() {
						cowSrc += countField(v.ProtoReflect().GetUnknown(), 11)
					}
				}
			}
		}
	}
	return
}

// countField counts occurrences of field num in a message's unknown bytes.
func countField(b []byte, num protowire.Number) int {
	n := 0
	for len(b) > 0 {
		f, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return n
		}
		b = b[l:]
		m := protowire.ConsumeFieldValue(f, typ, b)
		if m < 0 {
			return n
		}
		if f == num {
			n++
		}
		b = b[m:]
	}
	return n
}

// TestLivePatchedCriu: CRIU with criukit's COW patches (scripts/build-criu) against stock CRIU on
// forked trees: the patched dump records moved VMAs (cow_src), PE_COW pages and the children's
// version of pages the parent rewrote (PE_SIB), its restore gives back the tree's memory sharing
// (ΣPss as before the dump) where stock does not, checksums (the parent's and every child's) are
// equal after every restore, and images cross both ways (stock restores patched images, patched
// restores stock and criukit-deduped images).
func TestLivePatchedCriu(t *testing.T) {
	stock := stockCriu(t)
	patched := patchedCriu(t)
	if !criurun.Cow(patched).Siblings {
		testenv.Unavailable(t, "%s lacks criukit's COW patch 0003 (cow_siblings); rebuild it with scripts/build-criu", patched)
	}
	const mib, kids = 16, 3
	for _, mode := range []string{workload.CowPlain, workload.CowMremap1, workload.CowMremapBig, workload.CowParentDiv50} {
		// parentdiv50: the parent rewrote every other page after fork, so no run of 16 pages
		// shares the parent's frames (no PE_COW) and nothing moved (no cow_src); the children's
		// shared version is PE_SIB in the first child's pagemap.
		sib := mode == workload.CowParentDiv50
		t.Run(mode, func(t *testing.T) {
			p := harness.Start(t, "cow", harness.WithArgs("-mib", fmt.Sprint(mib), "-children", fmt.Sprint(kids), "-mode", mode))
			before := p.Check(t)
			pssBefore := treePss(treeOf(p.Pid))
			base := t.TempDir()
			pat, stk := filepath.Join(base, "patched"), filepath.Join(base, "stock")
			dumpWith(t, stock, p, stk)
			p2 := harness.Start(t, "cow", harness.WithArgs("-mib", fmt.Sprint(mib), "-children", fmt.Sprint(kids), "-mode", mode))
			before2 := p2.Check(t)
			dumpWith(t, patched, p2, pat)

			cowPages, sibPages, cowSrc := imageHints(t, pat)
			t.Logf("%s: patched dump: %d PE_COW pages, %d PE_SIB pages, %d VMAs with cow_src", mode, cowPages, sibPages, cowSrc)
			if want := int64(kids) * mib << 20 / 4096 * 9 / 10; !sib && cowPages < want {
				t.Errorf("patched dump marked %d pages PE_COW, want >= %d (children share %d MiB each)", cowPages, want, mib)
			}
			if mode != workload.CowPlain && !sib && cowSrc < 1 {
				t.Errorf("patched dump of %s recorded no cow_src for the moved VMA", mode)
			}
			// PE_SIB in every child that has the children's version (the rewritten half, short
			// gaps included), so that restore neither reads nor compares them
			if half := int64(mib) << 20 / 4096 / 2; sib && (sibPages < kids*half || sibPages > kids*(2*half+256)) {
				t.Errorf("patched dump of %s marked %d pages PE_SIB, want %d..%d (the rewritten half, gaps included, in each child)", mode, sibPages, kids*half, kids*2*half)
			} else if !sib && sibPages > kids*256 {
				t.Errorf("patched dump of %s marked %d pages PE_SIB, the parent rewrote nothing", mode, sibPages)
			}
			if c, sp, s := imageHints(t, stk); c != 0 || sp != 0 || s != 0 {
				t.Errorf("stock dump has %d PE_COW pages, %d PE_SIB pages and %d cow_src", c, sp, s)
			}

			sumPat, pssPat := restoreWith(t, patched, p2, pat)
			sumStkOfPat, pssStkOfPat := restoreWith(t, stock, p2, pat)
			sumPatOfStk, pssPatOfStk := restoreWith(t, patched, p, stk)
			t.Logf("%s: ΣPss before %s; patched images: patched restore %s, stock restore %s; stock images: patched restore %s",
				mode, Human(pssBefore), Human(pssPat), Human(pssStkOfPat), Human(pssPatOfStk))
			for _, c := range []struct{ what, got, want string }{
				{"patched dump, patched restore", sumPat, before2},
				{"patched dump, stock restore", sumStkOfPat, before2},
				{"stock dump, patched restore", sumPatOfStk, before},
			} {
				if c.got != c.want {
					t.Errorf("%s: checksums differ\n before: %s\n after:  %s", c.what, c.want, c.got)
				}
			}
			// The tree's own memory is ~mib; allow 10% + 4 MiB for the Go runtime's private pages.
			if limit := pssBefore + pssBefore/10 + 4<<20; pssPat > limit {
				t.Errorf("patched restore: ΣPss %s, before the dump %s: sharing lost", Human(pssPat), Human(pssBefore))
			}
			if mode != workload.CowPlain {
				// stock CRIU gives the moving child a private copy of the whole region (parentdiv50:
				// every child a private copy of the rewritten half)
				if pssStkOfPat < pssPat+mib<<20/2 {
					t.Errorf("stock restore of %s: ΣPss %s, patched %s: the test does not show the patch (want stock >= patched + %d MiB)",
						mode, Human(pssStkOfPat), Human(pssPat), mib/2)
				}
			}

			// criukit's dedup page server behind the patched CRIU: PE_COW survives on the PE_PARENT
			// entries, so the patched restore reads almost nothing of the children; stock restores it too.
			p3 := harness.Start(t, "cow", harness.WithArgs("-mib", fmt.Sprint(mib), "-children", fmt.Sprint(kids), "-mode", mode))
			before3 := p3.Check(t)
			tree3 := treeOf(p3.Pid)
			psDir := filepath.Join(base, "pageserver")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			_, err := DumpDedupPageServer(ctx, p3.Pid, criurun.Opts{Criu: patched, ImagesDir: psDir, LogFile: psDir + ".dump.log",
				Args: []string{"--network-lock", "skip", "--leave-running"}}, Options{})
			cancel()
			if err != nil {
				t.Fatalf("page-server dump with the patched CRIU: %v", err)
			}
			p3.Kill()
			waitGone(t, tree3)
			if c, sp, _ := imageHints(t, psDir); !sib && c < int64(kids)*mib<<20/4096*9/10 {
				t.Errorf("page-server dump by the patched CRIU: %d PE_COW pages left after dedup, want >= 90%% of %d MiB x %d", c, mib, kids)
			} else if sib && sp < int64(mib)<<20/4096/2 {
				t.Errorf("page-server dump by the patched CRIU: %d PE_SIB pages left after dedup, want >= %d", sp, mib<<20/4096/2)
			}
			sumPS, pssPS := restoreWith(t, patched, p3, psDir)
			sumPSStock, _ := restoreWith(t, stock, p3, psDir)
			if sumPS != before3 || sumPSStock != before3 {
				t.Errorf("page-server dump by the patched CRIU: checksums differ\n before:          %s\n patched restore: %s\n stock restore:   %s", before3, sumPS, sumPSStock)
			}
			if limit := pssBefore + pssBefore/10 + 4<<20; pssPS > limit {
				t.Errorf("page-server dump by the patched CRIU, patched restore: ΣPss %s, before %s: sharing lost", Human(pssPS), Human(pssBefore))
			}

			// criukit-deduped images (cow dedup of the stock dump) restore with the patched CRIU too.
			dd := filepath.Join(base, "dedup")
			if _, err := Dedup(stk, dd, Options{}); err != nil {
				t.Fatal(err)
			}
			if got, _ := restoreWith(t, patched, p, dd); got != before {
				t.Errorf("deduped stock images, patched restore: checksums differ\n before: %s\n after:  %s", before, got)
			}
		})
	}
}
