package workload

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Workloads of the doctor and ghosts packages: each holds one kind of object CRIU cannot dump (or
// can dump only within limits). Ready info lists what was made, e.g. "fd=5" or "files=a,b".
func init() {
	// doctor-ghost SPEC...: for each SPEC a deleted-but-open file in Dir. SPEC "N" writes N random
	// bytes; "N@OFF" writes N random bytes at offset OFF (a sparse file of size OFF+N); "mapN"
	// prefixes (e.g. "map8192") keep the file only as a shared mapping (fd closed); a "shm:" prefix
	// (before "map") puts the file in /dev/shm (tmpfs: no FIEMAP) instead of Dir. Ready info:
	// "files=PATH,PATH fds=FD,FD".
	Register("doctor-ghost", runDoctorGhost)
	// doctor-uffd: holds a userfaultfd (UFFDIO_API done). Ready info: "fd=FD".
	Register("doctor-uffd", func(c *Ctx) error {
		fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
		if errno != 0 {
			return fmt.Errorf("userfaultfd: %w (root or vm.unprivileged_userfaultfd=1 needed)", errno)
		}
		api := struct{ API, Features, Ioctls uint64 }{API: 0xAA}
		const uffdioAPI = 0xc018aa3f
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, uffdioAPI, uintptr(unsafe.Pointer(&api))); errno != 0 {
			return fmt.Errorf("UFFDIO_API: %w", errno)
		}
		c.Keep(int(fd))
		return c.Ready(fmt.Sprintf("fd=%d", fd))
	})
	// doctor-iouring: holds an io_uring instance made by the raw io_uring_setup syscall. Ready info: "fd=FD".
	Register("doctor-iouring", func(c *Ctx) error {
		var params [120]byte // struct io_uring_params, all zero: default flags
		fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 8, uintptr(unsafe.Pointer(&params[0])), 0)
		if errno != 0 {
			return fmt.Errorf("io_uring_setup: %w (kernel.io_uring_disabled?)", errno)
		}
		c.Keep(int(fd))
		return c.Ready(fmt.Sprintf("fd=%d", fd))
	})
	// doctor-perf: holds a software perf event (cpu-clock of itself). Ready info: "fd=FD".
	Register("doctor-perf", func(c *Ctx) error {
		attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK,
			Size: uint32(unsafe.Sizeof(unix.PerfEventAttr{})), Bits: unix.PerfBitDisabled}
		fd, err := unix.PerfEventOpen(&attr, 0, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if err != nil {
			return fmt.Errorf("perf_event_open: %w (kernel.perf_event_paranoid?)", err)
		}
		c.Keep(fd)
		return c.Ready(fmt.Sprintf("fd=%d", fd))
	})
	// doctor-anon: holds an anon inode CRIU has no dumper for: an fsopen("tmpfs") filesystem context
	// (anon_inode:[fscontext]). Ready info: "fd=FD".
	Register("doctor-anon", func(c *Ctx) error {
		fd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
		if err != nil {
			return fmt.Errorf("fsopen tmpfs: %w", err)
		}
		c.Keep(fd)
		return c.Ready(fmt.Sprintf("fd=%d", fd))
	})
	// doctor-chr [PATH]: holds an open character device CRIU cannot dump (default /dev/kvm; e.g.
	// /dev/fuse, /dev/vfio/vfio). Ready info: "fd=FD path=PATH".
	Register("doctor-chr", func(c *Ctx) error {
		path := "/dev/kvm"
		if len(c.Args) > 0 {
			path = c.Args[0]
		}
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", path, err)
		}
		c.Keep(fd)
		return c.Ready(fmt.Sprintf("fd=%d path=%s", fd, path))
	})
	// doctor-unix-connect PATH: a unix stream socket connected to PATH, a listener outside the tree
	// (CRIU refuses external unix stream peers). Ready info: "fd=FD".
	Register("doctor-unix-connect", func(c *Ctx) error {
		if len(c.Args) != 1 {
			return fmt.Errorf("doctor-unix-connect: want one socket path")
		}
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Connect(fd, &unix.SockaddrUnix{Name: c.Args[0]}); err != nil {
			return fmt.Errorf("connect %s: %w", c.Args[0], err)
		}
		c.Keep(fd)
		return c.Ready(fmt.Sprintf("fd=%d", fd))
	})
	// doctor-kvm [mmap]: KVM_CREATE_VM + KVM_CREATE_VCPU on /dev/kvm, then closes /dev/kvm (the VM
	// keeps KVM alive). With "mmap" it also maps the vCPU's kvm_run area. Ready info: "vm=FD vcpu=FD".
	Register("doctor-kvm", func(c *Ctx) error {
		const (
			kvmCreateVM      = 0xAE01
			kvmGetVcpuMmapSz = 0xAE04
			kvmCreateVcpu    = 0xAE41
		)
		kfd, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/kvm: %w", err)
		}
		defer unix.Close(kfd)
		vm, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(kfd), kvmCreateVM, 0)
		if errno != 0 {
			return fmt.Errorf("KVM_CREATE_VM: %w", errno)
		}
		vcpu, _, errno := unix.Syscall(unix.SYS_IOCTL, vm, kvmCreateVcpu, 0)
		if errno != 0 {
			return fmt.Errorf("KVM_CREATE_VCPU: %w", errno)
		}
		unix.CloseOnExec(int(vm))
		unix.CloseOnExec(int(vcpu))
		c.Keep(int(vm), int(vcpu))
		if len(c.Args) > 0 && c.Args[0] == "mmap" {
			sz, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(kfd), kvmGetVcpuMmapSz, 0)
			if errno != 0 {
				return fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", errno)
			}
			m, err := unix.Mmap(int(vcpu), 0, int(sz), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
			if err != nil {
				return fmt.Errorf("mmap kvm_run: %w", err)
			}
			c.Keep(m)
		}
		return c.Ready(fmt.Sprintf("vm=%d vcpu=%d", vm, vcpu))
	})
}

