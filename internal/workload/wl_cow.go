package workload

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// COW variants (research cow.md §1): what the tree does after the fork.
const (
	CowPlain       = "plain"       // children sleep
	CowMremap1     = "mremap1"     // child #0 moves one page from the middle of the region
	CowMremapBig   = "mremapbig"   // child #0 moves 25% of the region
	CowDiv10       = "div10"       // every child rewrites its own 10% of the pages
	CowParentDiv50 = "parentdiv50" // the parent rewrites every second page after the fork
)

// CowModes lists the variants of the cow workload.
var CowModes = []string{CowPlain, CowMremap1, CowMremapBig, CowDiv10, CowParentDiv50}

func init() {
	// cow [-mib N] [-children K] [-mode M] [-hugetlb]: N MiB of private anonymous memory (huge
	// pages with -hugetlb) filled with pseudo-random data, then K forked children (real fork, so
	// the memory is shared copy-on-write).
	// The check answers "ok root=<sum> c0=<sum> ..." with an FNV-1a checksum of each process'
	// region walked in the original page order (moved pages included).
	Register("cow", runCow)
}

// cowRegion is what a process checksums: npages pages at base, except pages [mvFrom, mvTo) which
// live at mv (after an mremap).
type cowRegion struct {
	base   unsafe.Pointer
	npages uintptr
	mvFrom uintptr
	mvTo   uintptr
	mv     unsafe.Pointer
}

const cowPage = 4096

// sum is FNV-1a over 64-bit words. It is nosplit and allocation-free because forked children run it
// without a Go runtime (only the forking thread exists there).
//
//go:nosplit
func (r *cowRegion) sum() uint64 {
	h := uint64(14695981039346656037)
	for p := uintptr(0); p < r.npages; p++ {
		pg := unsafe.Add(r.base, p*cowPage)
		if p >= r.mvFrom && p < r.mvTo {
			pg = unsafe.Add(r.mv, (p-r.mvFrom)*cowPage)
		}
		for o := uintptr(0); o < cowPage; o += 8 {
			h ^= *(*uint64)(unsafe.Add(pg, o))
			h *= 1099511628211
		}
	}
	return h
}

//go:nosplit
func cowScramble(base unsafe.Pointer, from, to uintptr, step uintptr, key uint64) {
	for p := from; p < to; p += step {
		pg := unsafe.Add(base, p*cowPage)
		for o := uintptr(0); o < cowPage; o += 8 {
			w := (*uint64)(unsafe.Add(pg, o))
			*w = (*w ^ key) | 1
		}
	}
}

// cowChild is everything a forked child needs, prepared before the fork.
type cowChild struct {
	reg      cowRegion
	path     []byte // Dir/sum-<i>, NUL-terminated
	tmp      []byte // Dir/sum-<i>.tmp, NUL-terminated
	readyW   uintptr
	readyR   uintptr
	mremap   bool // move [mvFrom, mvTo) to mv
	divFrom  uintptr
	divTo    uintptr
	divKey   uint64
	waitMask uint64
	atFD     int // AT_FDCWD (a variable: negative constants do not convert to uintptr)
}

// childMain runs in a forked child: no Go runtime, raw system calls only, never returns.
//
//go:nosplit
func childMain(c *cowChild) {
	syscall.RawSyscall(syscall.SYS_CLOSE, c.readyR, 0, 0)
	if c.mremap {
		n := (c.reg.mvTo - c.reg.mvFrom) * cowPage
		_, _, e := syscall.RawSyscall6(syscall.SYS_MREMAP, uintptr(unsafe.Add(c.reg.base, c.reg.mvFrom*cowPage)), n, n,
			unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, uintptr(c.reg.mv), 0)
		if e != 0 {
			syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 3, 0, 0)
		}
	}
	if c.divTo > c.divFrom {
		cowScramble(c.reg.base, c.divFrom, c.divTo, 1, c.divKey)
	}
	var one [1]byte
	one[0] = 'r'
	syscall.RawSyscall(syscall.SYS_WRITE, c.readyW, uintptr(unsafe.Pointer(&one[0])), 1)
	syscall.RawSyscall(syscall.SYS_CLOSE, c.readyW, 0, 0)
	for {
		sig, _, _ := syscall.RawSyscall6(syscall.SYS_RT_SIGTIMEDWAIT, uintptr(unsafe.Pointer(&c.waitMask)), 0, 0, 8, 0, 0)
		switch sig {
		case uintptr(syscall.SIGTERM):
			syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
		case uintptr(syscall.SIGUSR1):
			var buf [17]byte
			h := c.reg.sum()
			for i := 15; i >= 0; i-- {
				buf[i] = "0123456789abcdef"[h&15]
				h >>= 4
			}
			buf[16] = '\n'
			fd, _, e := syscall.RawSyscall6(syscall.SYS_OPENAT, uintptr(c.atFD), uintptr(unsafe.Pointer(&c.tmp[0])),
				unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644, 0, 0)
			if e != 0 {
				continue
			}
			syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&buf[0])), 17)
			syscall.RawSyscall(syscall.SYS_CLOSE, fd, 0, 0)
			syscall.RawSyscall6(syscall.SYS_RENAMEAT, uintptr(c.atFD), uintptr(unsafe.Pointer(&c.tmp[0])),
				uintptr(c.atFD), uintptr(unsafe.Pointer(&c.path[0])), 0, 0)
		}
	}
}

