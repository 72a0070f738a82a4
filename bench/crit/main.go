// Command crit-bench compares decode+encode (binary -> JSON -> binary) of every file of some CRIU
// dump directories for criukit, CRIU's Python crit 3.17 (/usr/bin/crit) and go-criu v8's crit
// library, side by side in one run, as ratios; then the peak memory of criukit reading a small and a
// large pages file (it should not grow with the size). criukit and crit are compared twice, on the
// same work: as the user sees it (`decode` + `encode` subprocesses of each CLI, start-up included)
// and in-process (one long-running process each, image bytes in memory -> JSON -> image bytes);
// go-criu (a library only) is compared in-process, with JSON and image files on tmpfs.
//
//	go run ./bench/crit [-bigmem 512] [DUMPDIR...]
//
// Without DUMPDIR it dumps two processes itself with criu (root needed): a small one and one with
// -bigmem MiB of touched memory. To include the test corpus: CRIUKIT_BENCH_CORPUS=/tmp/corpus go test
// ./image/critjson -run TestExportCorpus, then pass /tmp/corpus/* as DUMPDIRs.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	gocrit "github.com/checkpoint-restore/go-criu/v8/crit"
	gocli "github.com/checkpoint-restore/go-criu/v8/crit/cli"
	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/image/critjson"
)

var (
	critPath = flag.String("crit", "/usr/bin/crit", "Python crit 3.17")
	criuPath = flag.String("criu", "/usr/local/sbin/criu", "criu >= 4.2, to make the dumps")
	bigMem   = flag.Int("bigmem", 512, "MiB of touched memory of the large dump (0: none)")
	minTime  = flag.Duration("mintime", 30*time.Millisecond, "minimum time per file and Go tool (repeats the round trip)")
	noPy     = flag.Bool("nopython", false, "skip Python crit (it takes ~0.3 s per file)")
	keep     = flag.Bool("keep", false, "keep the dumps this command made")
	rounds   = flag.Int("rounds", 3, "alternating measurement rounds per file for the Go tools (best kept)")
	subRuns  = flag.Int("subruns", 3, "runs of the decode+encode subprocess pair per file for criukit and crit each (best kept)")
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-hog" { // child: memory hog to be dumped
		hog()
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "-readmem" { // child: read all pages of a dump
		readmem()
		return
	}
	flag.Parse()
	if err := run(flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "crit-bench:", err)
		os.Exit(1)
	}
}

type result struct {
	file         string
	size         int64
	ck, gc, py   time.Duration // per round trip; 0 = not measured (py: two crit subprocesses)
	ckSub        time.Duration // two criukit subprocesses (`criukit decode`, `criukit encode`), like py
	pyLossy      bool          // crit's round trip ran but did not give the same bytes back
	ckMem        time.Duration // criukit in memory (no file I/O): compared with crit-corr
	pyCorr       time.Duration
	gcErr, pyErr string
	ckErr        string
}

