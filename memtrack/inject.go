package memtrack

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"syscall"

	"github.com/criukit/criukit/internal/procfs"
	"golang.org/x/sys/unix"
)

// ErrInject wraps every failure of ptrace syscall injection.
var ErrInject = errors.New("syscall injection")

// injector runs system calls inside one thread of another process: it seizes the thread, stops
// it, points its registers at an existing `syscall` instruction (0f 05) of the target, single-steps
// over it and restores the original registers. All ptrace calls must come from one OS thread, so
// an injector is used only from the goroutine that created it, with runtime.LockOSThread held.
type injector struct {
	tid     int
	saved   unix.PtraceRegs
	insn    uint64 // address of a 0f 05 pair in an executable mapping of the target
	pending []syscall.Signal
}

// seize stops tid (PTRACE_SEIZE + PTRACE_INTERRUPT) and finds a syscall instruction to use.
// The caller must hold runtime.LockOSThread until detach.
func seize(tid int) (*injector, error) {
	insn, err := findSyscallInsn(tid)
	if err != nil {
		return nil, err
	}
	// PTRACE_O_SUSPEND_SECCOMP (as criu does for its parasite): a container's seccomp profile
	// (podman's, docker's) refuses userfaultfd(); the injected syscalls must not be filtered.
	// It needs CAP_SYS_ADMIN; without it the plain seize is tried.
	if _, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(tid), 0, unix.PTRACE_O_SUSPEND_SECCOMP, 0, 0); e != 0 {
		if err := unix.PtraceSeize(tid); err != nil {
			return nil, fmt.Errorf("%w: PTRACE_SEIZE pid %d (needs CAP_SYS_PTRACE; is it traced already, e.g. by criu or gdb?): %v", ErrInject, tid, err)
		}
	}
	in := &injector{tid: tid, insn: insn}
	if err := unix.PtraceInterrupt(tid); err != nil {
		_ = unix.PtraceDetach(tid)
		return nil, fmt.Errorf("%w: PTRACE_INTERRUPT pid %d: %v", ErrInject, tid, err)
	}
	if _, err := in.wait(); err != nil {
		_ = unix.PtraceDetach(tid)
		return nil, err
	}
	if err := unix.PtraceGetRegs(tid, &in.saved); err != nil {
		_ = unix.PtraceDetach(tid)
		return nil, fmt.Errorf("%w: PTRACE_GETREGS pid %d: %v", ErrInject, tid, err)
	}
	return in, nil
}

// wait waits for the next stop of the tracee and remembers signals it must get back later.
func (in *injector) wait() (unix.WaitStatus, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(in.tid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return ws, fmt.Errorf("%w: wait for pid %d: %v", ErrInject, in.tid, err)
		}
		break
	}
	if ws.Exited() || ws.Signaled() {
		return ws, fmt.Errorf("%w: pid %d ended while stopped for injection (%v)", ErrInject, in.tid, ws)
	}
	if !ws.Stopped() {
		return ws, fmt.Errorf("%w: pid %d: unexpected wait status %#x", ErrInject, in.tid, uint32(ws))
	}
	// A signal-delivery stop (not an event/group stop) swallows the signal unless we pass it on.
	if sig := ws.StopSignal(); ws.TrapCause() <= 0 && sig != unix.SIGTRAP {
		in.pending = append(in.pending, sig)
	}
	return ws, nil
}

// call runs syscall nr with up to 6 arguments in the tracee and returns its raw result.
func (in *injector) call(nr uintptr, args ...uint64) (int64, error) {
	if len(args) > 6 {
		return 0, fmt.Errorf("%w: %d arguments", ErrInject, len(args))
	}
	var a [6]uint64
	copy(a[:], args)
	regs := in.saved
	regs.Rip = in.insn
	regs.Rax = uint64(nr)
	regs.Orig_rax = ^uint64(0) // not in a syscall: no restart processing on resume
	regs.Rdi, regs.Rsi, regs.Rdx, regs.R10, regs.R8, regs.R9 = a[0], a[1], a[2], a[3], a[4], a[5]
	if err := unix.PtraceSetRegs(in.tid, &regs); err != nil {
		return 0, fmt.Errorf("%w: PTRACE_SETREGS pid %d: %v", ErrInject, in.tid, err)
	}
	// Single-step until the syscall instruction has run; interrupt and signal stops in between
	// leave the tracee at the instruction, so step again.
	for i := 0; i < 32; i++ {
		if err := unix.PtraceSingleStep(in.tid); err != nil {
			return 0, fmt.Errorf("%w: PTRACE_SINGLESTEP pid %d: %v", ErrInject, in.tid, err)
		}
		if _, err := in.wait(); err != nil {
			return 0, err
		}
		if err := unix.PtraceGetRegs(in.tid, &regs); err != nil {
			return 0, fmt.Errorf("%w: PTRACE_GETREGS pid %d: %v", ErrInject, in.tid, err)
		}
		if regs.Rip == in.insn+2 {
			return int64(regs.Rax), nil
		}
		if regs.Rip != in.insn {
			return 0, fmt.Errorf("%w: pid %d is at %#x, neither at nor after the syscall at %#x", ErrInject, in.tid, regs.Rip, in.insn)
		}
	}
	return 0, fmt.Errorf("%w: pid %d did not execute the injected syscall after 32 steps", ErrInject, in.tid)
}

