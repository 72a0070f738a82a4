package kvm_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	criu "github.com/checkpoint-restore/go-criu/v8"
	"github.com/checkpoint-restore/go-criu/v8/rpc"
	"google.golang.org/protobuf/proto"

	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/testenv"
	"github.com/criukit/criukit/kvm"
)

const envHelper = "CRIUKIT_KVM_TEST_VMM"

// TestMain doubles as the VMM that TestDemo starts (this test binary re-executed with envHelper).
func TestMain(m *testing.M) {
	if os.Getenv(envHelper) == "1" {
		v, err := kvm.New(kvm.Config{Tick: 5 * time.Millisecond, StatusPath: os.Getenv(kvm.EnvStatus), AutoResume: true})
		if err != nil {
			os.Exit(3)
		}
		_ = v.Serve(context.Background())
		os.Exit(0)
	}
	harness.Main(m)
}

func waitStatus(t *testing.T, path string, ok func(kvm.Status) bool) kvm.Status {
	t.Helper()
	var last kvm.Status
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		s, err := kvm.ReadStatus(path)
		if err == nil {
			if s.Error != "" {
				t.Fatalf("VMM error: %s", s.Error)
			}
			if ok(s) {
				return s
			}
			last = s
		}
	}
	t.Fatalf("status %s never matched; last %+v", path, last)
	return last
}

// The workload VMM is checkpointed by criu with the action script (pre-dump parks it), reaped,
// restored, and its guest counter continues from the value it had at the dump.
func TestCheckpointRestoreCounterContinues(t *testing.T) {
	testenv.File(t, kvm.DevKVM)
	harness.Criu(t)
	p := harness.Start(t, "kvm-counter", harness.WithArgs("5ms"))
	status := strings.TrimPrefix(p.Info, "status=")
	before := waitStatus(t, status, func(s kvm.Status) bool { return s.State == "running" && s.Counter >= 20 })
	script := filepath.Join(t.TempDir(), "action.sh")
	if err := os.WriteFile(script, []byte(kvm.ActionScript(status)), 0o755); err != nil {
		t.Fatal(err)
	}
	d := p.Dump(t, "--action-script", script) // waits until the dumped task is reaped
	parked, err := kvm.ReadStatus(status)
	if err != nil {
		t.Fatal(err)
	}
	if parked.State != "parked" || parked.ParkedAt < before.Counter || parked.Parks != 1 {
		t.Fatalf("status after dump: %+v (want parked at >= %d)", parked, before.Counter)
	}
	r := d.Restore(t, "--action-script", script)
	if r.Pid != p.Pid {
		t.Errorf("restored pid %d, dumped pid %d", r.Pid, p.Pid)
	}
	resumed := waitStatus(t, status, func(s kvm.Status) bool { return s.State == "running" && s.Generation == parked.Generation+1 })
	after := waitStatus(t, status, func(s kvm.Status) bool { return s.Counter >= parked.ParkedAt+20 })
	if !after.Restored || resumed.ResumedAt != parked.ParkedAt || after.Parks != 1 {
		t.Fatalf("after restore: %+v; want restored, resumed at %d", after, parked.ParkedAt)
	}
	t.Logf("counter %d before dump, parked at %d (rip %#x), resumed at %d, now %d (VM generation %d)",
		before.Counter, parked.ParkedAt, parked.SavedRIP, resumed.ResumedAt, after.Counter, after.Generation)
	r.Check(t)
}

// Demo runs the whole cycle itself, here with signals instead of the action script.
func TestDemo(t *testing.T) {
	testenv.File(t, kvm.DevKVM)
	criu := harness.Criu(t)
	for _, signals := range []bool{false, true} {
		var log strings.Builder
		t.Setenv(envHelper, "1")
		res, err := kvm.Demo(context.Background(), kvm.DemoOptions{
			Argv: []string{os.Args[0]}, Criu: criu, Dir: t.TempDir(), Count: 300 * time.Millisecond,
			Signals: signals, Progress: &log,
		})
		t.Logf("signals=%v:\n%s", signals, log.String())
		if err != nil {
			t.Fatal(err)
		}
		if res.After.Counter <= res.Parked.ParkedAt || res.After.ResumedAt != res.Parked.ParkedAt {
			t.Fatalf("demo result %+v", res)
		}
	}
}

