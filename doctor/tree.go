package doctor

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/criukit/criukit/ghosts"
	"github.com/criukit/criukit/internal/procfs"
	"golang.org/x/sys/unix"
)

// supportedAnon are the anon-inode fd kinds CRIU 4.2 can dump (criu/files.c dump_one_file).
var supportedAnon = []string{"[eventfd]", "[eventpoll]", "inotify", "[fanotify]", "[signalfd]", "[timerfd]", "[pidfd]", "bpf-map"}

// anonKinds names anon inodes CRIU cannot dump, with their finding id, what and fix.
var anonKinds = []struct {
	prefix, id, what, fix string
}{
	{"[userfaultfd]", "userfaultfd", "userfaultfd: CRIU cannot dump a task's userfaultfd",
		"close the userfaultfd before the dump (and re-create it after restore)"},
	{"[io_uring]", "io-uring", "io_uring instance: CRIU cannot dump io_uring (its log only says \"send_fds failed (-22)\")",
		"quiesce and close the io_uring before the dump, or switch the application to epoll"},
	{"[perf_event]", "perf-event", "perf event fd: CRIU has no dumper for perf_event_open fds",
		"stop the profiler/monitor and close perf fds before the dump"},
	{"kvm-vm", "kvm", "KVM virtual machine fd: CRIU cannot checkpoint VMs",
		"use the VMM's own snapshots, or a cooperative VMM that saves vCPU state and closes the VM fds before the dump (criukit kvm demo)"},
	{"kvm-vcpu", "kvm", "KVM vCPU fd: CRIU cannot checkpoint VMs",
		"use the VMM's own snapshots, or a cooperative VMM that saves vCPU state and closes the VM fds before the dump (criukit kvm demo)"},
	{"[vfio-device]", "vfio", "VFIO device fd: device state cannot be checkpointed",
		"detach the device (hot-unplug) before the dump"},
}

// TCP states CRIU treats as connected (criu/sk-inet.c), as hex in /proc/net/tcp.
var connectedTCP = map[string]string{"01": "ESTABLISHED", "02": "SYN_SENT", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0B": "CLOSING"}

func isTTY(rdev uint64) bool {
	maj := unix.Major(rdev)
	return maj == 4 || maj == 5 || maj >= 128 && maj <= 143
}

func (r *Report) tree(o Options) error {
	pids, err := ghosts.Tree(o.Pid)
	if err != nil {
		return err
	}
	r.Pid, r.Pids = o.Pid, pids
	r.sessionLeader(o)
	inet := map[uint64]string{} // socket inode -> TCP state, per netns read once
	seenNetns := map[string]bool{}
	for _, pid := range pids {
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && !seenNetns[ns] {
			seenNetns[ns] = true
			readInet(pid, inet)
		}
		r.fds(o, pid, inet)
		r.maps(pid)
	}
	r.ghosts(o)
	r.mounts(o)
	return nil
}

func (r *Report) sessionLeader(o Options) {
	if hasArg(o.DumpArgs, "--shell-job", "-j") {
		return
	}
	// CRIU asks the task itself (getsid in its own pid namespace): read the innermost ids.
	pid, sid, ok := innerIDs(o.Pid)
	if !ok {
		return
	}
	switch {
	case sid == 0:
		r.add(Finding{ID: "session-leader-outside-pidns", Severity: SevError, Pid: o.Pid, FD: -1,
			What:  fmt.Sprintf("the session leader of %d is outside its pid namespace (NSsid is 0 there)", o.Pid),
			Where: fmt.Sprintf("pid %d", o.Pid),
			Why:   "CRIU records sessions by the id the task sees; a leader in an ancestor pid namespace has none",
			Fix:   "start the workload with setsid inside its pid namespace (e.g. unshare --pid --fork setsid CMD), or dump with --shell-job (-j)"})
	case sid != pid:
		r.add(Finding{ID: "not-session-leader", Severity: SevError, Pid: o.Pid, FD: -1,
			What:  fmt.Sprintf("the root process %d is not a session leader (its session is %d)", o.Pid, sid),
			Where: fmt.Sprintf("pid %d", o.Pid),
			Why:   "CRIU dumps whole sessions; a tree whose session leader is outside needs the shell's help on restore",
			Fix:   "start the workload with setsid (stdio on files or /dev/null), or dump with --shell-job (-j) and restore from a shell"})
	}
}

// innerIDs returns pid's process and session ids as seen in its own (innermost) pid namespace:
// the last fields of NSpid and NSsid in /proc/PID/status.
func innerIDs(pid int) (inPid, inSid int, ok bool) {
	st, err := procfs.ReadStatus(pid)
	if err != nil {
		return 0, 0, false
	}
	inPid, ok1 := st.LastInt("NSpid")
	inSid, ok2 := st.LastInt("NSsid")
	return inPid, inSid, ok1 && ok2
}

// readInet maps socket inodes of pid's network namespace to "" or, for a connected TCP socket,
// its state and addresses.
func readInet(pid int, inet map[uint64]string) {
	for _, f := range []string{"tcp", "tcp6", "udp", "udp6", "raw", "raw6"} {
		fh, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		tcp := strings.HasPrefix(f, "tcp")
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			if len(fl) < 10 || fl[0] == "sl" {
				continue
			}
			ino, err := strconv.ParseUint(fl[9], 10, 64)
			if err != nil || ino == 0 {
				continue
			}
			inet[ino] = ""
			if name, ok := connectedTCP[fl[3]]; ok && tcp {
				inet[ino] = name + " " + addr(fl[1]) + " -> " + addr(fl[2])
			}
		}
		fh.Close()
	}
}

