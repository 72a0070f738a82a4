// Command cow reproduces table T1 of research cow.md: for each variant of the cow workload
// (N MiB of private memory, K forked children), a stock CRIU dump against criukit's deduped dumps
// (the dedup page server, and `cow dedup` of the stock dump): pages bytes, dump and rewrite time,
// restore time warm and cold, summed Pss before and after restore, and per-process checksums
// before/after every restore. Dumps are timed -reps times each, alternating which kind goes first,
// and the fastest of each kind is shown. Needs root and CRIU >= 4.2.
//
// With CRIU built by scripts/build-criu (criukit's COW patches, docs/cow-criu.md) a third kind
// runs beside them: a plain dump by the patched CRIU restored by the patched CRIU (-patched PATH;
// default $CRIUKIT_CRIU_COW or /opt/criukit/criu-cow/sbin/criu; -patched none to skip). The
// page-server dump is also restored by the patched CRIU (checksums and ΣPss, last column).
//
//	go run ./bench/cow                   # 100 MiB x 10, all variants
//	go run ./bench/cow -big              # 1 GiB x 10
//	go run ./bench/cow -mib 20 -children 4 -modes plain,parentdiv50 -cold=false
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/criukit/criukit/cow"
	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/workload"
	"golang.org/x/sys/unix"
)

var (
	cpuProfile string
	reps       int
)

