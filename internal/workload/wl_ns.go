package workload

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Names and values the ns workload sets up (tests compare them with the images).
const (
	NSHostname   = "criukit-ns"
	NSDomainname = "criukit.example"
	NSVethA      = "veth0"
	NSVethB      = "veth1"
	NSVethMAC    = "02:c0:ff:ee:00:01"
	NSAddr4      = "10.77.0.1/24"
	NSPeerAddr4  = "10.77.0.2/24"
	NSAddr6      = "fd00:77::1/64"
	NSRouteDst   = "10.78.0.0/24"
	NSRouteGw    = "10.77.0.2"
	NSRoute6Dst  = "fd00:78::/64"
	NSRoute6Gw   = "fd00:77::2" // not assigned to veth1: an IPv6 gateway may not be a local address
	NSIPCKey     = 0x43524955   // "CRIU": key of the SysV shm, msg queue and semaphore set
	NSShmData    = "sysv shm data " + DefaultSecret
	NSMsgData    = "sysv msg data " + DefaultSecret
	NSPtyInput   = "unread pty input " + DefaultSecret + "\n"
)

// NSSemValues are the values of the ns workload's semaphore set.
var NSSemValues = []uint16{3, 1, 4, 1}

// NSCloneflags are the namespaces the ns workload starts in.
const NSCloneflags = unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWNS

func init() {
	// ns: init of new pid/net/ipc/uts/mnt namespaces (session leader) with one child process,
	// hostname+domainname, a veth pair (MAC, IPv4+IPv6 addresses, a route), a tmpfs mount with two
	// files at Dir/tmpfs, SysV shm/msg/sem with data and a pty pair with unread input.
	RegisterNS("ns", NSCloneflags, runNS)
	// ns-child: the child process of the ns workload (only meaningful inside it).
	Register("ns-child", func(c *Ctx) error { return c.Ready("child") })
}

func runNS(c *Ctx) error {
	fs := flag.NewFlagSet("ns", flag.ContinueOnError)
	veth := fs.Bool("veth", true, "create the veth pair (CRIU cannot restore a pair with both ends in the netns: EEXIST)")
	if err := fs.Parse(c.Args); err != nil {
		return err
	}
	if os.Getpid() != 1 {
		return fmt.Errorf("must run as pid 1 of a new pid namespace (got pid %d); start it with harness.Start or `criukit workload ns`", os.Getpid())
	}
	steps := []struct {
		what string
		fn   func(c *Ctx) error
	}{
		{"mounts", nsMounts},
		{"stdio", reopenStdio},
		{"uts", func(*Ctx) error {
			if err := unix.Sethostname([]byte(NSHostname)); err != nil {
				return err
			}
			return unix.Setdomainname([]byte(NSDomainname))
		}},
		{"network", func(c *Ctx) error { return nsNetwork(c, *veth) }},
		{"tmpfs", nsTmpfs},
		{"sysv ipc", nsIPC},
		{"pty", nsPty},
		{"child", func(c *Ctx) error { _, err := c.StartChild("ns-child"); return err }},
	}
	for _, s := range steps {
		if err := s.fn(c); err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	c.OnCheck(func() (string, error) { return nsCheck(c) })
	return c.Ready(fmt.Sprintf("hostname=%s veth=%s,%s tmpfs=%s", NSHostname, NSVethA, NSVethB, filepath.Join(c.Dir, "tmpfs")))
}

// dumpableFS are the filesystem types CRIU dumps without help. Mounts of any other type that the new
// mount namespace inherited (nsfs bind mounts of other tests' /run/netns/X, sandbox or fuse mounts)
// are detached lazily: they would make the dump fail.
var dumpableFS = map[string]bool{
	"ext4": true, "ext3": true, "ext2": true, "xfs": true, "btrfs": true, "tmpfs": true, "devtmpfs": true,
	"devpts": true, "proc": true, "sysfs": true, "cgroup": true, "cgroup2": true, "mqueue": true,
	"overlay": true, "binfmt_misc": true, "debugfs": true, "tracefs": true, "securityfs": true,
	"pstore": true, "bpf": true, "hugetlbfs": true, "autofs": true, "configfs": true, "fusectl": true,
}

// tmpPrefix is the temp dir with a trailing slash: mounts below it belong to other tests.
var tmpPrefix = strings.TrimSuffix(os.TempDir(), "/") + "/"

func nsMounts(c *Ctx) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var detach []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts [optional...] - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) || len(fields) < 5 {
			continue
		}
		if mp := unescapeMountPath(fields[4]); mp == "/run/netns" || strings.HasPrefix(mp, "/run/netns/") || mp == "/var/run/netns" {
			detach = append(detach, mp) // ip netns bind mounts: "doesn't have a proper root mount"
		} else if mp == "/dev/shm" {
			// The host's /dev/shm is shared with other tests (ghosts puts deleted files there): CRIU
			// would tar its changing contents. A fresh private tmpfs is mounted instead, below.
			detach = append(detach, mp)
		} else if strings.HasPrefix(mp, tmpPrefix) {
			// Other tests' scratch mounts (tmpfs, overlays under the temp dir): CRIU would tar their
			// changing contents ("Can't dump tmpfs content") or fail on them when they go away.
			detach = append(detach, mp)
		} else if !dumpableFS[fields[sep+1]] {
			detach = append(detach, unescapeMountPath(fields[4]))
		}
	}
	f.Close()
	// Deepest first, so nested mounts go before their parents.
	for i := len(detach) - 1; i >= 0; i-- {
		_ = unix.Unmount(detach[i], unix.MNT_DETACH)
	}
	// Stacked mounts (the host may have several on /dev/shm) need one detach each.
	for unix.Unmount("/dev/shm", unix.MNT_DETACH) == nil {
	}
	if err := unix.Mount("shm", "/dev/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size=1m"); err != nil {
		return fmt.Errorf("mount a private /dev/shm: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount proc: %w", err)
	}
	return nil
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// reopenStdio points 0, 1, 2 at /dev/null opened inside the new mount namespace: CRIU cannot
// resolve fds whose mount belongs to the parent's mount namespace.
func reopenStdio(*Ctx) error {
	fd, err := unix.Open("/dev/null", unix.O_RDWR, 0)
	if err != nil {
		return err
	}
	for i := 0; i < 3; i++ {
		if err := unix.Dup3(fd, i, 0); err != nil {
			return err
		}
	}
	if fd > 2 {
		unix.Close(fd)
	}
	return nil
}

