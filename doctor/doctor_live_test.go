package doctor_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/criukit/criukit/doctor"
	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/testenv"
	"github.com/criukit/criukit/report/knownissues"
)

func TestMain(m *testing.M) { harness.Main(m) }

// dumpLog dumps pid (leaving it running, no network lock) and returns the log and criu's error.
func dumpLog(t *testing.T, criu string, pid int, netns string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "dump.log")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := criurun.Dump(ctx, pid, criurun.Opts{Criu: criu, ImagesDir: filepath.Join(dir, "images"), LogFile: log, Netns: netns,
		Args: []string{"--leave-running", "--network-lock", "skip"}})
	return log, err
}

// TestTreeObjects: for each workload holding an object CRIU cannot dump, doctor reports it as an
// error with pid/fd and a fix; a real criu dump then fails, and the known-issue matcher names the
// same id in criu's log. The sleep workload is the control: no errors, and the dump succeeds.
func TestTreeObjects(t *testing.T) {
	criu := harness.Criu(t)
	cases := []struct {
		id       string
		workload string
		args     []string
		needFile string
		fd       bool // the finding names an fd
	}{
		{"userfaultfd", "doctor-uffd", nil, "", true},
		{"io-uring", "doctor-iouring", nil, "", true},
		{"perf-event", "doctor-perf", nil, "", true},
		{"kvm", "doctor-kvm", nil, "/dev/kvm", true},
		{"kvm", "doctor-kvm", []string{"mmap"}, "/dev/kvm", false},
		{"unsupported-chrdev", "doctor-chr", nil, "/dev/kvm", true},
		{"unsupported-anon-inode", "doctor-anon", nil, "", true},
		{"ghost-limit", "doctor-ghost", []string{"3000000"}, "", true},
		{"tcp-established", "tcp", nil, "", true},
		{"external-unix-socket", "doctor-unix-connect", []string{"LISTENER"}, "", true},
		{"", "sleep", nil, "", false},
	}
	for _, c := range cases {
		name := c.workload + strings.Join(c.args, "-")
		if c.id == "external-unix-socket" {
			name = c.workload
		}
		t.Run(name, func(t *testing.T) {
			if c.needFile != "" {
				testenv.File(t, c.needFile)
			}
			args := c.args
			if len(args) == 1 && args[0] == "LISTENER" {
				args = []string{harness.UnixListener(t)}
			}
			p := harness.Start(t, c.workload, harness.WithArgs(args...))
			r, err := doctor.Run(context.Background(), doctor.Options{Pid: p.Pid, Criu: criu, NoCriu: true})
			if err != nil {
				t.Fatal(err)
			}
			var errs []doctor.Finding
			for _, f := range r.Findings {
				if f.Severity == doctor.SevError {
					errs = append(errs, f)
				}
			}
			log, derr := dumpLog(t, criu, p.Pid, "")
			if c.id == "" {
				if len(errs) != 0 {
					t.Fatalf("control: unexpected errors %+v", errs)
				}
				if derr != nil {
					t.Fatalf("control: doctor found nothing but criu failed: %v", derr)
				}
				return
			}
			if len(errs) == 0 || errs[0].ID != c.id {
				t.Fatalf("doctor errors %+v, want first %s", errs, c.id)
			}
			f := errs[0]
			if f.Pid != p.Pid || f.Fix == "" || f.What == "" || !strings.Contains(f.Where, fmt.Sprintf("pid %d", p.Pid)) {
				t.Errorf("finding lacks pid/where/fix: %+v", f)
			}
			if c.fd && !strings.Contains(f.Where, fmt.Sprintf("fd %d", f.FD)) {
				t.Errorf("finding does not name its fd: %+v", f)
			}
			if derr == nil {
				t.Fatalf("doctor predicted %s but criu dump succeeded", c.id)
			}
			res, err := knownissues.Default().ScanFile(log)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Matches) == 0 || res.Matches[0].ID != c.id {
				t.Fatalf("criu's log matched %+v, doctor said %s; errors: %q", res.Matches, c.id, res.Unmatched)
			}
			t.Logf("%s: doctor %q at %s; criu: %s", c.id, f.What, f.Where, res.Matches[0].Line)
		})
	}
}

// TestTCPEstablishedOption: with --tcp-established among the dump args the connection is only info.
func TestTCPEstablishedOption(t *testing.T) {
	harness.Criu(t)
	p := harness.Start(t, "tcp")
	r, err := doctor.Run(context.Background(), doctor.Options{Pid: p.Pid, NoCriu: true, DumpArgs: []string{"--tcp-established"}})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range r.Findings {
		if f.ID == "tcp-established" {
			found = true
			if f.Severity != doctor.SevInfo {
				t.Errorf("with --tcp-established: %+v", f)
			}
		}
	}
	if !found {
		t.Fatal("connection not reported")
	}
}