// Without cooperation criu refuses a process holding KVM objects: this is why the VMM parks.
func TestHoldIsNotDumpable(t *testing.T) {
	testenv.File(t, kvm.DevKVM)
	criu := harness.Criu(t)
	p := harness.Start(t, "kvm-hold")
	dir := t.TempDir()
	err := criurun.Dump(context.Background(), p.Pid, criurun.Opts{Criu: criu, ImagesDir: dir, Args: []string{"--leave-running"}})
	var ce *criurun.Error
	if !errors.As(err, &ce) {
		t.Fatalf("criu dump of a KVM holder: err %v, want a criu failure", err)
	}
	if !strings.Contains(strings.Join(ce.Lines, "\n"), "kvm") {
		t.Errorf("criu failed without naming kvm: %v", ce.Lines)
	}
	if !p.Alive() {
		t.Fatalf("kvm-hold pid %d died in the failed dump", p.Pid)
	}
	t.Logf("criu: %s", strings.Join(ce.Lines, " | "))
}

// The same cycle through CRIU's RPC (criu swrk via go-criu) with kvm.Notify: the pre-dump
// notification parks the VMM, post-resume resumes the restored one.
func TestRPCNotify(t *testing.T) {
	testenv.File(t, kvm.DevKVM)
	criuPath := harness.Criu(t)
	p := harness.Start(t, "kvm-counter", harness.WithArgs("5ms"))
	status := strings.TrimPrefix(p.Info, "status=")
	waitStatus(t, status, func(s kvm.Status) bool { return s.Counter >= 10 })
	dir := t.TempDir()
	imgs, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer imgs.Close()
	opts := func() *rpc.CriuOpts {
		return &rpc.CriuOpts{
			ImagesDirFd: proto.Int32(int32(imgs.Fd())),
			LogLevel:    proto.Int32(4),
			NetworkLock: rpc.CriuNetworkLockMethod_NFTABLES.Enum(),
		}
	}
	n := &kvm.Notify{Pid: p.Pid, StatusPath: status}
	c := criu.MakeCriu()
	c.SetCriuPath(criuPath)
	o := opts()
	o.Pid = proto.Int32(int32(p.Pid))
	o.LogFile = proto.String("dump.log")
	if err := c.Dump(o, n); err != nil {
		t.Fatalf("RPC dump: %v (log %s)", err, filepath.Join(dir, "dump.log"))
	}
	p.Kill() // reap the dumped task: restore reuses its pid
	parked, err := kvm.ReadStatus(status)
	if err != nil || parked.State != "parked" {
		t.Fatalf("after RPC dump: %+v %v", parked, err)
	}
	o = opts()
	o.LogFile = proto.String("restore.log")
	o.RstSibling = proto.Bool(true) // the restored VMM becomes our child
	c = criu.MakeCriu()
	c.SetCriuPath(criuPath)
	if err := c.Restore(o, n); err != nil {
		t.Fatalf("RPC restore: %v (log %s)", err, filepath.Join(dir, "restore.log"))
	}
	t.Cleanup(func() {
		syscall.Kill(p.Pid, syscall.SIGKILL)
		var ws syscall.WaitStatus
		syscall.Wait4(p.Pid, &ws, 0, nil)
	})
	after := waitStatus(t, status, func(s kvm.Status) bool { return s.State == "running" && s.Counter >= parked.ParkedAt+10 })
	if after.ResumedAt != parked.ParkedAt || after.Generation != parked.Generation+1 || !after.Restored {
		t.Fatalf("after RPC restore: %+v (parked at %d)", after, parked.ParkedAt)
	}
	t.Logf("RPC: parked at %d, resumed at %d (auto=%v), now %d", parked.ParkedAt, after.ResumedAt, after.AutoResume, after.Counter)
}