type row struct {
	mode                      string
	pssBefore                 mem
	frames                    int
	stockBytes, dedupBytes    int64
	dumpS, dedupS             float64
	warmStock, warmDedup      float64
	coldStock, coldDedup      float64
	pssStock, pssDedup        mem
	sumsStock, sumsDedup, sum string
	sumsRewrite               string
	psDumpS                   float64
	psBytes                   int64
	levels                    int
	// patched CRIU: its own dump and restore, and its restore of the page-server dump
	patDumpS, warmPat, coldPat float64
	pssPat, pssDedupPat        mem
	sumsPat, sumsDedupPat      string
	err                        error
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "__workload" {
		// re-exec'd as the workload: __workload READY DIR NAME ARGS...
		if err := workload.RunConfig(os.Args[4], os.Args[5:], workload.Config{ReadyFile: os.Args[2], Dir: os.Args[3]}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	mib := flag.Int("mib", 100, "MiB of private memory in the root")
	kids := flag.Int("children", 10, "forked children")
	big := flag.Bool("big", false, "1 GiB x 10 (overrides -mib)")
	modes := flag.String("modes", strings.Join(workload.CowModes, ","), "variants")
	cold := flag.Bool("cold", true, "also time restores after drop_caches")
	work := flag.String("work", "", "scratch directory (default: a temp dir, removed at the end)")
	flag.IntVar(&reps, "reps", 2, "dumps of each kind per variant, alternating which goes first (the fastest is kept)")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of criukit's side of the page-server dumps to this file")
	patchedFlag := flag.String("patched", "", "CRIU with criukit's COW patches (default $CRIUKIT_CRIU_COW or "+criurun.CowDefaultBin+" if it has them; none: skip)")
	flag.Parse()
	if *big {
		*mib = 1024
	}
	criu, ver, err := criurun.Find()
	if err != nil {
		fatal(err)
	}
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	base := *work
	if base == "" {
		if base, err = os.MkdirTemp("/var/tmp", "criukit-bench-cow-"); err != nil {
			fatal(err)
		}
		defer os.RemoveAll(base)
	}
	patched := *patchedFlag
	switch patched {
	case "none":
		patched = ""
	case "":
		if p := os.Getenv(criurun.EnvCriuCow); p != "" {
			patched = p
		} else if _, err := os.Stat(criurun.CowDefaultBin); err == nil {
			patched = criurun.CowDefaultBin
		}
	}
	if patched != "" {
		f := criurun.Cow(patched)
		if !f.Any() {
			fatal(fmt.Errorf("%s has none of criukit's COW patches (criu check --feature %s); build it with scripts/build-criu or pass -patched none", patched, criurun.FeatureCowMovedVMAs))
		}
		fmt.Printf("patched CRIU: %s (%s)\n", patched, f)
	}
	fmt.Printf("criukit cow bench: %d MiB x %d children, criu %s (%s)\n", *mib, *kids, ver, criu)
	var rows []row
	for _, m := range strings.Split(*modes, ",") {
		r := runOne(criu, patched, filepath.Join(base, m), m, *mib, *kids, *cold)
		if r.err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", m, r.err)
		}
		rows = append(rows, r)
		_ = os.RemoveAll(filepath.Join(base, m))
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "variant\tΣPss before\tunique frames\tpages stock\tpages dedup (page server / rewrite)\tratio\tvs frames\tlevels\tdump s stock / page server (x)\trewrite s\twarm restore s stock/dedup\tcold restore s stock/dedup (x)\tΣPss after stock/dedup\tchecksums\t")
	for _, r := range rows {
		if r.err != nil {
			fmt.Fprintf(tw, "%s\tERROR: %v\t\n", r.mode, r.err)
			continue
		}
		sums := "OK"
		if r.sumsStock != r.sum || r.sumsDedup != r.sum || r.sumsRewrite != r.sum {
			sums = "MISMATCH"
		}
		coldS := "-"
		if r.coldStock > 0 {
			coldS = fmt.Sprintf("%.2f / %.2f (%.2fx)", r.coldStock, r.coldDedup, r.coldStock/r.coldDedup)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s / %s\t%.2fx\t%.3fx\t%d\t%.2f / %.2f (%.2fx)\t%.2f\t%.2f / %.2f\t%s\t%s / %s\t%s\t\n", r.mode,
			cow.Human(r.pssBefore.all), cow.Human(int64(r.frames)*4096), cow.Human(r.stockBytes), cow.Human(r.psBytes), cow.Human(r.dedupBytes),
			float64(r.stockBytes)/float64(r.psBytes), float64(r.psBytes)/float64(int64(r.frames)*4096), r.levels,
			r.dumpS, r.psDumpS, r.dumpS/r.psDumpS, r.dedupS, r.warmStock, r.warmDedup, coldS, cow.Human(r.pssStock.all), cow.Human(r.pssDedup.all), sums)
	}
	tw.Flush()
	if patched != "" {
		fmt.Println()
		fmt.Println("stock CRIU vs CRIU with criukit's COW patches (" + patched + "), same tree, plain dumps:")
		tw = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "variant\tΣPss before\tΣPss after stock / patched\tpatched vs before (ΣPss_Anon)\tdump s stock / patched\twarm restore s stock / patched\tcold restore s stock / patched\tchecksums\tstock page-server dump restored by patched: ΣPss, checksums\t")
		for _, r := range rows {
			if r.err != nil {
				fmt.Fprintf(tw, "%s\tERROR: %v\t\n", r.mode, r.err)
				continue
			}
			sums, dsums := "OK", "OK"
			if r.sumsStock != r.sum || r.sumsPat != r.sum {
				sums = "MISMATCH"
			}
			if r.sumsDedupPat != r.sum {
				dsums = "MISMATCH"
			}
			coldS := "-"
			if r.coldPat > 0 {
				coldS = fmt.Sprintf("%.2f / %.2f", r.coldStock, r.coldPat)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s / %s\t%+.1f%% (anon %+.1f%%)\t%.2f / %.2f\t%.2f / %.2f\t%s\t%s\t%s, %s\t\n", r.mode, cow.Human(r.pssBefore.all),
				cow.Human(r.pssStock.all), cow.Human(r.pssPat.all), 100*(float64(r.pssPat.all)/float64(r.pssBefore.all)-1), 100*(float64(r.pssPat.anon)/float64(r.pssBefore.anon)-1), r.dumpS, r.patDumpS,
				r.warmStock, r.warmPat, coldS, sums, cow.Human(r.pssDedupPat.all), dsums)
		}
		tw.Flush()
		fmt.Println("patched: criu dump -R and criu restore by the patched CRIU (cow_src for moved VMAs, PE_COW hints, PE_SIB sibling versions); dumps timed like the others.")
	}
	fmt.Printf("dump s: criu dump -R, stock vs criukit's dedup page server (criu --page-server --ps-socket, each page stored once as it arrives); fastest of %d each, alternating order.\n", reps)
	fmt.Println("rewrite s: criukit cow dedup of the stock dump (content matching after the fact). Restores: stock dump vs page-server dump;")
	fmt.Println("the rewrite's restore is checksum-verified too. ratio / vs frames / levels refer to the page-server dump.")
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench cow:", err)
	os.Exit(1)
}

