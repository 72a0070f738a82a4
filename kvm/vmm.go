package kvm

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/criukit/criukit/internal/procfs"
	"golang.org/x/sys/unix"
)

// Guest layout (guest physical addresses).
const (
	MemSize     = 64 << 10 // guest RAM
	CodeAddr    = 0x1000   // the guest program
	CounterAddr = 0x2000   // uint32 incremented by the guest
	OutPort     = 0x10     // the guest OUTs the counter here after each increment
)

// guestCode is the real-mode guest (position independent, loaded at CodeAddr):
//
//	loop: incl 0x2000; movl 0x2000,%eax; outl %eax,$0x10; hlt; jmp loop
var guestCode = []byte{
	0x66, 0xff, 0x06, 0x00, 0x20, // incl 0x2000
	0x66, 0xa1, 0x00, 0x20, // movl 0x2000,%eax
	0x66, 0xe7, 0x10, // outl %eax,$0x10
	0xf4,       // hlt
	0xeb, 0xf1, // jmp loop
}

// Signals the VMM serves (see Serve).
const (
	SigPark   = syscall.SIGUSR2 // save the vCPU, close the VM: ready for criu dump
	SigResume = syscall.SIGHUP  // re-create the VM over the guest RAM and continue
)

// EnvStatus names the status file when a VMM is started without an explicit path.
const EnvStatus = "CRIUKIT_KVM_STATUS"

// Config configures a VMM.
type Config struct {
	Tick       time.Duration // pause after each guest tick (HLT); 0 means 10ms
	StatusPath string        // JSON Status written here (temp + rename) on every change; "" for none
	// AutoResume re-creates the VM by itself when, while parked, it finds it runs in a restored
	// process (its start time in /proc/self/stat changed), so no resume signal is needed.
	AutoResume bool
}

// Status is the VMM's observable state (also written as JSON to Config.StatusPath).
type Status struct {
	Pid        int       `json:"pid"`
	State      string    `json:"state"`           // "running", "parked", "stopped"
	Counter    uint32    `json:"counter"`         // the guest counter, read from guest RAM
	LastOut    uint32    `json:"last_out"`        // the last value the guest wrote to OutPort
	Generation int       `json:"vm_generation"`   // VMs created so far (1 + resumes)
	Parks      int       `json:"parks"`           // times the VM was saved and closed
	Exits      uint64    `json:"exits"`           // KVM_RUN exits in this VM generation and before
	ParkedAt   uint32    `json:"parked_counter"`  // counter when last parked
	ResumedAt  uint32    `json:"resumed_counter"` // counter when the VM was last re-created
	SavedRIP   uint64    `json:"saved_rip"`       // guest RIP saved at the last park
	Restored   bool      `json:"restored"`        // this process is a CRIU-restored copy
	AutoResume bool      `json:"auto_resumed"`    // the last resume was triggered by restore detection
	Updated    time.Time `json:"updated"`
	Error      string    `json:"error,omitempty"`
}

// VMM runs the counter guest. Create it with New and drive it with Serve (or Run plus Park/Resume).
type VMM struct {
	cfg   Config
	mem   []byte // guest RAM: a private anonymous mapping, dumped by CRIU like any memory
	vm    *vm    // nil while parked
	saved State  // vCPU state kept in the VMM's memory while parked
	boot  uint64 // process start time at first boot
	park  uint64 // process start time when parked

	reqs    chan request
	stopped chan struct{} // closed when Run returns

	mu     sync.Mutex
	status Status
}

type request struct {
	park bool
	done chan error
}

// New maps guest RAM, loads the guest and creates its VM (state "running", not yet executing).
func New(cfg Config) (*VMM, error) {
	if cfg.Tick <= 0 {
		cfg.Tick = 10 * time.Millisecond
	}
	mem, err := unix.Mmap(-1, 0, MemSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("kvm: mmap guest RAM: %w", err)
	}
	copy(mem[CodeAddr:], guestCode)
	m := &VMM{cfg: cfg, mem: mem, reqs: make(chan request), stopped: make(chan struct{})}
	m.boot = procfs.StartTime(0) // differs in a process CRIU restored
	m.status = Status{Pid: os.Getpid(), State: "running"}
	if err := m.create(nil); err != nil {
		unix.Munmap(mem)
		return nil, err
	}
	return m, nil
}

// create makes a new VM; with s == nil the vCPU starts at CodeAddr in real mode.
func (m *VMM) create(s *State) error {
	v, err := newVM(m.mem)
	if err != nil {
		return err
	}
	if s == nil {
		st, err := v.state()
		if err != nil {
			v.close()
			return err
		}
		for _, seg := range []*Segment{&st.Sregs.CS, &st.Sregs.DS, &st.Sregs.ES, &st.Sregs.FS, &st.Sregs.GS, &st.Sregs.SS} {
			seg.Base, seg.Selector = 0, 0
		}
		st.Regs = Regs{RIP: CodeAddr, RFLAGS: 2, RSP: 0xf000}
		s = &st
	}
	if err := v.setState(*s); err != nil {
		v.close()
		return err
	}
	m.vm = v
	m.mu.Lock()
	m.status.Generation++
	m.mu.Unlock()
	return nil
}

// Counter reads the guest counter from guest RAM.
func (m *VMM) Counter() uint32 { return binary.LittleEndian.Uint32(m.mem[CounterAddr:]) }

// Status returns a snapshot of the VMM state.
func (m *VMM) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.status
	s.Counter = m.Counter()
	return s
}