// TestNotSessionLeader and the mount namespace case use processes started outside the harness.
func TestSessionAndMounts(t *testing.T) {
	criu := harness.Criu(t)
	t.Run("not-session-leader", func(t *testing.T) {
		check(t, criu, harness.NotSessionLeader(t), "", "not-session-leader")
	})
	t.Run("session-leader-outside-pidns", func(t *testing.T) {
		p := harness.Start(t, "sleep", harness.WithNamespaces(syscall.CLONE_NEWPID), harness.InCallersSession())
		check(t, criu, p.Pid, "", "session-leader-outside-pidns")
	})
	t.Run("mntns-unreachable-sharing", func(t *testing.T) {
		testenv.Command(t, "ip")
		ns := fmt.Sprintf("ck-doc-%d", time.Now().UnixNano()%1e9)
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		_ = exec.Command("ip", "-n", ns, "link", "set", "lo", "up").Run()
		cmd := exec.Command("ip", "netns", "exec", ns, "setsid", "sleep", "600")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		deadline := time.Now().Add(5 * time.Second)
		for {
			if b, _ := exec.Command("cat", fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid)).Output(); strings.TrimSpace(string(b)) == "sleep" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("sleep did not start")
			}
			time.Sleep(20 * time.Millisecond)
		}
		check(t, criu, cmd.Process.Pid, "/run/netns/"+ns, "mntns-unreachable-sharing")
	})
}

func check(t *testing.T, criu string, pid int, netns, id string) {
	t.Helper()
	r, err := doctor.Run(context.Background(), doctor.Options{Pid: pid, NoCriu: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	ok := false
	for _, f := range r.Findings {
		got = append(got, f.ID)
		if f.ID == id && f.Severity == doctor.SevError {
			ok = true
		}
	}
	if !ok {
		t.Fatalf("doctor findings %v, want error %s", got, id)
	}
	log, derr := dumpLog(t, criu, pid, netns)
	if derr == nil {
		t.Fatalf("criu dump succeeded, doctor said %s", id)
	}
	res, _ := knownissues.Default().ScanFile(log)
	if len(res.Matches) == 0 || res.Matches[0].ID != id {
		t.Fatalf("criu log matched %+v, want %s", res.Matches, id)
	}
}

// TestSystem: kernel features come from criu check and the kernel config; on this machine
// (no soft-dirty) doctor warns about pre-dump exactly when criu says mem_dirty_track is missing.
func TestSystem(t *testing.T) {
	criu := harness.Criu(t)
	r, err := doctor.Run(context.Background(), doctor.Options{Criu: criu})
	if err != nil {
		t.Fatal(err)
	}
	feats := map[string]doctor.Feature{}
	for _, f := range r.Features {
		feats[f.Name] = f
	}
	for _, n := range []string{"soft-dirty", "userfaultfd", "pagemap-scan", "time-namespace"} {
		if _, ok := feats[n]; !ok {
			t.Errorf("feature %s not reported: %+v", n, r.Features)
		}
	}
	hasSD := exec.Command(criu, "check", "--feature", "mem_dirty_track").Run() == nil
	if feats["soft-dirty"].OK != hasSD {
		t.Errorf("soft-dirty ok=%v, criu says %v", feats["soft-dirty"].OK, hasSD)
	}
	warned := false
	for _, f := range r.Findings {
		warned = warned || f.ID == "no-soft-dirty-predump"
	}
	if warned == hasSD {
		t.Errorf("no-soft-dirty-predump finding present=%v with soft-dirty=%v", warned, hasSD)
	}
	if r.CriuVersion == "" || r.CheckAll == "" || r.Kernel == "" {
		t.Errorf("missing versions/check output: %+v", r)
	}
}

// TestOldCriu: Debian's CRIU 3.17 on a >= 6.16 kernel is an error finding (inet sockets).
func TestOldCriu(t *testing.T) {
	testenv.Root(t)
	const old = "/usr/sbin/criu"
	testenv.File(t, old)
	v, err := criurun.Version(old)
	if err != nil || !strings.HasPrefix(v, "3.") {
		testenv.Unavailable(t, "%s is not CRIU 3.x (%q %v)", old, v, err)
	}
	r, err := doctor.Run(context.Background(), doctor.Options{Criu: old})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]doctor.Finding{}
	for _, f := range r.Findings {
		got[f.ID] = f
	}
	f, ok := got["old-criu-inet-sockopt"]
	if !ok || f.Severity != doctor.SevError || !strings.Contains(f.What, "3.17") {
		t.Errorf("old-criu-inet-sockopt: %+v", f)
	}
	// criu check itself fails on this kernel (vDSO); the matcher names it.
	if f, ok := got["old-criu-vdso"]; !ok {
		t.Errorf("no old-criu-vdso finding from criu check --all: %q", r.CheckAll)
	} else {
		t.Logf("%s: %s", f.ID, f.Why)
	}
	// Its broken feature checks are not trusted: features come from the kernel config/probes.
	for _, ft := range r.Features {
		if strings.HasPrefix(ft.Source, "criu check") {
			t.Errorf("feature %s taken from a criu that cannot start: %+v", ft.Name, ft)
		}
	}
}