// start runs the cow workload in a new session and waits until it is ready.
func start(dir, mode string, mib, kids int) (int, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	ready := filepath.Join(dir, ".ready")
	cmd := exec.Command(self, "__workload", ready, dir, "cow", "-mib", fmt.Sprint(mib), "-children", fmt.Sprint(kids), "-mode", mode)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	go func() { _ = cmd.Wait() }()
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			return cmd.Process.Pid, nil
		}
		if b, err := os.ReadFile(ready + ".err"); err == nil {
			return 0, fmt.Errorf("workload: %s", b)
		}
	}
	return 0, errors.New("workload not ready")
}

func check(pid int, dir string) (string, error) {
	path := filepath.Join(dir, workload.CheckFile)
	_ = os.Remove(path)
	if err := unix.Kill(pid, unix.SIGUSR1); err != nil {
		return "", err
	}
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(path); err == nil {
			return string(b), nil
		}
	}
	return "", errors.New("no check answer")
}

// mem is a tree's summed Pss and its anonymous part (Pss_Anon): file pages of the binary and
// libraries are faulted back in lazily after a restore, so ΣPss alone reads low right after it.
type mem struct{ all, anon int64 }

func pss(pids []int) mem {
	var sum mem
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 && (f[0] == "Pss:" || f[0] == "Pss_Anon:") {
				var kb int64
				fmt.Sscan(f[1], &kb)
				if f[0] == "Pss:" {
					sum.all += kb << 10
				} else {
					sum.anon += kb << 10
				}
			}
		}
	}
	return sum
}

// killTree kills a session's processes and reaps them (we are a child subreaper).
func killTree(pids []int) {
	for _, p := range pids {
		_ = unix.Kill(p, unix.SIGKILL)
	}
	reap(pids)
}

func reap(pids []int) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var ws unix.WaitStatus
		for {
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
		gone := true
		for _, p := range pids {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", p)); err == nil {
				gone = false
			}
		}
		if gone {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func dropCaches() error {
	unix.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200)
}

// restore restores dir, returns the restore wall time, the tree's Pss and checksums, and kills it.
func restore(criu, dir, wdir string, coldToo bool) (warm, cold float64, p mem, sums string, err error) {
	once := func() (float64, []int, error) {
		t0 := time.Now()
		pid, err := criurun.Restore(context.Background(), criurun.Opts{Criu: criu, Verbosity: 2, ImagesDir: dir, LogFile: dir + ".restore.log", Args: []string{"--network-lock", "skip"}})
		if err != nil {
			return 0, nil, err
		}
		return time.Since(t0).Seconds(), cow.TreePids(pid), nil
	}
	if coldToo {
		if err = dropCaches(); err != nil {
			return
		}
		var tree []int
		if cold, tree, err = once(); err != nil {
			return
		}
		killTree(tree)
	}
	// Warm: the fastest of -reps restores (the last one is measured and checked).
	var tree []int
	for i := range max(reps, 1) {
		if i > 0 {
			killTree(tree)
		}
		var w float64
		if w, tree, err = once(); err != nil {
			return
		}
		if warm == 0 || w < warm {
			warm = w
		}
	}
	time.Sleep(200 * time.Millisecond)
	p = pss(tree)
	sums, err = check(tree[0], wdir)
	killTree(tree)
	return
}

