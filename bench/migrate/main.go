// Command migrate compares stock one-shot migration (criu dump, copy every image over TCP, criu
// restore) with `criukit migrate` in 1, 3 and 5 rounds, for a process with a 1 GiB buffer that
// writes 1% and 10% of its pages per second. The tree lives in netns A, the receiver (criukit's
// page server and criu restore) in netns B, joined by a veth pair. It prints frozen time, total
// time and bytes per round, and checks the two targets of issue 16.
//
//	go run ./bench/migrate [-mib 1024] [-rates 1,10] [-rounds 1,3,5] [-json]   (as root)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/criukit/criukit/internal/nsrun"
	"github.com/criukit/criukit/internal/workload"
	"github.com/criukit/criukit/migrate"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const envWorkload = "CRIUKIT_BENCH_MIGRATE_WORKLOAD"

type row struct {
	RatePct  float64              `json:"rate_pct_per_s"`
	Mode     string               `json:"mode"`
	Frozen   float64              `json:"frozen_seconds"`
	Total    float64              `json:"total_seconds"`
	Wire     int64                `json:"wire_bytes"`
	Expected int64                `json:"full_plus_written_bytes"`
	Rounds   []migrate.RoundStats `json:"rounds"`
	Parts    [4]float64           `json:"frozen_parts"` // dump, images, source exit, restore
	Err      string               `json:"error,omitempty"`
}

func main() {
	if os.Getenv(envWorkload) != "" {
		// the writer: CRIUKIT_BENCH_MIGRATE_WORKLOAD=1 bench -- PAGES RATE READY DIR
		a := os.Args[len(os.Args)-4:]
		err := workload.RunConfig("migrate-writer", a[:2], workload.Config{ReadyFile: a[2], Dir: a[3]})
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	mib := flag.Int("mib", 1024, "buffer size of the writer in MiB")
	rates := flag.String("rates", "1,10", "write rates in percent of the buffer's pages per second")
	rounds := flag.String("rounds", "1,3,5,3+flat,5+lazy,3+criu,3+criu+flat,5+criu+lazy", "criukit migrate round counts (N+lazy: restore with criu lazy-pages from the receiver's flat copy; N+flat: eager restore from it; N+criu: criu dump --track-mem-uffd skips unwritten pages itself, needs scripts/build-criu)")
	stockLazy := flag.Bool("stock-lazy", true, "also run the stock one-shot with a lazy-pages restore")
	pause := flag.Duration("pause", 0, "pause between rounds")
	asJSON := flag.Bool("json", false, "print rows as JSON")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench migrate: needs root")
		os.Exit(1)
	}
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	var rows []row
	for _, rs := range strings.Split(*rates, ",") {
		rate, err := strconv.ParseFloat(rs, 64)
		if err != nil {
			fatal(err)
		}
		modes := []string{"stock"}
		if *stockLazy {
			modes = append(modes, "stock+lazy")
		}
		for _, r := range strings.Split(*rounds, ",") {
			modes = append(modes, "rounds="+r)
		}
		for _, m := range modes {
			r, err := one(*mib, rate, m, *pause)
			if err != nil {
				r.Err = err.Error()
				fmt.Fprintf(os.Stderr, "%.0f%%/s %s: %v\n", rate, m, err)
			}
			rows = append(rows, r)
			fmt.Fprintf(os.Stderr, "done: %.0f%%/s %-9s frozen %.3fs total %.3fs wire %.1f MiB\n", rate, m, r.Frozen, r.Total, float64(r.Wire)/(1<<20))
		}
	}
	if *asJSON {
		e := json.NewEncoder(os.Stdout)
		e.SetIndent("", "  ")
		_ = e.Encode(rows)
		return
	}
	print(rows, *mib)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench migrate:", err)
	os.Exit(1)
}

func sh(args ...string) error {
	if b, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, b)
	}
	return nil
}

