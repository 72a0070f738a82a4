// Command anonymize benchmarks `criukit anonymize` against `cp -r` of the same image dir, in one
// run: it dumps a process with -mib MiB of random memory (dictionary words planted every 64 KiB)
// with CRIU, then times cp -r (the floor) and every level, each in a child process so that its
// peak RSS can be read. Run as root from the module root:
//
//	go run ./bench/anonymize -mib 1024
//
// -images DIR keeps the dump in DIR (and reuses it on the next run), -levels picks levels, and
// -child LEVEL:IN:OUT -cpuprofile F profiles one level.
package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/criukit/criukit/anonymize"
	"github.com/criukit/criukit/internal/criurun"
)

func main() {
	mib := flag.Int("mib", 1024, "MiB of memory in the dumped process")
	levels := flag.String("levels", "content,identity,structure,paranoid", "levels to time")
	child := flag.String("child", "", "internal: run one level: LEVEL:IN:OUT")
	prof := flag.String("cpuprofile", "", "with -child: write a CPU profile")
	keep := flag.String("images", "", "reuse this image dir if it exists, else dump into it and keep it")
	flag.Parse()
	if *prof != "" {
		f, err := os.Create(*prof)
		if err == nil {
			pprof.StartCPUProfile(f)
			code := runChild(*child)
			pprof.StopCPUProfile()
			os.Exit(code)
		}
	}
	if *child != "" {
		os.Exit(runChild(*child))
	}
	if err := bench(*mib, strings.Split(*levels, ","), *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

var key = strings.Repeat("ab", 32)

func runChild(spec string) int {
	parts := strings.SplitN(spec, ":", 3)
	lvl, err := anonymize.ParseLevel(parts[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	k, _ := hex.DecodeString(key)
	if _, err := anonymize.Run(parts[1], parts[2], anonymize.Options{Level: lvl, Key: k}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func bench(mib int, levels []string, keep string) error {
	criu, ver, err := criurun.Find()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "criukit-bench-anonymize-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	imgs := filepath.Join(work, "images")
	if keep != "" {
		imgs = keep
	}
	if _, err := os.Stat(filepath.Join(imgs, "inventory.img")); err != nil || keep == "" {
		if err := dumpWorkload(work, imgs, mib, criu, ver); err != nil {
			return err
		}
	}
	return timeLevels(work, imgs, levels)
}

func dumpWorkload(work, imgs string, mib int, criu, ver string) error {
	bin := filepath.Join(work, "criukit-workload")
	if out, err := exec.Command("go", "build", "-o", bin, "./internal/workload/criukit-workload").CombinedOutput(); err != nil {
		return fmt.Errorf("build workload (run from the module root): %v\n%s", err, out)
	}
	ready := filepath.Join(work, "ready")
	wdir := filepath.Join(work, "wl")
	os.Mkdir(wdir, 0o755)
	cmd := exec.Command(bin, "--ready-file", ready, "--dir", wdir, "anon-mem", fmt.Sprint(mib))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer cmd.Process.Kill()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("workload not ready")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	t0 := time.Now()
	if err := criurun.Dump(ctx, cmd.Process.Pid, criurun.Opts{Criu: criu, ImagesDir: imgs, LogFile: filepath.Join(work, "dump.log"),
		Args: []string{"--network-lock", "skip"}}); err != nil {
		return err
	}
	cmd.Wait()
	size := dirSize(imgs)
	fmt.Printf("criu %s dumped %d MiB of memory in %v: image dir %.1f MiB\n", ver, mib, time.Since(t0).Round(time.Millisecond), float64(size)/(1<<20))
	return nil
}

func timeLevels(work, imgs string, levels []string) error {

	cp := func() (time.Duration, time.Duration, error) {
		out := filepath.Join(work, "cp-out")
		os.RemoveAll(out)
		t := time.Now()
		c := exec.Command("cp", "-r", imgs, out)
		if b, err := c.CombinedOutput(); err != nil {
			return 0, 0, fmt.Errorf("cp -r: %v %s", err, b)
		}
		d := time.Since(t)
		os.RemoveAll(out)
		return d, cpuTime(c.ProcessState), nil
	}
	if _, _, err := cp(); err != nil { // warm the page cache
		return err
	}
	self, _ := os.Executable()
	fmt.Printf("%-10s %9s %9s %7s %9s %9s %7s %11s  %s\n", "level", "wall", "cp wall", "ratio", "cpu", "cp cpu", "ratio", "peak RSS", "target")
	for _, l := range levels {
		cpT, cpCPU, err := cp()
		if err != nil {
			return err
		}
		out := filepath.Join(work, "out-"+l)
		c := exec.Command(self, "-child", l+":"+imgs+":"+out)
		c.Stderr = os.Stderr
		t := time.Now()
		err = c.Run()
		d := time.Since(t)
		if err != nil {
			return fmt.Errorf("level %s: %v", l, err)
		}
		rss := int64(0)
		if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
			rss = ru.Maxrss * 1024
		}
		target := "<= 2x cp"
		if l == "identity" {
			target = "<= 4x cp"
		}
		cpu := cpuTime(c.ProcessState)
		fmt.Printf("%-10s %9v %9v %6.2fx %9v %9v %6.2fx %7.1f MiB  %s (wall), RSS < 200 MiB\n", l, d.Round(time.Millisecond), cpT.Round(time.Millisecond),
			float64(d)/float64(cpT), cpu.Round(time.Millisecond), cpCPU.Round(time.Millisecond), float64(cpu)/float64(max(cpCPU, time.Millisecond)), float64(rss)/(1<<20), target)
		os.RemoveAll(out)
	}
	return nil
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func cpuTime(ps *os.ProcessState) time.Duration {
	if ps == nil {
		return 0
	}
	return ps.UserTime() + ps.SystemTime()
}