func run(dirs []string) error {
	var tmp string
	if len(dirs) == 0 {
		var err error
		tmp, err = os.MkdirTemp("", "crit-bench-")
		if err != nil {
			return err
		}
		if !*keep {
			defer os.RemoveAll(tmp)
		}
		small, err := makeDump(tmp, "small", 4)
		if err != nil {
			return err
		}
		dirs = append(dirs, small)
	}
	var big string
	if *bigMem > 0 {
		if tmp == "" {
			var err error
			if tmp, err = os.MkdirTemp("", "crit-bench-"); err != nil {
				return err
			}
			if !*keep {
				defer os.RemoveAll(tmp)
			}
		}
		var err error
		if big, err = makeDump(tmp, "bigmem", *bigMem); err != nil {
			return err
		}
		dirs = append(dirs, big)
	}
	work, err := os.MkdirTemp(shmDir(), "crit-bench-work-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	// The criukit binary, for the whole-subprocess comparison (what a user sees running the CLI).
	ckBin := filepath.Join(work, "criukit")
	if out, err := exec.Command("go", "build", "-o", ckBin, "github.com/criukit/criukit/cmd/criukit").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "cannot build cmd/criukit (no subprocess comparison): %v %s\n", err, out)
		ckBin = ""
	}
	var pyStart, ckStart time.Duration
	if ckBin != "" {
		ckStart = medianRun(5, ckBin, "--help")
	}
	var pyIn map[string]time.Duration
	if !*noPy {
		if _, err := os.Stat(*critPath); err != nil {
			fmt.Fprintf(os.Stderr, "no Python crit at %s: skipping it (-nopython)\n", *critPath)
			*noPy = true
		} else {
			pyStart = medianRun(5, *critPath, "--help")
			if pyIn, err = pyInProcess(dirs); err != nil {
				fmt.Fprintf(os.Stderr, "in-process pycriu timing failed: %v\n", err)
			}
		}
	}

	var results []result
	for _, dir := range dirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if !e.Type().IsRegular() || strings.HasSuffix(e.Name(), ".log") {
				continue
			}
			p := filepath.Join(dir, e.Name())
			d, err := image.Classify(e.Name())
			if err != nil || d.Raw == image.RawPages {
				continue // not an image, or memory (never converted to JSON by any of the three)
			}
			st, _ := e.Info()
			r := result{file: filepath.Join(filepath.Base(dir), e.Name()), size: st.Size()}
			// Alternate the two Go tools and keep the best of -rounds runs: the machine is shared.
			var ckErr, gcErr error
			for i := 0; i < *rounds; i++ {
				var t time.Duration
				if ckErr == nil {
					if t, ckErr = timeIt(func() error { return ckRoundTrip(p, work) }); ckErr == nil && (r.ck == 0 || t < r.ck) {
						r.ck = t
					}
				}
				if gcErr == nil {
					if t, gcErr = timeIt(func() error { return gcRoundTrip(p, work) }); gcErr == nil && (r.gc == 0 || t < r.gc) {
						r.gc = t
					}
				}
			}
			if ckErr != nil {
				r.ckErr = ckErr.Error()
			} else {
				data, _ := os.ReadFile(p)
				for i := 0; i < *rounds; i++ {
					if t, err := timeIt(func() error { return ckMemRoundTrip(data, e.Name()) }); err == nil && (r.ckMem == 0 || t < r.ckMem) {
						r.ckMem = t
					}
				}
			}
			if gcErr != nil {
				r.gc, r.gcErr = 0, oneLine(gcErr.Error())
			}
			if ckBin != "" && r.ckErr == "" {
				var lossy bool
				if r.ckSub, lossy, err = bestSub(ckBin, p, work, "ck"); err != nil || lossy {
					if err == nil {
						err = errors.New("round trip not byte-exact")
					}
					r.ckSub, r.ckErr = 0, "subprocess: "+oneLine(err.Error())
				}
			}
			if !*noPy {
				r.py, r.pyLossy, err = bestSub(*critPath, p, work, "py")
				if err != nil {
					r.py, r.pyErr = 0, oneLine(err.Error())
				} else if d, ok := pyIn[p]; ok {
					r.pyCorr = d
				}
			}
			results = append(results, r)
		}
	}
	report(results, pyStart, ckStart)
	if big != "" {
		memReport(dirs[0], big)
	}
	return nil
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 90 {
		s = s[:90] + "..."
	}
	return s
}

// shmDir is where round-trip temporaries go: tmpfs when there is one, so disk I/O does not dominate.
func shmDir() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		return "/dev/shm"
	}
	return ""
}

