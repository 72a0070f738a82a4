package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNotSupported is returned when /dev/kvm is missing or unusable.
var ErrNotSupported = errors.New("kvm: /dev/kvm is not available")

// DevKVM is the KVM device.
const DevKVM = "/dev/kvm"

// vm is one live VM with one vCPU whose only memory slot is the VMM's guest RAM.
type vm struct {
	kvm, vm, vcpu int
	run           []byte
}

func openKVM() (int, error) {
	fd, err := unix.Open(DevKVM, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("%w: open %s: %v", ErrNotSupported, DevKVM, err)
	}
	v, err := ioctl(fd, kvmGetAPIVersion, 0)
	if err != nil || v != 12 {
		unix.Close(fd)
		return -1, fmt.Errorf("%w: KVM_GET_API_VERSION = %d (%v), want 12", ErrNotSupported, v, err)
	}
	return fd, nil
}

// newVM creates a VM and vCPU over mem (guest physical address 0). The vCPU is in its reset state.
func newVM(mem []byte) (_ *vm, err error) {
	v := &vm{kvm: -1, vm: -1, vcpu: -1}
	defer func() {
		if err != nil {
			v.close()
		}
	}()
	if v.kvm, err = openKVM(); err != nil {
		return nil, err
	}
	fd, err := ioctl(v.kvm, kvmCreateVM, 0)
	if err != nil {
		return nil, fmt.Errorf("kvm: KVM_CREATE_VM: %w", err)
	}
	v.vm = int(fd)
	// Intel VMX needs a TSS area for real mode; other flavours (AMD, PVM) reject or ignore it.
	_, _ = ioctl(v.vm, kvmSetTSSAddr, 0xfffbd000)
	region := userMemoryRegion{Slot: 0, GuestPhysAddr: 0, MemorySize: uint64(len(mem)), Addr: uint64(uintptr(unsafe.Pointer(&mem[0])))}
	if err := ioctlPtr(v.vm, kvmSetUserMemoryRegion, unsafe.Pointer(&region)); err != nil {
		return nil, fmt.Errorf("kvm: KVM_SET_USER_MEMORY_REGION (%d bytes at %#x): %w", len(mem), region.Addr, err)
	}
	fd, err = ioctl(v.vm, kvmCreateVCPU, 0)
	if err != nil {
		return nil, fmt.Errorf("kvm: KVM_CREATE_VCPU: %w", err)
	}
	v.vcpu = int(fd)
	size, err := ioctl(v.kvm, kvmGetVCPUMmapSize, 0)
	if err != nil {
		return nil, fmt.Errorf("kvm: KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	if v.run, err = unix.Mmap(v.vcpu, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("kvm: mmap kvm_run (%d bytes): %w", size, err)
	}
	return v, nil
}

// close releases everything CRIU cannot dump: the kvm_run mapping and the vcpu, vm and kvm fds.
func (v *vm) close() error {
	var errs []error
	if v.run != nil {
		errs = append(errs, unix.Munmap(v.run))
		v.run = nil
	}
	for _, fd := range []*int{&v.vcpu, &v.vm, &v.kvm} {
		if *fd >= 0 {
			errs = append(errs, unix.Close(*fd))
			*fd = -1
		}
	}
	return errors.Join(errs...)
}

func (v *vm) state() (State, error) {
	var s State
	if err := ioctlPtr(v.vcpu, kvmGetRegs, unsafe.Pointer(&s.Regs)); err != nil {
		return s, fmt.Errorf("kvm: KVM_GET_REGS: %w", err)
	}
	if err := ioctlPtr(v.vcpu, kvmGetSregs, unsafe.Pointer(&s.Sregs)); err != nil {
		return s, fmt.Errorf("kvm: KVM_GET_SREGS: %w", err)
	}
	return s, nil
}

func (v *vm) setState(s State) error {
	if err := ioctlPtr(v.vcpu, kvmSetSregs, unsafe.Pointer(&s.Sregs)); err != nil {
		return fmt.Errorf("kvm: KVM_SET_SREGS: %w", err)
	}
	if err := ioctlPtr(v.vcpu, kvmSetRegs, unsafe.Pointer(&s.Regs)); err != nil {
		return fmt.Errorf("kvm: KVM_SET_REGS: %w", err)
	}
	return nil
}

// exit is what one KVM_RUN returned.
type exit struct {
	reason uint32
	port   uint16
	value  uint32 // OUT data (up to 4 bytes)
}

// runOnce enters the guest until its next exit. EINTR (a signal for this thread) is reported as
// exitIntr.
func (v *vm) runOnce() (exit, error) {
	if _, err := ioctl(v.vcpu, kvmRun, 0); err != nil {
		if err == unix.EINTR || err == unix.EAGAIN {
			return exit{reason: exitIntr}, nil
		}
		return exit{}, fmt.Errorf("kvm: KVM_RUN: %w", err)
	}
	e := exit{reason: binary.LittleEndian.Uint32(v.run[runExitReason:])}
	if e.reason == exitIO && v.run[runIODir] == ioDirOut {
		e.port = binary.LittleEndian.Uint16(v.run[runIOPort:])
		size := int(v.run[runIOSize])
		off := binary.LittleEndian.Uint64(v.run[runIODataOff:])
		if size <= 4 && off+uint64(size) <= uint64(len(v.run)) {
			var b [4]byte
			copy(b[:], v.run[off:off+uint64(size)])
			e.value = binary.LittleEndian.Uint32(b[:])
		}
	}
	return e, nil
}

// State is the vCPU state the VMM keeps in its own memory while the VM is closed.
type State struct {
	Regs  Regs
	Sregs Sregs
}