func nsNetwork(_ *Ctx, veth bool) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	if !veth {
		return nil
	}
	mac, _ := net.ParseMAC(NSVethMAC)
	pair := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: NSVethA, HardwareAddr: mac}, PeerName: NSVethB}
	if err := netlink.LinkAdd(pair); err != nil {
		return fmt.Errorf("add veth pair: %w", err)
	}
	a, err := netlink.LinkByName(NSVethA)
	if err != nil {
		return err
	}
	b, err := netlink.LinkByName(NSVethB)
	if err != nil {
		return err
	}
	for _, x := range []struct {
		link netlink.Link
		addr string
	}{{a, NSAddr4}, {a, NSAddr6}, {b, NSPeerAddr4}} {
		ip, err := netlink.ParseAddr(x.addr)
		if err != nil {
			return err
		}
		ip.Flags = unix.IFA_F_NODAD
		if err := netlink.AddrAdd(x.link, ip); err != nil {
			return fmt.Errorf("add %s to %s: %w", x.addr, x.link.Attrs().Name, err)
		}
	}
	for _, l := range []netlink.Link{a, b} {
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("%s up: %w", l.Attrs().Name, err)
		}
	}
	for _, r := range [][2]string{{NSRouteDst, NSRouteGw}, {NSRoute6Dst, NSRoute6Gw}} {
		_, dst, _ := net.ParseCIDR(r[0])
		rt := &netlink.Route{LinkIndex: a.Attrs().Index, Dst: dst, Gw: net.ParseIP(r[1])}
		if err := netlink.RouteAdd(rt); err != nil {
			return fmt.Errorf("add route %s via %s: %w", r[0], r[1], err)
		}
	}
	return nil
}

