package knownissues_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/testenv"
	"github.com/criukit/criukit/report/knownissues"
)

func TestMain(m *testing.M) { harness.Main(m) }

// failDump dumps p (leaving it running) and returns the log of the failed dump; a successful
// dump fails the test.
func failDump(t *testing.T, criu string, pid int, netns string, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "dump.log")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{"--leave-running", "--network-lock", "skip"}, extra...)
	err := criurun.Dump(ctx, pid, criurun.Opts{Criu: criu, ImagesDir: filepath.Join(dir, "images"), LogFile: log, Netns: netns, Args: args})
	if err == nil {
		t.Fatalf("criu dump of pid %d %v succeeded; want a failure", pid, extra)
	}
	return log
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// hasFeature runs `criu check --feature NAME`.
func hasFeature(criu, name string) bool {
	return exec.Command(criu, "check", "--feature", name).Run() == nil
}

// TestRealFailures makes CRIU fail for real in each known way and checks that the matcher names
// the right rule, and that the failing line is one the rule's samples pin (same message).
func TestRealFailures(t *testing.T) {
	criu := harness.Criu(t)
	set := knownissues.Default()
	cases := []struct {
		rule string
		make func(t *testing.T) string // returns the log of the failing run
	}{
		{"ghost-limit", func(t *testing.T) string {
			p := harness.Start(t, "doctor-ghost", harness.WithArgs("3000000"))
			return failDump(t, criu, p.Pid, "")
		}},
		{"tcp-established", func(t *testing.T) string {
			p := harness.Start(t, "tcp")
			return failDump(t, criu, p.Pid, "")
		}},
		{"userfaultfd", func(t *testing.T) string {
			return failDump(t, criu, harness.Start(t, "doctor-uffd").Pid, "")
		}},
		{"io-uring", func(t *testing.T) string {
			return failDump(t, criu, harness.Start(t, "doctor-iouring").Pid, "")
		}},
		{"perf-event", func(t *testing.T) string {
			return failDump(t, criu, harness.Start(t, "doctor-perf").Pid, "")
		}},
		{"kvm", func(t *testing.T) string {
			testenv.File(t, "/dev/kvm")
			return failDump(t, criu, harness.Start(t, "doctor-kvm").Pid, "")
		}},
		{"kvm", func(t *testing.T) string { // kvm_run mapped: fails while collecting VMAs
			testenv.File(t, "/dev/kvm")
			return failDump(t, criu, harness.Start(t, "doctor-kvm", harness.WithArgs("mmap")).Pid, "")
		}},
		{"unsupported-anon-inode", func(t *testing.T) string {
			return failDump(t, criu, harness.Start(t, "doctor-anon").Pid, "")
		}},
		{"unsupported-chrdev", func(t *testing.T) string {
			testenv.File(t, "/dev/kvm")
			return failDump(t, criu, harness.Start(t, "doctor-chr").Pid, "")
		}},
		{"track-mem-unavailable", func(t *testing.T) string {
			if hasFeature(criu, "mem_dirty_track") {
				testenv.Unavailable(t, "this kernel has soft-dirty tracking: --track-mem works")
			}
			return failDump(t, criu, harness.Start(t, "sleep").Pid, "", "--track-mem")
		}},
		{"parent-not-predump", func(t *testing.T) string {
			p := harness.Start(t, "sleep")
			base := t.TempDir()
			ctx := context.Background()
			if err := criurun.Dump(ctx, p.Pid, criurun.Opts{Criu: criu, ImagesDir: base, Args: []string{"-R", "--network-lock", "skip"}}); err != nil {
				t.Fatal(err)
			}
			return failDump(t, criu, p.Pid, "", "--prev-images-dir", base)
		}},
		{"no-soft-dirty-predump", func(t *testing.T) string {
			if hasFeature(criu, "mem_dirty_track") {
				testenv.Unavailable(t, "this kernel has soft-dirty tracking: pre-dump works")
			}
			p := harness.Start(t, "sleep")
			dir := t.TempDir()
			err := exec.Command(criu, "pre-dump", "-t", fmt.Sprint(p.Pid), "-D", dir, "-v4", "-o", "dump.log").Run()
			if err == nil {
				t.Fatal("pre-dump succeeded")
			}
			return filepath.Join(dir, "dump.log")
		}},
		{"pid-conflict", func(t *testing.T) string {
			p := harness.Start(t, "sleep")
			dir := t.TempDir()
			ctx := context.Background()
			if err := criurun.Dump(ctx, p.Pid, criurun.Opts{Criu: criu, ImagesDir: dir, Args: []string{"-R", "--network-lock", "skip"}}); err != nil {
				t.Fatal(err)
			}
			log := filepath.Join(t.TempDir(), "restore.log")
			pid, err := criurun.Restore(ctx, criurun.Opts{Criu: criu, ImagesDir: dir, LogFile: log})
			if err == nil {
				killTree(pid)
				t.Fatal("restore succeeded while the original still runs")
			}
			return log
		}},
		{"tcp-close-restore", func(t *testing.T) string {
			p := harness.Start(t, "tcp")
			dir := t.TempDir()
			ctx := context.Background()
			if err := criurun.Dump(ctx, p.Pid, criurun.Opts{Criu: criu, ImagesDir: dir, Args: []string{"-R", "--network-lock", "skip", "--tcp-close"}}); err != nil {
				t.Fatal(err)
			}
			log := filepath.Join(t.TempDir(), "restore.log")
			pid, err := criurun.Restore(ctx, criurun.Opts{Criu: criu, ImagesDir: dir, LogFile: log})
			if err == nil {
				killTree(pid)
				t.Fatal("restore without --tcp-close succeeded")
			}
			return log
		}},
		{"not-session-leader", func(t *testing.T) string {
			return failDump(t, criu, harness.NotSessionLeader(t), "")
		}},
		{"session-leader-outside-pidns", func(t *testing.T) string {
			// init of a new pid namespace, still in the test's session: its leader is outside.
			p := harness.Start(t, "sleep", harness.WithNamespaces(syscall.CLONE_NEWPID), harness.InCallersSession())
			return failDump(t, criu, p.Pid, "")
		}},
		{"external-unix-socket", func(t *testing.T) string {
			p := harness.Start(t, "doctor-unix-connect", harness.WithArgs(harness.UnixListener(t)))
			return failDump(t, criu, p.Pid, "")
		}},
		{"external-unix-socket", func(t *testing.T) string { // --ext-unix-sk does not help stream sockets
			p := harness.Start(t, "doctor-unix-connect", harness.WithArgs(harness.UnixListener(t)))
			return failDump(t, criu, p.Pid, "", "--ext-unix-sk")
		}},
		{"old-criu-vdso", func(t *testing.T) string {
			const old = "/usr/sbin/criu"
			testenv.File(t, old)
			v, err := criurun.Version(old)
			if err != nil || !strings.HasPrefix(v, "3.") {
				testenv.Unavailable(t, "%s is not a CRIU 3.x (%q, %v)", old, v, err)
			}
			p := harness.Start(t, "sleep")
			dir := t.TempDir()
			// Fails while detecting kernel features, before it touches the task (which keeps running).
			_ = exec.Command(old, "dump", "-t", fmt.Sprint(p.Pid), "-D", dir, "-v4", "-o", "dump.log", "-R").Run()
			if !p.Alive() {
				t.Fatal("criu 3.17 harmed the task")
			}
			return filepath.Join(dir, "dump.log")
		}},
		{"netns-lo-down", func(t *testing.T) string {
			ns := newNetns(t, false)
			p := harness.Start(t, "sleep")
			return failDump(t, criu, p.Pid, "/run/netns/"+ns)
		}},
		{"mntns-unreachable-sharing", func(t *testing.T) string {
			ns := newNetns(t, true)
			// `ip netns exec` gives the workload a private mount namespace; criu runs in ours.
			cmd := exec.Command("ip", "netns", "exec", ns, "setsid", "sleep", "600")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			pid := waitChildSleep(t, cmd.Process.Pid)
			return failDump(t, criu, pid, "/run/netns/"+ns)
		}},
	}
	for _, c := range cases {
		t.Run(c.rule, func(t *testing.T) {
			log := c.make(t)
			res, err := set.ScanFile(log)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Matches) == 0 || res.Matches[0].ID != c.rule {
				t.Fatalf("matcher found %+v in %s; want first %s. Error lines: %q", ids(res), log, c.rule, res.Unmatched)
			}
			t.Logf("%s: %s", c.rule, res.Matches[0].Line)
			if !samePinned(set.Rule(c.rule), res.Matches[0].Line) {
				t.Errorf("rule %s: real line %q differs from every pinned sample (update rules.json)", c.rule, res.Matches[0].Line)
			}
		})
	}
}