// pyInProcess times crit's decode+encode work for every image of dirs inside one Python process,
// i.e. without interpreter start-up and imports: pycriu.images.load, json.dumps, json.loads, dump,
// from the file's bytes in memory to a memory buffer: the same work as ckMemRoundTrip.
func pyInProcess(dirs []string) (map[string]time.Duration, error) {
	const script = `import sys, time, json, io
sys.path.insert(0, '/usr/lib/python3/dist-packages')
import pycriu
for line in sys.stdin:
    p = line.rstrip('\n')
    with open(p, 'rb') as f:
        data = f.read()
    def rt():
        img = pycriu.images.load(io.BytesIO(data))
        img2 = json.loads(json.dumps(img))
        pycriu.images.dump(img2, io.BytesIO())
    try:
        rt()
        best, n, t0 = None, 0, time.perf_counter()
        while n < 3 or time.perf_counter() - t0 < 0.1:
            t1 = time.perf_counter()
            rt()
            d = time.perf_counter() - t1
            best = d if best is None or d < best else best
            n += 1
        print(best * 1e9, flush=True)
    except Exception as e:
        print(-1, flush=True)
`
	var files []string
	for _, d := range dirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if c, err := image.Classify(e.Name()); err == nil && c.Kind != image.KindRaw && e.Type().IsRegular() {
				files = append(files, filepath.Join(d, e.Name()))
			}
		}
	}
	py := "/usr/bin/python3"
	if b, err := os.ReadFile(*critPath); err == nil && bytes.HasPrefix(b, []byte("#!")) {
		py = strings.Fields(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "#!"))[0]
	}
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = strings.NewReader(strings.Join(files, "\n") + "\n")
	out, err := cmd.Output()
	if err != nil {
		return nil, err
	}
	lines := strings.Fields(string(out))
	res := map[string]time.Duration{}
	for i, f := range files {
		if i < len(lines) {
			if ns := atof(lines[i]); ns > 0 {
				res[f] = time.Duration(ns)
			}
		}
	}
	return res, nil
}

// timeIt runs f repeatedly for at least -mintime and returns the fastest run: on a shared, busy
// machine the minimum is the most stable estimate of the work itself.
func timeIt(f func() error) (time.Duration, error) {
	if err := f(); err != nil { // warm-up and correctness
		return 0, err
	}
	best := time.Duration(math.MaxInt64)
	start := time.Now()
	for n := 0; n < 3 || time.Since(start) < *minTime; n++ {
		t0 := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		best = min(best, time.Since(t0))
	}
	return best, nil
}

// ckRoundTrip: criukit decode (binary -> JSON file) and encode (JSON file -> binary file), checked.
func ckRoundTrip(p, work string) error {
	orig, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	img, err := image.Decode(bytes.NewReader(orig), filepath.Base(p))
	if err != nil {
		return err
	}
	js, err := critjson.Marshal(img, critjson.Options{})
	if err != nil {
		return err
	}
	jp := filepath.Join(work, "ck.json")
	if err := os.WriteFile(jp, js, 0o644); err != nil {
		return err
	}
	js2, err := os.ReadFile(jp)
	if err != nil {
		return err
	}
	back, err := critjson.Unmarshal(js2, filepath.Base(p))
	if err != nil {
		return err
	}
	out, err := os.Create(filepath.Join(work, "ck.img"))
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := back.Encode(io.MultiWriter(out, &buf)); err != nil {
		out.Close()
		return err
	}
	out.Close()
	if !bytes.Equal(buf.Bytes(), orig) {
		return errors.New("round trip not byte-exact")
	}
	return nil
}

// ckMemRoundTrip is ckRoundTrip without files, like the in-process Python measurement.
func ckMemRoundTrip(orig []byte, name string) error {
	img, err := image.Decode(bytes.NewReader(orig), name)
	if err != nil {
		return err
	}
	js, err := critjson.Marshal(img, critjson.Options{})
	if err != nil {
		return err
	}
	back, err := critjson.Unmarshal(js, name)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	return back.Encode(&buf)
}