func nsTmpfs(c *Ctx) error {
	dir := filepath.Join(c.Dir, "tmpfs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("criukit-tmpfs", dir, "tmpfs", 0, "size=1m,mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	for name, data := range map[string]string{"one.txt": "tmpfs file one\n", "two.txt": "tmpfs file two " + DefaultSecret + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func nsIPC(c *Ctx) error {
	shmID, err := unix.SysvShmGet(NSIPCKey, 8192, unix.IPC_CREAT|0o600)
	if err != nil {
		return fmt.Errorf("shmget: %w", err)
	}
	mem, err := unix.SysvShmAttach(shmID, 0, 0)
	if err != nil {
		return fmt.Errorf("shmat: %w", err)
	}
	copy(mem, NSShmData)
	c.Keep(mem)
	nsState.shm = mem

	msgID, _, errno := unix.Syscall(unix.SYS_MSGGET, NSIPCKey, unix.IPC_CREAT|0o600, 0)
	if errno != 0 {
		return fmt.Errorf("msgget: %w", errno)
	}
	for i, text := range []string{NSMsgData, "second message"} {
		buf := make([]byte, 8+len(text)) // struct msgbuf { long mtype; char mtext[]; }
		*(*int64)(unsafe.Pointer(&buf[0])) = int64(i + 1)
		copy(buf[8:], text)
		if _, _, errno := unix.Syscall6(unix.SYS_MSGSND, msgID, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(text)), 0, 0, 0); errno != 0 {
			return fmt.Errorf("msgsnd: %w", errno)
		}
	}

	semID, _, errno := unix.Syscall(unix.SYS_SEMGET, NSIPCKey, uintptr(len(NSSemValues)), unix.IPC_CREAT|0o600)
	if errno != 0 {
		return fmt.Errorf("semget: %w", errno)
	}
	const setAll = 17 // SETALL
	vals := append([]uint16(nil), NSSemValues...)
	if _, _, errno := unix.Syscall6(unix.SYS_SEMCTL, semID, 0, setAll, uintptr(unsafe.Pointer(&vals[0])), 0, 0); errno != 0 {
		return fmt.Errorf("semctl SETALL: %w", errno)
	}
	return nil
}

func nsPty(c *Ctx) error {
	ptmx := "/dev/pts/ptmx"
	if _, err := os.Stat(ptmx); err != nil {
		ptmx = "/dev/ptmx"
	}
	master, err := unix.Open(ptmx, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", ptmx, err)
	}
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetUint32(master, unix.TIOCGPTN)
	if err != nil {
		return fmt.Errorf("pty number: %w", err)
	}
	slave, err := unix.Open(fmt.Sprintf("/dev/pts/%d", n), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open pty slave %d: %w", n, err)
	}
	if _, err := unix.Write(master, []byte(NSPtyInput)); err != nil {
		return fmt.Errorf("write pty input: %w", err)
	}
	c.Keep(master, slave)
	nsState.ptySlave = slave
	return nil
}

// nsState is what the ns check looks at (one ns workload per process).
var nsState struct {
	shm      []byte
	ptySlave int
}

// nsCheck verifies, without consuming anything, that the namespaces still hold what was set up.
func nsCheck(c *Ctx) (string, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return "", err
	}
	if h := unix.ByteSliceToString(uts.Nodename[:]); h != NSHostname {
		return "", fmt.Errorf("hostname %q, want %q", h, NSHostname)
	}
	if d := unix.ByteSliceToString(uts.Domainname[:]); d != NSDomainname {
		return "", fmt.Errorf("domainname %q, want %q", d, NSDomainname)
	}
	if b, err := os.ReadFile(filepath.Join(c.Dir, "tmpfs", "two.txt")); err != nil || !strings.Contains(string(b), DefaultSecret) {
		return "", fmt.Errorf("tmpfs file: %q %v", b, err)
	}
	if nsState.shm == nil || string(nsState.shm[:len(NSShmData)]) != NSShmData {
		return "", fmt.Errorf("SysV shm lost its data")
	}
	semID, _, errno := unix.Syscall(unix.SYS_SEMGET, NSIPCKey, 0, 0)
	if errno != 0 {
		return "", fmt.Errorf("semget: %w", errno)
	}
	vals := make([]uint16, len(NSSemValues))
	const getAll = 13 // GETALL
	if _, _, errno := unix.Syscall6(unix.SYS_SEMCTL, semID, 0, getAll, uintptr(unsafe.Pointer(&vals[0])), 0, 0); errno != 0 {
		return "", fmt.Errorf("semctl GETALL: %w", errno)
	}
	for i := range vals {
		if vals[i] != NSSemValues[i] {
			return "", fmt.Errorf("semaphores %v, want %v", vals, NSSemValues)
		}
	}
	if _, _, errno := unix.Syscall(unix.SYS_MSGGET, NSIPCKey, 0, 0); errno != 0 {
		return "", fmt.Errorf("msgget: %w", errno)
	}
	if n, err := unix.IoctlGetInt(nsState.ptySlave, unix.TIOCINQ); err != nil || n == 0 {
		return "", fmt.Errorf("pty input queue: %d bytes (%v), want > 0", n, err)
	}
	return "namespaces intact", nil
}