func ids(r *knownissues.Result) []string {
	var out []string
	for _, m := range r.Matches {
		out = append(out, m.ID)
	}
	return out
}

// samePinned reports whether line equals a pinned sample once timestamps, pids, fds, paths and
// numbers are masked: the message CRIU printed is still the one the rule documents.
func samePinned(r *knownissues.Rule, line string) bool {
	for _, s := range r.Samples {
		if mask(s) == mask(line) {
			return true
		}
	}
	return false
}

func mask(s string) string {
	var b strings.Builder
	inNum := false
	for _, f := range strings.Fields(s) {
		if strings.HasPrefix(f, "/") || strings.HasPrefix(f, "./") {
			f = "PATH"
		}
		b.WriteByte(' ')
		for _, r := range f {
			if r >= '0' && r <= '9' {
				if !inNum {
					b.WriteByte('N')
				}
				inNum = true
				continue
			}
			inNum = false
			b.WriteRune(r)
		}
	}
	return b.String()
}

func newNetns(t *testing.T, loUp bool) string {
	t.Helper()
	testenv.Command(t, "ip")
	ns := fmt.Sprintf("ck-ki-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	if loUp {
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	return ns
}

// waitChildSleep returns the pid of the process exec'ed by `ip netns exec ... setsid sleep` (the
// same pid once exec has happened: ip execs setsid which execs sleep, forking only when needed).
func waitChildSleep(t *testing.T, pid int) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(b)) == "sleep" {
			return pid
		}
		// setsid forks when it is a process group leader; look for a child named sleep.
		if kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)); err == nil {
			for _, k := range strings.Fields(string(kids)) {
				if b, err := os.ReadFile("/proc/" + k + "/comm"); err == nil && strings.TrimSpace(string(b)) == "sleep" {
					var c int
					fmt.Sscan(k, &c)
					return c
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no sleep process under pid %d", pid)
	return 0
}

func killTree(pid int) {
	if pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
