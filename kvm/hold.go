package kvm

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Hold is a VM that is created and never run: it keeps a /dev/kvm fd, a kvm-vm fd, a kvm-vcpu:0 fd
// and the vCPU's kvm_run mapping open, the objects that make a process undumpable by CRIU.
type Hold struct {
	KVM, VM, VCPU int // file descriptors
	v             *vm
	mem           []byte
}

// HoldFDs creates a Hold (one 64 KiB memory slot, one vCPU). Close releases it.
func HoldFDs() (*Hold, error) {
	mem, err := unix.Mmap(-1, 0, MemSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	v, err := newVM(mem)
	if err != nil {
		unix.Munmap(mem)
		return nil, err
	}
	return &Hold{KVM: v.kvm, VM: v.vm, VCPU: v.vcpu, v: v, mem: mem}, nil
}

// Close closes the fds and unmaps kvm_run and the guest memory.
func (h *Hold) Close() error {
	if h.v == nil {
		return nil
	}
	err := errors.Join(h.v.close(), unix.Munmap(h.mem))
	h.v, h.mem = nil, nil
	return err
}