func addr(s string) string {
	h, p, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil {
		return s
	}
	if len(h) == 8 {
		v, err := strconv.ParseUint(h, 16, 32)
		if err == nil {
			return fmt.Sprintf("%d.%d.%d.%d:%d", v&0xff, v>>8&0xff, v>>16&0xff, v>>24, port)
		}
	}
	return fmt.Sprintf("[%s]:%d", h, port)
}

func (r *Report) fds(o Options, pid int, inet map[uint64]string) {
	fds, err := procfs.FDs(pid)
	if err != nil {
		return
	}
	oldCriu := false
	for _, f := range r.Findings {
		if f.ID == "old-criu-inet-sockopt" && f.Severity == SevError {
			oldCriu = true
		}
	}
	reportedOld := false
	for _, d := range fds {
		fd, p, link := d.Num, d.Path, d.Link
		where := fmt.Sprintf("pid %d fd %d (%s)", pid, fd, link)
		if anon, ok := strings.CutPrefix(link, "anon_inode:"); ok {
			r.anon(pid, fd, where, anon)
			continue
		}
		if ino, ok := socketInode(link); ok {
			state, isInet := inet[ino]
			if isInet && oldCriu && !reportedOld {
				reportedOld = true
				r.add(Finding{ID: "old-criu-inet-sockopt", Severity: SevError, Pid: pid, FD: fd, Where: where,
					What: "inet socket with CRIU < 4.2 on Linux >= 6.16: the dump fails with \"Can't get 1:16 opt\"", Fix: "use CRIU >= 4.2"})
			}
			if !isInet {
				r.unixPeer(o, pid, fd, where)
				continue
			}
			if state != "" {
				if hasArg(o.DumpArgs, "--tcp-established") || hasArg(o.DumpArgs, "--tcp-close") {
					r.add(Finding{ID: "tcp-established", Severity: SevInfo, Pid: pid, FD: fd, Where: where,
						What: "connected TCP socket (" + state + "), handled by --tcp-established/--tcp-close", Fix: "restore with the same option; keep the addresses available"})
				} else {
					r.add(Finding{ID: "tcp-established", Severity: SevError, Pid: pid, FD: fd, Where: where,
						What: "connected TCP socket (" + state + ") without --tcp-established",
						Why:  "CRIU refuses connected TCP sockets unless told how to handle them",
						Fix:  "dump and restore with --tcp-established (and --network-lock nftables without iptables), or with --tcp-close to drop the connection"})
				}
			}
			continue
		}
		var st unix.Stat_t
		if unix.Stat(p, &st) != nil {
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFCHR {
			maj, min := unix.Major(st.Rdev), unix.Minor(st.Rdev)
			switch {
			case maj == 1, maj == 10 && (min == 200 || min == 235), isTTY(st.Rdev):
				continue // memory devices, tun, autofs, ttys
			case maj == 10 && min == 232:
				r.add(Finding{ID: "unsupported-chrdev", Severity: SevError, Pid: pid, FD: fd, Path: link, Where: where,
					What: "/dev/kvm is open: CRIU cannot dump it (chr 10:232), nor the VMs made through it",
					Fix:  "close /dev/kvm before the dump (a VMM keeps it open; use the VMM's snapshot instead)"})
			default:
				id := "unsupported-chrdev"
				what := fmt.Sprintf("character device %d:%d (%s): CRIU reopens only memory devices, ttys, tun and autofs", maj, min, link)
				if strings.HasPrefix(link, "/dev/vfio/") {
					id, what = "vfio", "VFIO device "+link+": device state cannot be checkpointed"
				}
				r.add(Finding{ID: id, Severity: SevError, Pid: pid, FD: fd, Path: link, Where: where, What: what,
					Fix: "close the device before the dump, use a CRIU plugin for it (amdgpu, cuda), or declare it external (--external, --inherit-fd on restore)"})
			}
		}
	}
}

func socketInode(link string) (uint64, bool) {
	s, ok := strings.CutPrefix(link, "socket:[")
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64)
	return v, err == nil
}

