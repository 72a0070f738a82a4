package memtrack

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// envHelper makes a process started from this binary act as the injection helper (see InjectUffd).
const envHelper = "CRIUKIT_MEMTRACK_INJECT_PID"

// The helper runs before main: any binary that links memtrack can be re-executed as the helper.
func init() {
	if v := os.Getenv(envHelper); v != "" {
		os.Exit(helperMain(v))
	}
}

// helperMain injects into pid and passes the uffd back over fd 3 (SCM_RIGHTS).
func helperMain(arg string) int {
	pid, err := strconv.Atoi(arg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bad pid %q", arg)
		return 2
	}
	fd, err := injectUffdHere(pid)
	if err != nil {
		fmt.Fprint(os.Stderr, err)
		return 1
	}
	if err := unix.Sendmsg(3, []byte("uffd"), unix.UnixRights(fd), nil, 0); err != nil {
		fmt.Fprintf(os.Stderr, "send uffd to the tracker: %v", err)
		return 1
	}
	return 0
}

// InjectUffd makes pid create a userfaultfd by ptrace syscall injection and returns a duplicate of
// it; the target's own copy is closed again at once, so the target never keeps a uffd.
//
// The ptrace work runs in a short-lived helper process (this binary re-executed): ptrace stops are
// reported to every thread of the tracer's process, so doing it here could steal wait events from
// code that waits for the target (for example an exec.Cmd whose child is the target).
func InjectUffd(pid int) (int, error) {
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("%w: socketpair: %v", ErrInject, err)
	}
	ours := os.NewFile(uintptr(sp[0]), "memtrack-helper")
	theirs := os.NewFile(uintptr(sp[1]), "memtrack-helper-peer")
	defer ours.Close()
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), envHelper+"="+strconv.Itoa(pid))
	cmd.ExtraFiles = []*os.File{theirs}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		return -1, fmt.Errorf("%w: start helper: %v", ErrInject, err)
	}
	conn, err := net.FileConn(ours)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return -1, fmt.Errorf("%w: %v", ErrInject, err)
	}
	defer conn.Close()
	uc := conn.(*net.UnixConn)
	_ = uc.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf, oob := make([]byte, 16), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, rerr := uc.ReadMsgUnix(buf, oob)
	if rerr != nil {
		cmd.Process.Kill() // stuck (e.g. the thread never stopped): give up
	}
	werr := cmd.Wait()
	if rerr != nil || oobn == 0 {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = fmt.Sprintf("helper: %v, %v", werr, rerr)
		}
		if strings.Contains(msg, ErrInject.Error()) || strings.Contains(msg, "memtrack") {
			return -1, fmt.Errorf("%s", msg)
		}
		return -1, fmt.Errorf("%w: %s", ErrInject, msg)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return -1, fmt.Errorf("%w: bad control message from helper: %v", ErrInject, err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return -1, fmt.Errorf("%w: no fd from helper: %v", ErrInject, err)
	}
	return fds[0], nil
}