// forkCow forks a child that runs childMain. All signals are blocked around the fork (the child
// keeps them blocked and waits for SIGUSR1/SIGTERM with rt_sigtimedwait).
func forkCow(c *cowChild) (int, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	all, old := ^uint64(0), uint64(0)
	if _, _, e := syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&all)), uintptr(unsafe.Pointer(&old)), 8, 0, 0); e != 0 {
		return 0, e
	}
	pid, _, e := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if e == 0 && pid == 0 {
		childMain(c)
	}
	syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&old)), 0, 8, 0, 0)
	if e != 0 {
		return 0, fmt.Errorf("fork: %w", e)
	}
	return int(pid), nil
}

func cstr(s string) []byte { return append([]byte(s), 0) }

func runCow(c *Ctx) error {
	fs := flag.NewFlagSet("cow", flag.ContinueOnError)
	mib := fs.Int("mib", 8, "MiB of private anonymous memory")
	kids := fs.Int("children", 3, "number of forked children")
	mode := fs.String("mode", CowPlain, "variant: "+strings.Join(CowModes, ", "))
	hugetlb := fs.Bool("hugetlb", false, "map the region with MAP_HUGETLB (2 MiB pages; -mib rounded up to even; needs vm.nr_hugepages)")
	if err := fs.Parse(c.Args); err != nil {
		return err
	}
	known := false
	for _, m := range CowModes {
		known = known || m == *mode
	}
	if !known || *mib < 1 || *kids < 1 {
		return fmt.Errorf("cow: bad arguments (-mib %d -children %d -mode %q; modes %v)", *mib, *kids, *mode, CowModes)
	}
	size := *mib << 20
	flags := unix.MAP_PRIVATE | unix.MAP_ANONYMOUS
	if *hugetlb {
		size = (*mib + 1) / 2 * 2 << 20
		flags |= unix.MAP_HUGETLB
	}
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, flags)
	if err != nil {
		return fmt.Errorf("cow: mmap %d MiB (hugetlb %v): %w", size>>20, *hugetlb, err)
	}
	if !*hugetlb {
		_ = unix.Madvise(mem, unix.MADV_NOHUGEPAGE)
	}
	x := uint64(0x9E3779B97F4A7C15)
	for o := 0; o < size; o += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		*(*uint64)(unsafe.Pointer(&mem[o])) = x
	}
	np := uintptr(size / cowPage)
	reg := cowRegion{base: unsafe.Pointer(&mem[0]), npages: np}
	var mvFrom, mvTo uintptr
	var mvDst []byte
	switch *mode {
	case CowMremap1:
		mvFrom, mvTo = np/2, np/2+1
	case CowMremapBig:
		mvFrom, mvTo = np/4, np/2
	}
	if mvTo > mvFrom {
		// Destination reserved before the fork (an untouched mapping in every process); child #0
		// moves its pages over it with MREMAP_FIXED.
		if mvDst, err = unix.Mmap(-1, 0, int(mvTo-mvFrom)*cowPage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS); err != nil {
			return fmt.Errorf("cow: mmap destination: %w", err)
		}
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return err
	}
	pids := make([]int, 0, *kids)
	children := make([]*cowChild, 0, *kids)
	for i := 0; i < *kids; i++ {
		ch := &cowChild{reg: reg, readyR: uintptr(p[0]), readyW: uintptr(p[1]),
			path: cstr(filepath.Join(c.Dir, fmt.Sprintf("sum-%d", i))),
			tmp:  cstr(filepath.Join(c.Dir, fmt.Sprintf("sum-%d.tmp", i))),
			atFD: unix.AT_FDCWD, waitMask: 1<<(uint(syscall.SIGUSR1)-1) | 1<<(uint(syscall.SIGTERM)-1)}
		if i == 0 && mvTo > mvFrom {
			ch.mremap = true
			ch.reg.mvFrom, ch.reg.mvTo, ch.reg.mv = mvFrom, mvTo, unsafe.Pointer(&mvDst[0])
		}
		if *mode == CowDiv10 {
			tenth := np / 10
			from := uintptr(i%10) * tenth
			ch.divFrom, ch.divTo, ch.divKey = from, from+tenth, uint64(i+1)*0xA24BAED4963EE407
		}
		children = append(children, ch)
		pid, err := forkCow(ch)
		if err != nil {
			return err
		}
		pids = append(pids, pid)
	}
	_ = unix.Close(p[1])
	buf := make([]byte, 1)
	for range pids {
		if n, err := unix.Read(p[0], buf); n != 1 || err != nil {
			_ = unix.Close(p[0])
			return fmt.Errorf("cow: a child failed to set up (mode %s): %v", *mode, err)
		}
	}
	_ = unix.Close(p[0])
	if *mode == CowParentDiv50 {
		cowScramble(reg.base, 0, np, 2, 0x5851F42D4C957F2D)
	}
	c.Keep(mem, mvDst, children)
	c.OnCheck(func() (string, error) {
		var b strings.Builder
		fmt.Fprintf(&b, "root=%016x", reg.sum())
		for i, pid := range pids {
			path := filepath.Join(c.Dir, fmt.Sprintf("sum-%d", i))
			_ = os.Remove(path)
			if err := unix.Kill(pid, unix.SIGUSR1); err != nil {
				return "", fmt.Errorf("child %d (pid %d): %v", i, pid, err)
			}
			var got []byte
			for deadline := time.Now().Add(8 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if got, err = os.ReadFile(path); err == nil {
					break
				}
			}
			if err != nil {
				return "", fmt.Errorf("child %d (pid %d): no checksum in %s", i, pid, path)
			}
			fmt.Fprintf(&b, " c%d=%s", i, strings.TrimSpace(string(got)))
		}
		return b.String(), nil
	})
	strs := make([]string, len(pids))
	for i, pid := range pids {
		strs[i] = fmt.Sprint(pid)
	}
	return c.Ready("mode=" + *mode + " children=" + strings.Join(strs, ","))
}