// gcRoundTrip: go-criu v8 crit decode + json.Marshal to a file, then Parse + Encode to a file, like
// its CLI (crit decode / crit encode); checked for byte-exactness.
func gcRoundTrip(p, work string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	et, err := gocli.GetEntryTypeFromImg(f)
	if err != nil {
		return fmt.Errorf("entry type: %w", err)
	}
	img, err := gocrit.New(f, nil, "", false, false).Decode(et)
	if err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	js, err := json.Marshal(img)
	if err != nil {
		return fmt.Errorf("json: %w", err)
	}
	jp := filepath.Join(work, "gc.json")
	if err := os.WriteFile(jp, js, 0o644); err != nil {
		return err
	}
	jf, err := os.Open(jp)
	if err != nil {
		return err
	}
	defer jf.Close()
	et2, err := gocli.GetEntryTypeFromJSON(jf)
	if err != nil {
		return fmt.Errorf("json entry type: %w", err)
	}
	op := filepath.Join(work, "gc.img")
	of, err := os.Create(op)
	if err != nil {
		return err
	}
	c := gocrit.New(jf, of, "", false, false)
	img2, err := c.Parse(et2)
	if err != nil {
		of.Close()
		return fmt.Errorf("parse: %w", err)
	}
	if err := c.Encode(img2); err != nil {
		of.Close()
		return fmt.Errorf("encode: %w", err)
	}
	of.Close()
	a, _ := os.ReadFile(p)
	b, _ := os.ReadFile(op)
	if !bytes.Equal(a, b) {
		return fmt.Errorf("round trip not byte-exact (%d -> %d bytes)", len(a), len(b))
	}
	return nil
}

// subRoundTrip runs `BIN decode -i p -o JSON` then `BIN encode -i JSON -o IMG` (BIN is crit or
// criukit: same flags) and checks the result is byte-exact.
func subRoundTrip(bin, p, work, tag string) (time.Duration, bool, error) {
	jp := filepath.Join(work, tag+".json")
	op := filepath.Join(work, tag+".img")
	start := time.Now()
	if out, err := exec.Command(bin, "decode", "-i", p, "-o", jp).CombinedOutput(); err != nil {
		return 0, false, fmt.Errorf("decode: %v %s", err, out)
	}
	if out, err := exec.Command(bin, "encode", "-i", jp, "-o", op).CombinedOutput(); err != nil {
		return 0, false, fmt.Errorf("encode: %v %s", err, out)
	}
	d := time.Since(start)
	a, _ := os.ReadFile(p)
	b, _ := os.ReadFile(op)
	return d, !bytes.Equal(a, b), nil
}

// bestSub is the fastest of -subruns subprocess round trips; lossy: the bytes did not come back.
func bestSub(bin, p, work, tag string) (best time.Duration, lossy bool, err error) {
	for i := 0; i < max(1, *subRuns); i++ {
		d, l, err := subRoundTrip(bin, p, work, tag)
		if err != nil {
			return 0, false, err
		}
		lossy = lossy || l
		if best == 0 || d < best {
			best = d
		}
	}
	return best, lossy, nil
}

func medianRun(n int, name string, args ...string) time.Duration {
	var ds []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		_ = exec.Command(name, args...).Run()
		ds = append(ds, time.Since(start))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[n/2]
}

func us(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(d)/1e3, 'f', 1, 64)
}

func ratio(a, b time.Duration) string {
	if a == 0 || b == 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(a)/float64(b), 'f', 1, 64) + "x"
}