func (r *Report) anon(pid, fd int, where, anon string) {
	for _, s := range supportedAnon {
		if anon == s {
			return
		}
	}
	for _, k := range anonKinds {
		if strings.HasPrefix(anon, k.prefix) {
			r.add(Finding{ID: k.id, Severity: SevError, Pid: pid, FD: fd, Path: "anon_inode:" + anon, Where: where, What: k.what, Fix: k.fix})
			return
		}
	}
	r.add(Finding{ID: "unsupported-anon-inode", Severity: SevError, Pid: pid, FD: fd, Path: "anon_inode:" + anon, Where: where,
		What: "anon inode " + anon + ": CRIU dumps only eventfd, eventpoll, inotify, fanotify, signalfd, timerfd, pidfd and bpf-map",
		Fix:  "close the fd before the dump, or declare it external and pass a replacement on restore (--inherit-fd)"})
}

// maps finds mappings CRIU cannot dump (KVM vCPU run areas and other anon-inode mappings).
func (r *Report) maps(pid int) {
	_ = ghosts.ForEachMapping(pid, func(rng, path string) {
		anon, ok := strings.CutPrefix(path, "anon_inode:")
		if !ok {
			return
		}
		where := fmt.Sprintf("pid %d map %s (%s)", pid, rng, path)
		if strings.HasPrefix(anon, "kvm-vcpu") {
			r.add(Finding{ID: "kvm", Severity: SevError, Pid: pid, FD: -1, Path: path, Where: where,
				What: "mapped KVM vCPU run area: CRIU fails while collecting mappings (\"Unknown shit 600 (anon_inode:kvm-vcpu:N)\")",
				Fix:  "unmap kvm_run and close the VM fds before the dump, or use the VMM's own snapshots"})
			return
		}
		if anon == "[io_uring]" {
			return // the io_uring fd itself is reported
		}
		r.add(Finding{ID: "unsupported-anon-mapping", Severity: SevWarning, Pid: pid, FD: -1, Path: path, Where: where,
			What: "mapping of anon inode " + anon + ": CRIU may not be able to dump it", Fix: "unmap it before the dump"})
	})
}

func (r *Report) ghosts(o Options) {
	limit := int64(ghosts.DefaultGhostLimit)
	if o.GhostLimit > 0 {
		limit = o.GhostLimit
	} else if v := argValue(o.DumpArgs, "--ghost-limit"); v != "" {
		if l, err := ghosts.ParseSize(v); err == nil {
			limit = l
		}
	}
	rep, err := ghosts.Scan(o.Pid)
	if err != nil {
		r.add(Finding{ID: "ghosts-unknown", Severity: SevWarning, What: "could not predict ghost files: " + err.Error(), Fix: "run as root"})
		return
	}
	if hasArg(o.DumpArgs, "--link-remap") {
		return
	}
	for _, it := range rep.OverLimit(limit) {
		r.add(Finding{ID: "ghost-limit", Severity: SevError, Pid: it.Pid, FD: it.FD, Path: it.Path,
			Where: fmt.Sprintf("pid %d %s (%s, deleted)", it.Pid, it.Where, it.Path),
			What:  fmt.Sprintf("deleted file with %d bytes allocated, over the ghost limit %d", it.Allocated, limit),
			Why:   "CRIU copies deleted-but-open files into the images and refuses those over --ghost-limit (compares st_blocks*512)",
			Fix:   fmt.Sprintf("--ghost-limit %d (or CRIU_CONFIG_FILE with \"ghost-limit %d\", or CRIUKIT_GHOST_LIMIT with criukit dump), or --link-remap", rep.MinGhostLimit, rep.MinGhostLimit)})
	}
}

// unixPeer reports a connected unix stream socket whose peer process (SO_PEERCRED) is outside
// the tree: CRIU cannot dump half of a stream connection.
func (r *Report) unixPeer(o Options, pid, fd int, where string) {
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(pfd)
	nfd, err := unix.PidfdGetfd(pfd, fd, 0)
	if err != nil {
		return
	}
	defer unix.Close(nfd)
	dom, err1 := unix.GetsockoptInt(nfd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	typ, err2 := unix.GetsockoptInt(nfd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err1 != nil || err2 != nil || dom != unix.AF_UNIX || typ == unix.SOCK_DGRAM {
		return
	}
	if _, err := unix.Getpeername(nfd); err != nil {
		return // not connected (listening or unconnected)
	}
	cred, err := unix.GetsockoptUcred(nfd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil || cred.Pid <= 0 {
		return
	}
	for _, p := range r.Pids {
		if int32(p) == cred.Pid {
			return
		}
	}
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cred.Pid))
	r.add(Finding{ID: "external-unix-socket", Severity: SevError, Pid: pid, FD: fd, Where: where,
		What: fmt.Sprintf("unix stream socket connected to process %d (%s) outside the tree", cred.Pid, strings.TrimSpace(string(comm))),
		Why:  "CRIU dumps both ends of a unix stream connection or neither; --ext-unix-sk only helps datagram sockets",
		Fix:  "dump the peer together with the tree (a common parent), close the connection before the dump, or let a CRIU plugin / the application reconnect after restore"})
}