func runOne(criu, patched, dir, mode string, mib, kids int, coldToo bool) (r row) {
	r.mode = mode
	wdir := filepath.Join(dir, "work")
	if r.err = os.MkdirAll(wdir, 0o755); r.err != nil {
		return
	}
	pid, err := start(wdir, mode, mib, kids)
	if err != nil {
		r.err = err
		return
	}
	tree := cow.TreePids(pid)
	defer killTree(tree)
	if r.sum, r.err = check(pid, wdir); r.err != nil {
		return
	}
	r.pssBefore = pss(tree)
	if r.frames, _, r.err = cow.UniqueFrames(tree); r.err != nil {
		return
	}
	stock, dd, ps := filepath.Join(dir, "stock"), filepath.Join(dir, "dedup"), filepath.Join(dir, "pageserver")
	pat := filepath.Join(dir, "patched")
	// Both dumps leave the tree running (-R), so they see the same memory. Each is timed -reps
	// times, alternating which goes first (a dump that follows another one's big writes pays for
	// them), and the fastest run of each is kept.
	args := []string{"--network-lock", "skip", "--leave-running"}
	dumpStock := func() (float64, error) {
		t0 := time.Now()
		err := criurun.Dump(context.Background(), pid, criurun.Opts{Criu: criu, Verbosity: 2, ImagesDir: stock, LogFile: dir + "/dump.log", Args: args})
		return time.Since(t0).Seconds(), err
	}
	dumpPat := func() (float64, error) {
		t0 := time.Now()
		err := criurun.Dump(context.Background(), pid, criurun.Opts{Criu: patched, Verbosity: 2, ImagesDir: pat, LogFile: dir + "/dump-patched.log", Args: args})
		return time.Since(t0).Seconds(), err
	}
	dumpPS := func() (float64, error) {
		if cpuProfile != "" {
			if f, err := os.Create(cpuProfile + "." + mode); err == nil {
				_ = pprof.StartCPUProfile(f)
				defer f.Close()
				defer pprof.StopCPUProfile()
			}
		}
		pres, err := cow.DumpDedupPageServer(context.Background(), pid, criurun.Opts{Criu: criu, Verbosity: 2, ImagesDir: ps, LogFile: dir + "/dump-ps.log", Args: args}, cow.Options{})
		if err != nil {
			return 0, err
		}
		r.psBytes, r.levels = pres.PagesAfter, pres.Levels
		return pres.DumpSeconds + pres.DedupSeconds, nil
	}
	best := func(cur *float64, f func() (float64, error)) error {
		unix.Sync() // each dump starts without the previous one's writeback
		s, err := f()
		if err == nil && (*cur == 0 || s < *cur) {
			*cur = s
		}
		return err
	}
	for rep := range reps {
		if rep > 0 {
			_ = os.RemoveAll(stock)
			_ = os.RemoveAll(ps)
			_ = os.RemoveAll(pat)
		}
		kinds := []func() error{func() error { return best(&r.dumpS, dumpStock) }, func() error { return best(&r.psDumpS, dumpPS) }}
		if patched != "" {
			kinds = append(kinds, func() error { return best(&r.patDumpS, dumpPat) })
		}
		// rotate which kind goes first
		for k := range kinds {
			if r.err = kinds[(k+rep)%len(kinds)](); r.err != nil {
				return
			}
		}
	}
	killTree(tree)
	t0 := time.Now()
	res, err := cow.Dedup(stock, dd, cow.Options{})
	if err != nil {
		r.err = err
		return
	}
	r.dedupS = time.Since(t0).Seconds()
	r.stockBytes, r.dedupBytes = res.PagesBefore, res.PagesAfter
	if r.warmStock, r.coldStock, r.pssStock, r.sumsStock, r.err = restore(criu, stock, wdir, coldToo); r.err != nil {
		return
	}
	if r.warmDedup, r.coldDedup, r.pssDedup, r.sumsDedup, r.err = restore(criu, ps, wdir, coldToo); r.err != nil {
		return
	}
	// The post-dump rewrite must restore too (checksums only).
	if _, _, _, r.sumsRewrite, r.err = restore(criu, dd, wdir, false); r.err != nil {
		return
	}
	if patched != "" {
		if r.warmPat, r.coldPat, r.pssPat, r.sumsPat, r.err = restore(patched, pat, wdir, coldToo); r.err != nil {
			return
		}
		if _, _, r.pssDedupPat, r.sumsDedupPat, r.err = restore(patched, ps, wdir, false); r.err != nil {
			return
		}
	}
	return
}
