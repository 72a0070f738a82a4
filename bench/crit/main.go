// Command crit-bench compares decode+encode (binary -> JSON -> binary) of every file of some CRIU
// dump directories for criukit, CRIU's Python crit 3.17 (/usr/bin/crit, a subprocess per command)
// and go-criu v8's crit library (in-process), side by side in one run, as ratios; then the peak
// memory of criukit reading a small and a large pages file (it should not grow with the size).
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
	ck, gc, py   time.Duration // per round trip; 0 = not measured
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

	var pyStart time.Duration
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
			if !*noPy {
				r.py, err = pyRoundTrip(p, work)
				if err != nil {
					r.py, r.pyErr = 0, oneLine(err.Error())
				} else if d, ok := pyIn[p]; ok {
					r.pyCorr = d
				}
			}
			results = append(results, r)
		}
	}
	report(results, pyStart)
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
// i.e. without interpreter start-up and imports: pycriu.images.load, json.dumps, json.loads, dump.
func pyInProcess(dirs []string) (map[string]time.Duration, error) {
	const script = `import sys, time, json, io
sys.path.insert(0, '/usr/lib/python3/dist-packages')
import pycriu
for line in sys.stdin:
    p = line.rstrip('\n')
    def rt():
        with open(p, 'rb') as f:
            img = pycriu.images.load(f)
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

func pyRoundTrip(p, work string) (time.Duration, error) {
	jp := filepath.Join(work, "py.json")
	op := filepath.Join(work, "py.img")
	start := time.Now()
	if out, err := exec.Command(*critPath, "decode", "-i", p, "-o", jp).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("decode: %s", out)
	}
	if out, err := exec.Command(*critPath, "encode", "-i", jp, "-o", op).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("encode: %s", out)
	}
	return time.Since(start), nil
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

func report(rs []result, pyStart time.Duration) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Println("decode+encode (binary -> JSON -> binary) per file, µs; ratios = other tool's time / criukit's")
	fmt.Println("criukit and go-criu: in-process, image -> JSON file -> image file on tmpfs, best of -rounds; ck-mem: criukit without files")
	if pyStart > 0 {
		fmt.Printf("crit = two `crit decode`/`crit encode` subprocesses (start-up of one `crit --help`: %.1f ms, median of 5);\n", float64(pyStart)/1e6)
		fmt.Println("crit-corr = the same pycriu load + json.dumps + json.loads + dump in one long-running Python process (no start-up)")
		fmt.Println("all in-process times are the fastest of many runs (the machine is shared)")
	}
	fmt.Fprintln(tw, "file\tbytes\tcriukit\tgo-criu\tcrit\tck-mem\tcrit-corr\tgo-criu/ck\tcrit/ck\tcrit-corr/ck-mem\t")
	var sCk, sGc, sCkG, sPy, sPyC, sCkP, sCkM time.Duration
	var logGc, logPy, logPyC float64
	var nGc, nPy int
	minGc, minPy, minPyC := math.Inf(1), math.Inf(1), math.Inf(1)
	var failures []string
	for _, r := range rs {
		if r.ckErr != "" {
			failures = append(failures, fmt.Sprintf("criukit FAILED %s: %s", r.file, r.ckErr))
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.file, r.size, us(r.ck), us(r.gc), us(r.py), us(r.ckMem), us(r.pyCorr),
			ratio(r.gc, r.ck), ratio(r.py, r.ck), ratio(r.pyCorr, r.ckMem))
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
		if r.py > 0 && r.pyCorr > 0 {
			sCkP += r.ck
			sCkM += r.ckMem
			sPy += r.py
			sPyC += r.pyCorr
			logPy += math.Log(float64(r.py) / float64(r.ck))
			logPyC += math.Log(float64(r.pyCorr) / float64(r.ckMem))
			minPy = math.Min(minPy, float64(r.py)/float64(r.ck))
			minPyC = math.Min(minPyC, float64(r.pyCorr)/float64(r.ckMem))
			nPy++
		} else if !*noPy {
			failures = append(failures, fmt.Sprintf("Python crit fails on %s: %s", r.file, r.pyErr))
		}
		sCk += r.ck
	}
	tw.Flush()
	fmt.Println()
	fmt.Printf("files: %d; criukit total %.2f ms\n", len(rs), float64(sCk)/1e6)
	if nGc > 0 {
		fmt.Printf("go-criu  vs criukit on the %d files both handle: total %s, geometric mean %.1fx, worst file %.1fx (target: never slower, i.e. >= 1x)\n",
			nGc, ratio(sGc, sCkG), math.Exp(logGc/float64(nGc)), minGc)
	}
	if nPy > 0 {
		fmt.Printf("crit 3.17 vs criukit on the %d files both handle: raw total %s (geo mean %.0fx, worst %.0fx); start-up corrected total %s (geo mean %.0fx, worst %.0fx) (target >= 20x)\n",
			nPy, ratio(sPy, sCkP), math.Exp(logPy/float64(nPy)), minPy, ratio(sPyC, sCkM), math.Exp(logPyC/float64(nPy)), minPyC)
	}
	for _, f := range failures {
		fmt.Println(f)
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