// detach restores the original registers, lets the tracee go and re-sends signals it received
// while stopped.
func (in *injector) detach() error {
	var first error
	if err := unix.PtraceSetRegs(in.tid, &in.saved); err != nil {
		first = fmt.Errorf("%w: restore registers of pid %d: %v", ErrInject, in.tid, err)
	}
	if err := unix.PtraceDetach(in.tid); err != nil && first == nil {
		first = fmt.Errorf("%w: PTRACE_DETACH pid %d: %v", ErrInject, in.tid, err)
	}
	for _, sig := range in.pending {
		_ = unix.Tgkill(in.tid, in.tid, sig)
	}
	return first
}

// findSyscallInsn returns the address of a `syscall` instruction (bytes 0f 05) in the target,
// looking first in the vDSO and then in its other executable mappings. Executing from any address
// holding 0f 05 runs a syscall, so code is never patched.
func findSyscallInsn(pid int) (uint64, error) {
	vmas, err := ReadMaps(pid)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrInject, err)
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return 0, fmt.Errorf("%w: open memory of pid %d: %v", ErrInject, pid, err)
	}
	defer mem.Close()
	try := func(v VMA) (uint64, bool) {
		n := min(v.Len(), 4<<20)
		buf := make([]byte, n)
		got, _ := io.ReadFull(io.NewSectionReader(mem, int64(v.Start), int64(n)), buf)
		if i := bytes.Index(buf[:got], []byte{0x0f, 0x05}); i >= 0 {
			return v.Start + uint64(i), true
		}
		return 0, false
	}
	for _, v := range vmas {
		if v.Path == "[vdso]" {
			if a, ok := try(v); ok {
				return a, nil
			}
		}
	}
	for _, v := range vmas {
		if v.Perms[2] == 'x' && v.Path != "[vsyscall]" && v.Path != "[vdso]" {
			if a, ok := try(v); ok {
				return a, nil
			}
		}
	}
	return 0, fmt.Errorf("%w: no syscall instruction found in the executable mappings of pid %d", ErrInject, pid)
}

// injectUffdHere makes pid create a userfaultfd (O_CLOEXEC|O_NONBLOCK) by syscall injection, takes
// a duplicate of it with pidfd_getfd and closes the target's copy again by injection, so the target
// holds no uffd afterwards. The returned fd is ours; its context is bound to the target's mm.
func injectUffdHere(pid int) (fd int, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, fmt.Errorf("%w: pidfd_open(%d): %v", ErrInject, pid, err)
	}
	defer unix.Close(pidfd)
	tid, err := liveThread(pid)
	if err != nil {
		return -1, err
	}
	in, err := seize(tid)
	if err != nil {
		return -1, err
	}
	defer func() {
		if derr := in.detach(); derr != nil && err == nil {
			if fd >= 0 {
				unix.Close(fd)
			}
			fd, err = -1, derr
		}
	}()
	r, err := in.call(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK)
	if err == nil && r == -int64(unix.EPERM) {
		// Without CAP_SYS_PTRACE (processes of containers) and with vm.unprivileged_userfaultfd=0,
		// only a user-mode-only uffd is allowed. memtrack needs no more: async write-protect faults
		// are resolved in the kernel's fault path (user or kernel mode alike) and never reach the
		// uffd's fault handling, which is what UFFD_USER_MODE_ONLY restricts.
		r, err = in.call(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK|uffdUserModeOnly)
	}
	if err != nil {
		return -1, err
	}
	if r < 0 {
		e := syscall.Errno(-r)
		hint := ""
		if e == unix.EPERM {
			hint = " (the target lacks CAP_SYS_PTRACE and vm.unprivileged_userfaultfd=0)"
		}
		return -1, fmt.Errorf("%w: userfaultfd() in pid %d failed: %v%s", ErrInject, pid, e, hint)
	}
	target := int(r)
	fd, gerr := unix.PidfdGetfd(pidfd, target, 0)
	if r, err := in.call(unix.SYS_CLOSE, uint64(target)); err != nil || r < 0 {
		if fd >= 0 {
			unix.Close(fd)
		}
		if err == nil {
			err = fmt.Errorf("%w: close(%d) in pid %d: %v", ErrInject, target, pid, syscall.Errno(-r))
		}
		return -1, err
	}
	if gerr != nil {
		return -1, fmt.Errorf("%w: pidfd_getfd(pid %d, fd %d): %v", ErrInject, pid, target, gerr)
	}
	return fd, nil
}

// UffdFDs lists the fds of pid that are userfaultfds (anon_inode:[userfaultfd]).
func UffdFDs(pid int) ([]int, error) {
	fds, err := procfs.FDs(pid)
	if err != nil {
		return nil, fmt.Errorf("list fds of pid %d: %w", pid, err)
	}
	var out []int
	for _, d := range fds {
		if d.Link == "anon_inode:[userfaultfd]" {
			out = append(out, d.Num)
		}
	}
	return out, nil
}

// liveThread picks the thread to inject into: the main thread unless it is a zombie (a program
// whose main thread called pthread_exit), else the first live one.
func liveThread(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, fmt.Errorf("%w: list threads of pid %d: %v", ErrInject, pid, err)
	}
	tids := []int{pid}
	for _, e := range ents {
		var t int
		if _, err := fmt.Sscan(e.Name(), &t); err == nil && t != pid {
			tids = append(tids, t)
		}
	}
	for _, t := range tids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, t))
		if err != nil {
			continue
		}
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X' {
			return t, nil
		}
	}
	return 0, fmt.Errorf("%w: pid %d has no live thread", ErrInject, pid)
}
