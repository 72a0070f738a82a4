// Command memtrack measures what write tracking costs the tracked process: the time a child needs
// to write one byte into each page of a 64 MiB anonymous buffer, untracked versus tracked by
// memtrack (every round starts with a PAGEMAP_SCAN that re-protects all pages, so every page takes
// one async write-protect fault), and how long the scan itself takes.
//
//	go run ./bench/memtrack [-mib 64] [-rounds 10]   (as root)
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"time"

	"github.com/criukit/criukit/memtrack"
	"golang.org/x/sys/unix"
)

const envChild = "CRIUKIT_BENCH_MEMTRACK_CHILD"

func main() {
	mib := flag.Int("mib", 64, "buffer size in MiB")
	rounds := flag.Int("rounds", 10, "write rounds per phase")
	flag.Parse()
	if os.Getenv(envChild) != "" {
		child(*mib)
		return
	}
	if err := run(*mib, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "bench memtrack:", err)
		os.Exit(1)
	}
}

// child writes one byte per page each time it reads a byte on stdin and answers the ns it took.
func child(mib int) {
	ps := os.Getpagesize()
	buf, err := unix.Mmap(-1, 0, mib<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		os.Exit(2)
	}
	for i := 0; i < len(buf); i += ps {
		buf[i] = 1
	}
	var cmd [1]byte
	var out [8]byte
	for {
		if _, err := os.Stdin.Read(cmd[:]); err != nil {
			return
		}
		t := time.Now()
		for i := 0; i < len(buf); i += ps {
			buf[i]++
		}
		binary.LittleEndian.PutUint64(out[:], uint64(time.Since(t)))
		os.Stdout.Write(out[:])
	}
}

func run(mib, rounds int) error {
	cmd := exec.Command("/proc/self/exe", "-mib", fmt.Sprint(mib))
	cmd.Env = append(os.Environ(), envChild+"=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	round := func() (time.Duration, error) {
		if _, err := in.Write([]byte{1}); err != nil {
			return 0, err
		}
		var b [8]byte
		if _, err := out.Read(b[:]); err != nil {
			return 0, err
		}
		return time.Duration(binary.LittleEndian.Uint64(b[:])), nil
	}
	if _, err := round(); err != nil { // child ready, buffer populated
		return err
	}
	pages := mib << 20 / os.Getpagesize()
	median := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	phase := func(tr *memtrack.Tracker) (write, scan time.Duration, seen int, err error) {
		var ws, ss []time.Duration
		for r := 0; r < rounds; r++ {
			if tr != nil {
				iv, err := tr.Scan(false)
				if err != nil {
					return 0, 0, 0, err
				}
				ss = append(ss, iv.ScanTime)
				if r > 0 {
					seen = iv.Pages
				}
			}
			d, err := round()
			if err != nil {
				return 0, 0, 0, err
			}
			ws = append(ws, d)
		}
		if tr != nil {
			scan = median(ss)
		}
		return median(ws), scan, seen, nil
	}
	base, _, _, err := phase(nil)
	if err != nil {
		return err
	}
	t0 := time.Now()
	tr, err := memtrack.Attach(cmd.Process.Pid, memtrack.Options{})
	if err != nil {
		return err
	}
	attach := time.Since(t0)
	tracked, scan, seen, err := phase(tr)
	if err != nil {
		tr.Close()
		return err
	}
	t0 = time.Now()
	if err := tr.Close(); err != nil {
		return err
	}
	release := time.Since(t0)
	after, _, _, err := phase(nil)
	if err != nil {
		return err
	}
	perPage := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(pages) }
	fmt.Printf("buffer %d MiB = %d pages, %d rounds per phase (medians)\n", mib, pages, rounds)
	fmt.Printf("write 1 byte/page, untracked:        %9v  (%6.1f ns/page)\n", base, perPage(base))
	fmt.Printf("write 1 byte/page, tracked (WP'd):   %9v  (%6.1f ns/page)  ratio %.1fx\n", tracked, perPage(tracked), float64(tracked)/float64(base))
	fmt.Printf("write 1 byte/page, after release:    %9v  (%6.1f ns/page)  ratio %.2fx\n", after, perPage(after), float64(after)/float64(base))
	fmt.Printf("PAGEMAP_SCAN + re-protect, all dirty: %9v  (%6.1f ns/page), reported %d of %d pages\n", scan, perPage(scan), seen, pages)
	fmt.Printf("attach (inject + register + WP):     %9v\nrelease (unregister + close):         %9v\n", attach, release)
	return nil
}
