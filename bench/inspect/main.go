// Command inspect-bench compares criukit inspect with checkpointctl v1.6.0 on the same real podman
// checkpoint archives, side by side in one run: a small busybox container and one holding a large
// shell variable (>= 256 MiB of memory), each exported as a plain tar and as zstd. For each archive it
// times `inspect --all`, per-process memory sizes (memparse), a memory search with no hit and one
// with hits (both tools search pid 1), and prints the ratios; then the search throughput in GB/s next
// to `grep -c` over the extracted pages files (the read-bandwidth floor), and what opening a
// compressed archive costs (decompress + spool) against the plain tar.
//
//	go run ./bench/inspect [-mib 280] [-runs 3] [-keep DIR]
//
// Needs root, podman with localhost/criukit-busybox:latest (scripts/install-corpus) and
// /opt/criukit/bin/checkpointctl (scripts/install-checkpointctl).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

var (
	mib     = flag.Int("mib", 280, "MiB of base64 text the large container keeps in a shell variable")
	runs    = flag.Int("runs", 3, "runs per measurement (best kept)")
	ctlPath = flag.String("checkpointctl", "/opt/criukit/bin/checkpointctl", "checkpointctl v1.6.0")
	keep    = flag.String("keep", "", "keep the archives in this directory (reused when present)")
)

var podmanGlobal = []string{"--cgroup-manager", "cgroupfs", "--runtime", "runc"}