func report(rs []result, pyStart, ckStart time.Duration) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Println("decode+encode (binary -> JSON -> binary) per file, µs; ratios = other tool's time / criukit's")
	fmt.Println("  ck-sub, crit-sub: `X decode -i IMG -o JSON` + `X encode -i JSON -o IMG` as two subprocesses, files on tmpfs, best of -subruns (what a user sees)")
	if ckStart > 0 || pyStart > 0 {
		fmt.Printf("    (start-up, median of 5 `--help` runs: criukit %.1f ms, crit %.1f ms)\n", float64(ckStart)/1e6, float64(pyStart)/1e6)
	}
	fmt.Println("  ck-mem, crit-mem: the same decode + JSON + parse + encode in one long-running process, file bytes in memory -> memory buffer")
	fmt.Println("    (crit-mem: pycriu.images.load, json.dumps, json.loads, pycriu.images.dump; ck-mem: image.Decode, critjson.Marshal/Unmarshal, Encode)")
	fmt.Println("  ck, go-criu: in-process, image file -> JSON file -> image file on tmpfs (go-criu's crit library as its CLI uses it)")
	fmt.Println("  all times are the fastest of several runs (the machine is shared)")
	fmt.Fprintln(tw, "file\tbytes\tck-sub\tcrit-sub\tcrit-sub/ck-sub\tck-mem\tcrit-mem\tcrit-mem/ck-mem\tck\tgo-criu\tgo-criu/ck\t")
	var sCk, sGc, sCkG time.Duration
	var sPy, sCkS, sPyC, sCkM time.Duration
	var logGc, logPy, logPyC float64
	var nGc, nPy, nPyC int
	minGc, minPy, minPyC := math.Inf(1), math.Inf(1), math.Inf(1)
	var failures, lossy []string
	for _, r := range rs {
		if r.ckErr != "" {
			failures = append(failures, fmt.Sprintf("criukit FAILED %s: %s", r.file, r.ckErr))
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.file, r.size,
			us(r.ckSub), us(r.py), ratio(r.py, r.ckSub), us(r.ckMem), us(r.pyCorr), ratio(r.pyCorr, r.ckMem),
			us(r.ck), us(r.gc), ratio(r.gc, r.ck))
		if r.gc > 0 {
			sCkG += r.ck
			sGc += r.gc
			x := float64(r.gc) / float64(r.ck)
			logGc += math.Log(x)
			minGc = math.Min(minGc, x)
			nGc++
		} else {
			failures = append(failures, fmt.Sprintf("go-criu fails on %s: %s", r.file, r.gcErr))
		}
		if r.py > 0 && r.ckSub > 0 {
			sCkS += r.ckSub
			sPy += r.py
			x := float64(r.py) / float64(r.ckSub)
			logPy += math.Log(x)
			minPy = math.Min(minPy, x)
			nPy++
		} else if !*noPy && r.pyErr != "" {
			failures = append(failures, fmt.Sprintf("Python crit fails on %s: %s", r.file, r.pyErr))
		}
		if r.pyLossy {
			lossy = append(lossy, r.file)
		}
		if r.pyCorr > 0 && r.ckMem > 0 {
			sCkM += r.ckMem
			sPyC += r.pyCorr
			x := float64(r.pyCorr) / float64(r.ckMem)
			logPyC += math.Log(x)
			minPyC = math.Min(minPyC, x)
			nPyC++
		}
		sCk += r.ck
	}
	tw.Flush()
	fmt.Println()
	fmt.Printf("files: %d; criukit in-process total %.2f ms\n", len(rs), float64(sCk)/1e6)
	if nPy > 0 {
		fmt.Printf("crit 3.17 vs criukit, whole subprocesses (crit decode/encode vs criukit decode/encode), %d files: total %s, geometric mean %.0fx, worst file %.0fx (target >= 20x)\n",
			nPy, ratio(sPy, sCkS), math.Exp(logPy/float64(nPy)), minPy)
	}
	if nPyC > 0 {
		fmt.Printf("crit 3.17 vs criukit, in-process (no start-up), %d files: total %s, geometric mean %.1fx, worst file %.1fx (target >= 20x)\n",
			nPyC, ratio(sPyC, sCkM), math.Exp(logPyC/float64(nPyC)), minPyC)
	}
	if nGc > 0 {
		fmt.Printf("go-criu  vs criukit, in-process, %d files both handle: total %s, geometric mean %.1fx, worst file %.1fx (target: never slower, i.e. >= 1x)\n",
			nGc, ratio(sGc, sCkG), math.Exp(logGc/float64(nGc)), minGc)
	}
	for _, f := range failures {
		fmt.Println(f)
	}
	if len(lossy) > 0 {
		fmt.Printf("crit 3.17's round trip runs but is not byte-exact (fields its 3.17 .proto files do not know are dropped from its JSON; timed anyway) on %d files: %s\n",
			len(lossy), strings.Join(lossy, " "))
	}
}