func runDoctorGhost(c *Ctx) error {
	var paths, fds []string
	for i, spec := range c.Args {
		mapOnly, dir := false, c.Dir
		if s, ok := strings.CutPrefix(spec, "shm:"); ok {
			dir, spec = "/dev/shm", s
		}
		if s, ok := strings.CutPrefix(spec, "map"); ok {
			mapOnly, spec = true, s
		}
		nStr, offStr, sparse := strings.Cut(spec, "@")
		n, err := strconv.ParseInt(nStr, 10, 64)
		var off int64
		if err == nil && sparse {
			off, err = strconv.ParseInt(offStr, 10, 64)
		}
		if err != nil || n < 0 || off < 0 {
			return fmt.Errorf("doctor-ghost: bad spec %q (want [shm:][map]N[@OFF])", c.Args[i])
		}
		path := filepath.Join(dir, fmt.Sprintf("ghost-%d.bin", i))
		if dir != c.Dir {
			path = filepath.Join(dir, fmt.Sprintf("criukit-ghost-%d-%d.bin", os.Getpid(), i))
		}
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		data := make([]byte, n)
		_, _ = rand.Read(data)
		if _, err := unix.Pwrite(fd, data, off); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		if err := unix.Fsync(fd); err != nil {
			return err
		}
		if mapOnly {
			size := int(off + n)
			if size == 0 {
				return fmt.Errorf("doctor-ghost: cannot map an empty file (%q)", c.Args[i])
			}
			m, err := unix.Mmap(fd, 0, size, unix.PROT_READ, unix.MAP_SHARED)
			if err != nil {
				return fmt.Errorf("mmap %s: %w", path, err)
			}
			c.Keep(m)
			unix.Close(fd)
			fd = -1
		} else {
			c.Keep(fd)
		}
		if err := os.Remove(path); err != nil {
			return err
		}
		paths = append(paths, path)
		fds = append(fds, strconv.Itoa(fd))
	}
	return c.Ready("files=" + strings.Join(paths, ",") + " fds=" + strings.Join(fds, ","))
}