func podman(args ...string) (string, error) {
	out, err := exec.Command("podman", append(append([]string{}, podmanGlobal...), args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("podman %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "inspect-bench:", err)
		os.Exit(1)
	}
}

type archive struct {
	name, path string
	pagesBytes int64
}

// makeArchives checkpoints two containers (small, large) as tar and zstd.
func makeArchives(dir string) ([]archive, error) {
	type spec struct {
		name, script string
	}
	specs := []spec{
		{"small", `export MARKER=needle-in-env; while :; do sleep 1; done`},
		{"large", fmt.Sprintf(`export MARKER=needle-in-env; x=$(head -c %d /dev/urandom | base64 | tr -d '\n'); echo ready; while :; do sleep 1; done`, *mib<<20*3/4)},
	}
	var out []archive
	for _, s := range specs {
		tarP, zstP := filepath.Join(dir, s.name+".tar"), filepath.Join(dir, s.name+".tar.zst")
		if _, err := os.Stat(zstP); err != nil {
			name := fmt.Sprintf("criukit-bench-inspect-%s-%d", s.name, os.Getpid())
			if _, err := podman("run", "-d", "--name", name, "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
				"localhost/criukit-busybox:latest", "sh", "-c", s.script); err != nil {
				return nil, err
			}
			defer podman("rm", "-f", "-t", "0", name)
			for i := 0; i < 600; i++ { // wait for the variable to be filled
				if o, _ := podman("logs", name); strings.Contains(o, "ready") || s.name == "small" {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			time.Sleep(time.Second)
			fmt.Fprintf(os.Stderr, "checkpointing %s...\n", s.name)
			if _, err := podman("container", "checkpoint", name, "--leave-running", "--export", tarP, "--compress", "none"); err != nil {
				return nil, err
			}
			if _, err := podman("container", "checkpoint", name, "--export", zstP, "--compress", "zstd"); err != nil {
				return nil, err
			}
		}
		for _, p := range []string{tarP, zstP} {
			out = append(out, archive{name: s.name + filepath.Ext(p), path: p})
		}
	}
	return out, nil
}

func timeCmd(name string, args ...string) (time.Duration, string, error) {
	best := time.Duration(1<<63 - 1)
	var out string
	for i := 0; i < *runs; i++ {
		var b bytes.Buffer
		c := exec.Command(name, args...)
		c.Stdout, c.Stderr = &b, &b
		t0 := time.Now()
		err := c.Run()
		d := time.Since(t0)
		if err != nil {
			return 0, b.String(), fmt.Errorf("%s %s: %v: %.500s", name, strings.Join(args, " "), err, b.String())
		}
		best, out = min(best, d), b.String()
	}
	return best, out, nil
}

func run() error {
	if _, err := os.Stat(*ctlPath); err != nil {
		return fmt.Errorf("%s: %v (run scripts/install-checkpointctl)", *ctlPath, err)
	}
	dir := *keep
	if dir == "" {
		d, err := os.MkdirTemp("", "inspect-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ck := filepath.Join(dir, "criukit")
	if out, err := exec.Command("go", "build", "-o", ck, "./cmd/criukit").CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/criukit (run from the repository root): %v: %s", err, out)
	}
	arcs, err := makeArchives(dir)
	if err != nil {
		return err
	}
	// Extract the plain tars' pages for the grep floor.
	for i, a := range arcs {
		if strings.HasSuffix(a.path, ".zst") {
			continue
		}
		x := filepath.Join(dir, "x-"+a.name)
		os.MkdirAll(x, 0o755)
		if out, err := exec.Command("tar", "-C", x, "-xf", a.path, "--wildcards", "checkpoint/pages-*").CombinedOutput(); err != nil {
			return fmt.Errorf("tar -x: %v %s", err, out)
		}
		m, _ := filepath.Glob(filepath.Join(x, "checkpoint", "pages-*.img"))
		for _, f := range m {
			st, _ := os.Stat(f)
			arcs[i].pagesBytes += st.Size()
		}
		if i+1 < len(arcs) {
			arcs[i+1].pagesBytes = arcs[i].pagesBytes
		}
	}
	const noHit = "no-such-needle-anywhere-42"
	const hit = "needle-in-env"
	ops := []struct {
		name string
		ctl  func(a archive) []string
		ck   func(a archive) []string
	}{
		{"inspect --all", func(a archive) []string { return []string{"inspect", a.path, "--all", "--format", "json"} },
			func(a archive) []string { return []string{"inspect", a.path, "--all", "--format", "json"} }},
		{"memory sizes", func(a archive) []string { return []string{"memparse", a.path} },
			func(a archive) []string { return []string{"inspect", "memparse", a.path} }},
		{"search, no hit", func(a archive) []string { return []string{"memparse", a.path, "--pid", "1", "--search", noHit} },
			func(a archive) []string {
				return []string{"inspect", "memparse", a.path, "--pid", "1", "--search", noHit}
			}},
		{"search, hits", func(a archive) []string { return []string{"memparse", a.path, "--pid", "1", "--search", hit} },
			func(a archive) []string {
				return []string{"inspect", "memparse", a.path, "--pid", "1", "--search", hit}
			}},
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "archive\tpages\toperation\tcheckpointctl\tcriukit\tspeed-up\t")
	hitLine := regexp.MustCompile(`(?m)^[0-9a-f]{16}\s`)
	for _, a := range arcs {
		st, _ := os.Stat(a.path)
		for _, op := range ops {
			tc, outc, err := timeCmd(*ctlPath, op.ctl(a)...)
			if err != nil {
				return err
			}
			tk, outk, err := timeCmd(ck, op.ck(a)...)
			if err != nil {
				return err
			}
			note := ""
			if strings.HasPrefix(op.name, "search") {
				hc := len(hitLine.FindAllString(outc, -1))
				hk := strings.Count(outk, "\n") - 4 // header lines
				if strings.Contains(outk, "No matches") {
					hk = 0
				}
				note = fmt.Sprintf(" (hits: %d / %d)", hc, hk)
			}
			fmt.Fprintf(tw, "%s (%s)\t%s\t%s%s\t%s\t%s\t%.1fx\t\n", a.name, human(st.Size()), human(a.pagesBytes), op.name, note,
				ms(tc), ms(tk), tc.Seconds()/tk.Seconds())
		}
	}
	tw.Flush()

	// Search throughput vs grep -c over the extracted pages.
	fmt.Println()
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "archive\tpages\tcriukit search (--stats rate)\tcriukit search (whole command)\tgrep -c (pages files)\tcat > /dev/null (pages files)\t")
	for _, a := range arcs {
		x := filepath.Join(dir, "x-"+strings.TrimSuffix(a.name, ".zst"), "checkpoint")
		files, _ := filepath.Glob(filepath.Join(x, "pages-*.img"))
		if strings.HasSuffix(a.name, ".zst") {
			x = filepath.Join(dir, "x-"+strings.TrimSuffix(strings.TrimSuffix(a.name, ".zst"), ".tar")+".tar", "checkpoint")
			files, _ = filepath.Glob(filepath.Join(x, "pages-*.img"))
		}
		tg, _, err := timeCmd("sh", append([]string{"-c", `grep -c -a "$0" "$@" || true`, noHit}, files...)...)
		if err != nil {
			return err
		}
		tcat, _, err := timeCmd("sh", append([]string{"-c", `cat "$@" > /dev/null`, "cat"}, files...)...)
		if err != nil {
			return err
		}
		var scan float64
		tk, out, err := timeCmd(ck, "inspect", "memparse", a.path, "--search", noHit, "--stats")
		if err != nil {
			return err
		}
		if m := regexp.MustCompile(`\(([0-9.]+) GB/s\)`).FindStringSubmatch(out); m != nil {
			scan, _ = strconv.ParseFloat(m[1], 64)
		}
		gb := float64(a.pagesBytes) / 1e9
		fmt.Fprintf(tw, "%s\t%s\t%.2f GB/s\t%.2f GB/s (%s)\t%.2f GB/s (%s)\t%.2f GB/s (%s)\t\n", a.name, human(a.pagesBytes), scan, gb/tk.Seconds(), ms(tk), gb/tg.Seconds(), ms(tg), gb/tcat.Seconds(), ms(tcat))
	}
	tw.Flush()

	// What a compressed archive costs to open (decompress + spool) against the plain tar.
	fmt.Println()
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "archive\tcriukit ls (metadata only, pages skipped)\tcriukit x ps\tcriukit pages of pid 1 (4 KiB)\t")
	for _, a := range arcs {
		tl, _, err := timeCmd(ck, "ls", a.path)
		if err != nil {
			return err
		}
		tx, _, err := timeCmd(ck, "x", a.path, "ps")
		if err != nil {
			return err
		}
		addr, err := firstAddr(ck, a.path)
		if err != nil {
			return err
		}
		tp, _, err := timeCmd(ck, "pages", a.path, "--pid", "1", "--addr", addr, "--len", "4096")
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", a.name, ms(tl), ms(tx), ms(tp))
	}
	return tw.Flush()
}

func firstAddr(ck, p string) (string, error) {
	out, err := exec.Command(ck, "inspect", "memparse", p, "--search", "MARKER=", "--pid", "1", "--format", "json").Output()
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`"vaddr": (\d+)`).FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("no MARKER= in pid 1 of %s", p)
	}
	v, _ := strconv.ParseUint(string(m[1]), 10, 64)
	return fmt.Sprintf("%#x", v&^4095), nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", d.Seconds()*1000) }

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