// one runs one configuration in fresh namespaces.
func one(mib int, ratePct float64, mode string, pause time.Duration) (row, error) {
	r := row{RatePct: ratePct, Mode: mode}
	tag := fmt.Sprintf("bm%d", os.Getpid()%100000)
	a, b := tag+"a", tag+"b"
	for _, n := range []string{a, b} {
		_ = exec.Command("ip", "netns", "del", n).Run()
		if err := sh("ip", "netns", "add", n); err != nil {
			return r, err
		}
		defer exec.Command("ip", "netns", "del", n).Run()
		if err := sh("ip", "-n", n, "link", "set", "lo", "up"); err != nil {
			return r, err
		}
	}
	steps := [][]string{
		{"ip", "-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b},
		{"ip", "-n", a, "addr", "add", "10.98.0.1/24", "dev", "va"},
		{"ip", "-n", b, "addr", "add", "10.98.0.2/24", "dev", "vb"},
		{"ip", "-n", a, "link", "set", "va", "up"},
		{"ip", "-n", b, "link", "set", "vb", "up"},
	}
	for _, s := range steps {
		if err := sh(s...); err != nil {
			return r, err
		}
	}
	pa, pb := "/run/netns/"+a, "/run/netns/"+b
	tmp, err := os.MkdirTemp("", "criukit-bench-migrate-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(tmp)
	rv := &migrate.Receiver{Dir: filepath.Join(tmp, "recv"), Netns: pb}
	hd, err := netns.GetFromPath(pb)
	if err != nil {
		return r, err
	}
	var l net.Listener
	err = nsrun.Do(hd, func() error { var e error; l, e = net.Listen("tcp", "10.98.0.2:0"); return e })
	hd.Close()
	if err != nil {
		return r, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rv.Serve(ctx, l)

	pages := mib << 20 / os.Getpagesize()
	rate := int(float64(pages) * ratePct / 100)
	ready := filepath.Join(tmp, "ready")
	self, _ := os.Executable()
	cmd := exec.Command("nsenter", "--net="+pa, "--", self, "--", strconv.Itoa(pages), strconv.Itoa(rate), ready, filepath.Join(tmp, "wl"))
	cmd.Env = append(os.Environ(), envWorkload+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return r, err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	pid := cmd.Process.Pid
	restored := 0
	defer func() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if restored > 0 {
			_ = syscall.Kill(restored, syscall.SIGKILL)
			var ws unix.WaitStatus
			_, _ = unix.Wait4(restored, &ws, 0, nil)
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}()
	for deadline := time.Now().Add(60 * time.Second); ; {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("writer not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second) // writing at its rate
	o := migrate.Options{
		Pid: pid, To: l.Addr().String(), DialNetns: pa, Netns: pa, Pause: pause,
		DumpArgs: []string{"--network-lock", "skip"},
		AfterDump: func() error {
			select {
			case <-done:
				return nil
			case <-time.After(10 * time.Second):
				return fmt.Errorf("dumped writer still alive")
			}
		},
	}
	var res *migrate.Result
	mode, o.Lazy = strings.CutSuffix(mode, "+lazy")
	mode, o.Flat = strings.CutSuffix(mode, "+flat")
	var criuTrack bool
	mode, criuTrack = strings.CutSuffix(mode, "+criu")
	o.Tracking = "relay" // stock criu
	if criuTrack {
		o.Tracking = "criu" // the patched build (criurun.FindTrackMemUffd)
	}
	if mode == "stock" {
		res, err = migrate.OneShot(ctx, o)
	} else {
		o.Rounds, _ = strconv.Atoi(strings.TrimPrefix(mode, "rounds="))
		res, err = migrate.Migrate(ctx, o)
	}
	if res != nil {
		restored = res.Pid
		r.Frozen, r.Total, r.Wire, r.Rounds = res.FrozenSeconds, res.TotalSeconds, res.WireBytes, res.Rounds
		r.Parts = [4]float64{res.FrozenDump, res.FrozenImages, res.FrozenWait, res.FrozenRestore}
		if len(res.Rounds) > 0 {
			full := res.Rounds[0].Pages
			for _, x := range res.Rounds[1:] {
				full += int64(x.Written)
			}
			r.Expected = full * int64(os.Getpagesize())
		}
	}
	if err == nil && restored > 0 {
		// the restored writer must run on
		time.Sleep(200 * time.Millisecond)
		if _, e := os.Stat(fmt.Sprintf("/proc/%d", restored)); e != nil {
			err = fmt.Errorf("restored writer %d is gone", restored)
		}
	}
	return r, err
}

func print(rows []row, mib int) {
	fmt.Printf("\nbench migrate: %d MiB writer, tree in netns A, receiver + restore in netns B (veth)\n\n", mib)
	fmt.Printf("%-7s %-12s %9s %9s %10s %8s   %s\n", "rate/s", "mode", "frozen s", "total s", "wire MiB", "bytes/x", "frozen parts: dump/images/exit/restore s; pages sent per round (written seen)")
	base := map[float64]float64{}
	for _, r := range rows {
		if r.Mode == "stock" {
			base[r.RatePct] = r.Frozen
		}
		ratio := ""
		if r.Expected > 0 && !strings.HasPrefix(r.Mode, "stock") {
			ratio = fmt.Sprintf("%.3f", float64(r.Wire)/float64(r.Expected))
		}
		var per []string
		for _, x := range r.Rounds {
			per = append(per, fmt.Sprintf("%d(%d)", x.Sent, x.Written))
		}
		e := ""
		if r.Err != "" {
			e = "  ERROR: " + r.Err
		}
		fmt.Printf("%-7s %-12s %9.3f %9.3f %10.1f %8s   %.2f/%.2f/%.2f/%.2f; %s%s\n", fmt.Sprintf("%g%%", r.RatePct), r.Mode, r.Frozen, r.Total,
			float64(r.Wire)/(1<<20), ratio, r.Parts[0], r.Parts[1], r.Parts[2], r.Parts[3], strings.Join(per, " "), e)
	}
	fmt.Println("\nbytes/x = bytes on the wire / (round 0's pages + pages written during the later rounds); target <= 1.1")
	for _, r := range rows {
		if r.Mode != "stock" && r.Frozen > 0 && base[r.RatePct] > 0 && r.Err == "" {
			fmt.Printf("%g%%/s %s: frozen %.1fx shorter than stock one-shot\n", r.RatePct, r.Mode, base[r.RatePct]/r.Frozen)
		}
	}
}