// memReport reads every dumped page of the small and the large dump in a child process and
// prints the children's peak RSS.
func memReport(small, big string) {
	fmt.Println()
	fmt.Println("peak memory of criukit reading all pages of a dump (image.OpenMemory + ReadAt, 1 MiB buffer):")
	for _, dir := range []string{small, big} {
		pid, err := firstPid(dir)
		if err != nil {
			fmt.Printf("  %s: %v\n", dir, err)
			continue
		}
		cmd := exec.Command(os.Args[0], "-readmem", dir, strconv.Itoa(pid))
		out, err := cmd.Output()
		if err != nil {
			fmt.Printf("  %s: %v %s\n", dir, err, out)
			continue
		}
		f := strings.Fields(string(out)) // bytes read, VmHWM in KiB (ru_maxrss would include the parent's pre-exec pages)
		if len(f) != 2 {
			fmt.Printf("  %s: bad child output %q\n", dir, out)
			continue
		}
		fmt.Printf("  %-14s pages read %8.1f MiB   peak RSS (VmHWM) %6.1f MiB\n", filepath.Base(dir), atof(f[0])/(1<<20), atof(f[1])/1024)
	}
}

func atof(s string) float64 { f, _ := strconv.ParseFloat(s, 64); return f }

func firstPid(dir string) (int, error) {
	img, err := image.ReadFile(filepath.Join(dir, "pstree.img"))
	if err != nil {
		return 0, err
	}
	for _, e := range img.Entries {
		if p, ok := e.Msg.(interface{ GetPid() uint32 }); ok {
			return int(p.GetPid()), nil
		}
	}
	return 0, errors.New("empty pstree")
}

func readmem() {
	dir, pid := os.Args[2], os.Args[3]
	n, _ := strconv.Atoi(pid)
	m, err := image.OpenMemory(dir, n)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer m.Close()
	buf := make([]byte, 1<<20)
	var total int64
	for _, r := range m.Ranges() {
		if r.Flags&image.PEPresent == 0 {
			continue
		}
		for va := r.Vaddr; va < r.End(); {
			k := min(uint64(len(buf)), r.End()-va)
			got, err := m.ReadAt(buf[:k], int64(va))
			total += int64(got)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			va += k
		}
	}
	hwm := int64(-1)
	if st, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(st), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
				hwm, _ = strconv.ParseInt(f[1], 10, 64)
			}
		}
	}
	fmt.Println(total, hwm)
}

// hog allocates and touches MiB of memory, creates the ready file and sleeps until dumped.
func hog() {
	mib, _ := strconv.Atoi(os.Args[2])
	b := make([]byte, mib<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = byte(i>>12) | 1
	}
	if err := os.WriteFile(os.Args[3], []byte("ready"), 0o644); err != nil {
		os.Exit(1)
	}
	for {
		time.Sleep(time.Hour)
		_ = b[0]
	}
}

// makeDump starts this binary as a memory hog (session leader, stdio on /dev/null) and dumps it.
func makeDump(tmp, name string, mib int) (string, error) {
	dir := filepath.Join(tmp, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	ready := filepath.Join(tmp, name+".ready")
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer devnull.Close()
	cmd := exec.Command(os.Args[0], "-hog", strconv.Itoa(mib), ready)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	for i := 0; ; i++ {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if i > 600 {
			return "", errors.New("memory hog did not get ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "dumping %s (%d MiB, pid %d)...\n", name, mib, cmd.Process.Pid)
	out, err := exec.Command(*criuPath, "dump", "-t", strconv.Itoa(cmd.Process.Pid), "-D", dir, "-o", "dump.log", "-v2").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("criu dump failed: %v %s (log: %s)", err, out, filepath.Join(dir, "dump.log"))
	}
	return dir, nil
}
