package kvm

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/criukit/criukit/internal/testenv"
)

func TestABISizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"kvm_regs", unsafe.Sizeof(Regs{}), 144},
		{"kvm_segment", unsafe.Sizeof(Segment{}), 24},
		{"kvm_sregs", unsafe.Sizeof(Sregs{}), 312},
		{"kvm_userspace_memory_region", unsafe.Sizeof(userMemoryRegion{}), 32},
	} {
		if c.got != c.want {
			t.Errorf("sizeof %s = %d, want %d", c.name, c.got, c.want)
		}
	}
}

// kvmFDs lists this process's fds that point at KVM objects.
func kvmFDs(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		if strings.Contains(l, "kvm") {
			out = append(out, l)
		}
	}
	return out
}

func waitCounter(t *testing.T, m *VMM, atLeast uint32) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if m.Counter() >= atLeast {
			return
		}
	}
	t.Fatalf("guest counter stuck at %d (want >= %d); status %+v", m.Counter(), atLeast, m.Status())
}

func TestParkResumeInProcess(t *testing.T) {
	testenv.File(t, DevKVM)
	m, err := New(Config{Tick: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitCounter(t, m, 20)
	if err := m.Park(); err != nil {
		t.Fatal(err)
	}
	if fds := kvmFDs(t); len(fds) != 0 {
		t.Fatalf("parked VMM still holds KVM fds %v", fds)
	}
	if maps, _ := os.ReadFile("/proc/self/maps"); strings.Contains(string(maps), "anon_inode:kvm") {
		t.Fatalf("parked VMM still maps a KVM object")
	}
	parked := m.Counter()
	time.Sleep(50 * time.Millisecond)
	if c := m.Counter(); c != parked {
		t.Fatalf("counter moved from %d to %d while parked", parked, c)
	}
	st := m.Status()
	if st.State != "parked" || st.ParkedAt != parked || st.SavedRIP != CodeAddr+13 {
		t.Fatalf("status after park: %+v (want parked at %d, rip %#x)", st, parked, CodeAddr+13)
	}
	if err := m.Resume(); err != nil {
		t.Fatal(err)
	}
	waitCounter(t, m, parked+20)
	st = m.Status()
	if st.Generation != 2 || st.ResumedAt != parked || st.LastOut < parked {
		t.Fatalf("status after resume: %+v", st)
	}
}

func TestHoldFDs(t *testing.T) {
	testenv.File(t, DevKVM)
	h, err := HoldFDs()
	if err != nil {
		t.Fatal(err)
	}
	fds := kvmFDs(t)
	want := []string{"/dev/kvm", "anon_inode:kvm-vm", "anon_inode:kvm-vcpu:0"}
	for _, w := range want {
		if !strings.Contains(strings.Join(fds, " "), w) {
			t.Errorf("HoldFDs: no fd %s among %v", w, fds)
		}
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if fds := kvmFDs(t); len(fds) != 0 {
		t.Fatalf("after Close: KVM fds %v", fds)
	}
}
