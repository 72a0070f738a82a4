package doctor

import (
	"bufio"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
	"unsafe"

	"github.com/criukit/criukit/report/knownissues"
	"golang.org/x/sys/unix"
)

// KernelConfig reads /proc/config.gz or /boot/config-RELEASE. It returns nil when neither exists.
func KernelConfig(release string) map[string]string {
	var r io.Reader
	if f, err := os.Open("/proc/config.gz"); err == nil {
		defer f.Close()
		if z, err := gzip.NewReader(f); err == nil {
			r = z
		}
	}
	if r == nil {
		f, err := os.Open("/boot/config-" + release)
		if err != nil {
			return nil
		}
		defer f.Close()
		r = f
	}
	return ParseKernelConfig(r)
}

// ParseKernelConfig parses kernel .config text: CONFIG_X=v lines and "# CONFIG_X is not set" (as "n").
func ParseKernelConfig(r io.Reader) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if k, ok := strings.CutPrefix(l, "# "); ok {
			if name, ok := strings.CutSuffix(k, " is not set"); ok && strings.HasPrefix(name, "CONFIG_") {
				m[name] = "n"
			}
			continue
		}
		if k, v, ok := strings.Cut(l, "="); ok && strings.HasPrefix(k, "CONFIG_") {
			m[k] = strings.Trim(v, `"`)
		}
	}
	return m
}

// criuFeature runs `criu check --feature name`.
func criuFeature(ctx context.Context, criu, name string) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, criu, "check", "--feature", name).CombinedOutput()
	return err == nil, lastLine(string(out))
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

func sysctl(name string) string {
	b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// probeUffd creates (and closes) a userfaultfd in this process.
func probeUffd() error {
	fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC, 0, 0)
	if errno != 0 {
		return errno
	}
	unix.Close(int(fd))
	return nil
}

// probePagemapScan issues PAGEMAP_SCAN with an invalid (zero-sized) argument: EINVAL means the
// ioctl exists, ENOTTY that the kernel lacks it.
func probePagemapScan() error {
	const pagemapScan = 0xC0606610 // _IOWR('f', 16, struct pm_scan_arg), 96 bytes
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return err
	}
	defer f.Close()
	var arg [96]byte
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), pagemapScan, uintptr(unsafe.Pointer(&arg[0])))
	if errno == unix.EINVAL || errno == 0 {
		return nil
	}
	return errno
}