// Park asks the running loop to save the vCPU state and close the VM. It returns when done.
func (m *VMM) Park() error { return m.request(true) }

// Resume asks the loop to re-create the VM from the saved state. It returns when done.
func (m *VMM) Resume() error { return m.request(false) }

func (m *VMM) request(park bool) error {
	r := request{park: park, done: make(chan error, 1)}
	select {
	case m.reqs <- r:
		return <-r.done
	case <-m.stopped:
		return errStopped
	}
}

func (m *VMM) doPark() error {
	if m.vm == nil {
		return nil
	}
	s, err := m.vm.state()
	if err != nil {
		return err
	}
	m.saved = s
	if err := m.vm.close(); err != nil {
		return fmt.Errorf("kvm: close VM: %w", err)
	}
	m.vm = nil
	m.park = procfs.StartTime(0)
	m.mu.Lock()
	m.status.State = "parked"
	m.status.Parks++
	m.status.ParkedAt = m.Counter()
	m.status.SavedRIP = s.Regs.RIP
	m.mu.Unlock()
	return nil
}

func (m *VMM) doResume(auto bool) error {
	if m.vm != nil {
		return nil
	}
	if err := m.create(&m.saved); err != nil {
		return err
	}
	m.mu.Lock()
	m.status.State = "running"
	m.status.ResumedAt = m.Counter()
	m.status.AutoResume = auto
	m.status.Restored = procfs.StartTime(0) != m.boot
	m.mu.Unlock()
	return nil
}

// Run executes the guest until ctx is done: one guest tick (increment, OUT, HLT), then a pause of
// Config.Tick, serving Park/Resume requests in between. It returns with the VM closed.
func (m *VMM) Run(ctx context.Context) error {
	runtime.LockOSThread() // all vCPU ioctls from one thread
	defer runtime.UnlockOSThread()
	defer close(m.stopped)
	tick := time.NewTimer(0)
	defer tick.Stop()
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	lastWrite := time.Time{}
	var runErr error
	for runErr == nil {
		select {
		case <-ctx.Done():
			m.finish("stopped", nil)
			return nil
		case r := <-m.reqs:
			var err error
			if r.park {
				err = m.doPark()
			} else {
				err = m.doResume(false)
				if err == nil {
					tick.Reset(0)
				}
			}
			m.writeStatus()
			r.done <- err
		case <-poll.C:
			if m.vm == nil && m.cfg.AutoResume && procfs.StartTime(0) != m.park {
				if err := m.doResume(true); err != nil {
					m.setError(err)
				} else {
					tick.Reset(0)
				}
			}
			if time.Since(lastWrite) >= 100*time.Millisecond {
				m.writeStatus()
				lastWrite = time.Now()
			}
		case <-tick.C:
			if m.vm == nil {
				continue
			}
			if err := m.guestTick(); err != nil {
				runErr = err
				break
			}
			tick.Reset(m.cfg.Tick)
		}
	}
	m.finish("stopped", runErr)
	return runErr
}

// guestTick runs the guest until it halts (one counter increment).
func (m *VMM) guestTick() error {
	for i := 0; i < 1000; i++ {
		e, err := m.vm.runOnce()
		if err != nil {
			return err
		}
		m.mu.Lock()
		m.status.Exits++
		m.mu.Unlock()
		switch e.reason {
		case exitHLT:
			return nil
		case exitIO:
			if e.port == OutPort {
				m.mu.Lock()
				m.status.LastOut = e.value
				m.mu.Unlock()
			}
		case exitIntr:
		default:
			st, _ := m.vm.state()
			return fmt.Errorf("kvm: unexpected exit reason %d at guest rip %#x", e.reason, st.Regs.RIP)
		}
	}
	return fmt.Errorf("kvm: guest did not halt within 1000 exits")
}

func (m *VMM) setError(err error) {
	m.mu.Lock()
	m.status.Error = err.Error()
	m.mu.Unlock()
	m.writeStatus()
}

func (m *VMM) finish(state string, err error) {
	if m.vm != nil {
		m.vm.close()
		m.vm = nil
	}
	m.mu.Lock()
	m.status.State = state
	if err != nil {
		m.status.Error = err.Error()
	}
	m.mu.Unlock()
	m.writeStatus()
}

func (m *VMM) writeStatus() {
	if m.cfg.StatusPath == "" {
		return
	}
	s := m.Status()
	s.Updated = time.Now()
	_ = WriteStatus(m.cfg.StatusPath, s)
}

// WriteStatus writes s as JSON to path atomically.
func WriteStatus(path string, s Status) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.tmp%d", path, os.Getpid())
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ReadStatus reads a status file written by a VMM.
func ReadStatus(path string) (Status, error) {
	var s Status
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("kvm: status file %s: %w", path, err)
	}
	return s, nil
}

// Serve runs the VMM until ctx is done, parking on SigPark and resuming on SigResume.
func (m *VMM) Serve(ctx context.Context) error {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, SigPark, SigResume)
	defer signal.Stop(sig)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-sig:
				var err error
				if s == SigPark {
					err = m.Park()
				} else {
					err = m.Resume()
				}
				if err != nil {
					m.setError(err)
				}
			}
		}
	}()
	m.writeStatus()
	return m.Run(ctx)
}

// DefaultStatusPath is where a VMM without a configured path writes its status.
func DefaultStatusPath(dir string) string { return filepath.Join(dir, "kvm-status.json") }

var errStopped = errors.New("kvm: VMM stopped")