func (r *Report) kernelFeatures(ctx context.Context, o Options) {
	cfg := KernelConfig(r.Kernel)
	conf := func(name string) (bool, string, bool) {
		if cfg == nil {
			return false, "", false
		}
		v, ok := cfg[name]
		if !ok {
			v = "n"
		}
		return v == "y" || v == "m", name + "=" + v, true
	}
	useCriu := !o.NoCriu && r.Criu != ""
	if useCriu {
		// criu check --all first: when criu cannot even initialize (too old for the kernel), its
		// per-feature answers mean nothing, and doctor falls back to the kernel config and probes.
		ctx2, cancel := context.WithTimeout(ctx, 30*time.Second)
		out, _ := exec.CommandContext(ctx2, r.Criu, "check", "--all").CombinedOutput()
		cancel()
		r.CheckAll = strings.TrimSpace(string(out))
		res, err := knownissues.Default().Scan(strings.NewReader(r.CheckAll), "criu check --all")
		if err == nil {
			for _, m := range res.Matches {
				r.add(Finding{ID: m.ID, Severity: SevError, What: "criu check fails: " + m.Title, Where: r.Criu, Why: m.Line, Fix: m.Fix})
			}
		}
		if strings.Contains(r.CheckAll, "Could not initialize kernel features detection") {
			useCriu = false
		}
	}
	feat := func(name, criuName, config, needed string, probe func() error) Feature {
		f := Feature{Name: name, Needed: needed}
		var parts []string
		decided := false
		if useCriu && criuName != "" {
			ok, line := criuFeature(ctx, r.Criu, criuName)
			f.OK, f.Source, decided = ok, "criu check --feature "+criuName, true
			parts = append(parts, line)
		}
		if config != "" {
			if ok, s, have := conf(config); have {
				if !decided {
					f.OK, f.Source, decided = ok, "kernel config", true
				}
				parts = append(parts, s)
			}
		}
		if probe != nil {
			err := probe()
			if !decided {
				f.OK, f.Source, decided = err == nil, "probe", true
			}
			if err != nil {
				parts = append(parts, "probe: "+err.Error())
			} else {
				parts = append(parts, "probe: ok")
			}
		}
		if !decided {
			// No source can answer (criu not run, no kernel config): leave it out rather than guess.
			f.OK = true
			return f
		}
		f.Detail = strings.Join(parts, "; ")
		r.Features = append(r.Features, f)
		return f
	}

	if ok, s, have := conf("CONFIG_CHECKPOINT_RESTORE"); have {
		r.Features = append(r.Features, Feature{Name: "checkpoint-restore", OK: ok, Source: "kernel config", Detail: s, Needed: "everything CRIU does"})
		if !ok {
			r.add(Finding{ID: "no-checkpoint-restore", Severity: SevError, What: "kernel built without CONFIG_CHECKPOINT_RESTORE", Fix: "use a kernel with CONFIG_CHECKPOINT_RESTORE=y"})
		}
	}
	sd := feat("soft-dirty", "mem_dirty_track", "CONFIG_MEM_SOFT_DIRTY", "criu pre-dump, --track-mem, iterative migration", nil)
	if !sd.OK {
		sev := SevWarning
		if hasArg(o.DumpArgs, "--track-mem") || hasArg(o.DumpArgs, "--prev-images-dir") {
			sev = SevError
		}
		r.add(Finding{ID: "no-soft-dirty-predump", Severity: sev, What: "no soft-dirty memory tracking: criu pre-dump aborts (BUG at criu/mem.c), --track-mem is refused",
			Why: sd.Detail, Fix: "use single (non-incremental) dumps; for write tracking without soft-dirty see `criukit memtrack` (userfaultfd-wp + PAGEMAP_SCAN)"})
	}
	uffd := feat("userfaultfd", "uffd", "CONFIG_USERFAULTFD", "criu lazy-pages (--lazy-pages), criukit memtrack", probeUffd)
	if uffd.OK {
		feat("userfaultfd-noncoop", "uffd-noncoop", "", "lazy restore of trees that fork/mremap", nil)
		if v := sysctl("vm.unprivileged_userfaultfd"); v != "" {
			r.Features = append(r.Features, Feature{Name: "unprivileged-userfaultfd", OK: v == "1", Source: "/proc/sys/vm/unprivileged_userfaultfd", Detail: "vm.unprivileged_userfaultfd=" + v, Needed: "userfaultfd for non-root (root is fine)"})
		}
	}
	feat("uffd-wp-async", "", "CONFIG_PTE_MARKER_UFFD_WP", "write tracking with userfaultfd-wp async mode", nil)
	feat("pagemap-scan", "pagemap_scan", "", "fast dirty/written page scans (PAGEMAP_SCAN ioctl)", probePagemapScan)
	feat("time-namespace", "timens", "CONFIG_TIME_NS", "restoring monotonic/boottime clocks of trees with a time ns", func() error {
		_, err := os.Stat("/proc/self/ns/time")
		return err
	})
	feat("clone3-set-tid", "clone3_set_tid", "", "restoring pids without pid-namespace tricks", nil)
	feat("proc-children", "", "CONFIG_PROC_CHILDREN", "fast process tree walks (/proc/PID/task/TID/children)", nil)
	nl := feat("network-lock-nftables", "network_lock_nftables", "", "--network-lock nftables (TCP dumps without iptables)", nil)
	_, ipterr := exec.LookPath("iptables")
	if ipterr != nil && !hasArg(o.DumpArgs, "--network-lock") {
		fix := "pass --network-lock nftables"
		if !nl.OK && useCriu {
			fix = "install iptables, or a CRIU built with libnftables, or pass --network-lock skip when nothing talks to the outside"
		}
		r.add(Finding{ID: "no-iptables", Severity: SevWarning, What: "no iptables binary: CRIU's default network lock (iptables) fails for trees with TCP connections or their own netns",
			Fix: fix})
	}
	if cfg == nil {
		r.Features = append(r.Features, Feature{Name: "kernel-config", OK: false, Source: "/proc/config.gz, /boot/config-" + r.Kernel, Detail: "not available: answers come from criu and probes only"})
	}
}
