package tcplab

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/criukit/criukit/soccr"
	"golang.org/x/sys/unix"
)

// Engine names what saves and restores the lab's sockets.
const (
	EngineSoccr    = "soccr"    // the Go port (default)
	EngineLibsoccr = "libsoccr" // CRIU's C libsoccr through libsoccr-helper (scripts/build-libsoccr)
	// EngineLibsoccrSave dumps with CRIU's libsoccr and restores with soccr: soccr restoring
	// what CRIU dumped (soccr.FromImages), so a restore bug is judged on a dump soccr did not make.
	EngineLibsoccrSave = "libsoccr-save"
)

// LibsoccrHelper is the path of the C driver of CRIU's libsoccr ($TCPLAB_LIBSOCCR_HELPER or
// /opt/criukit/bin/libsoccr-helper, built by scripts/build-libsoccr).
func LibsoccrHelper() string {
	if p := os.Getenv("TCPLAB_LIBSOCCR_HELPER"); p != "" {
		return p
	}
	return "/opt/criukit/bin/libsoccr-helper"
}

const dataLen = 17 * 4 // struct libsoccr_sk_data

// libsoccrSave runs libsoccr_save on fd (already in repair mode) in the helper, then adds what
// CRIU takes from sock_diag and the socket options: addresses and buffer sizes.
func libsoccrSave(fd int) (*soccr.Snapshot, error) {
	f, err := dupFile(fd, "sock")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(LibsoccrHelper(), "save", "3")
	cmd.ExtraFiles = []*os.File{f}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("libsoccr save: %v: %s", err, lastLines(stderr.String()))
	}
	if len(out) < dataLen {
		return nil, fmt.Errorf("libsoccr save: %d bytes of output, want >= %d", len(out), dataLen)
	}
	var v [17]uint32
	for i := range v {
		v[i] = binary.NativeEndian.Uint32(out[4*i:])
	}
	s := &soccr.Snapshot{Data: soccr.Data{State: soccr.State(v[0]), InqLen: v[1], InqSeq: v[2], OutqLen: v[3], OutqSeq: v[4],
		UnsqLen: v[5], OptMask: v[6], MssClamp: v[7], SndWscale: v[8], RcvWscale: v[9], Timestamp: v[10],
		HasWindow: v[11]&1 != 0, SndWl1: v[12], SndWnd: v[13], MaxWindow: v[14], RcvWnd: v[15], RcvWup: v[16]}}
	q := out[dataLen:]
	if uint64(len(q)) != uint64(s.InqLen)+uint64(s.OutqLen) {
		return nil, fmt.Errorf("libsoccr save: %d queue bytes, want %d+%d", len(q), s.InqLen, s.OutqLen)
	}
	s.InQ, s.OutQ = q[:s.InqLen], q[s.InqLen:]
	if sa, err := unix.Getsockname(fd); err == nil {
		s.Src = soccr.AddrPort(sa)
	}
	if sa, err := unix.Getpeername(fd); err == nil {
		s.Dst = soccr.AddrPort(sa)
	}
	s.SndBuf, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
	s.RcvBuf, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	return s, nil
}

// libsoccrRestore restores snap into fd (fresh, unbound) with libsoccr_restore in the helper,
// after setting the buffers as CRIU does (socket options before the TCP state). The fake
// FIN/ACK goes through libnet's raw socket in side's netns, not through the switch.
func (l *Lab) libsoccrRestore(fd, side int, snap *soccr.Snapshot) error {
	if snap.SndBuf > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, snap.SndBuf/2); err != nil {
			return err
		}
	}
	if snap.RcvBuf > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, snap.RcvBuf/2); err != nil {
			return err
		}
	}
	var in bytes.Buffer
	d := snap.Data
	flags := uint32(0)
	if d.HasWindow {
		flags = 1
	}
	for _, v := range []uint32{uint32(d.State), d.InqLen, d.InqSeq, d.OutqLen, d.OutqSeq, d.UnsqLen, d.OptMask, d.MssClamp,
		d.SndWscale, d.RcvWscale, d.Timestamp, flags, d.SndWl1, d.SndWnd, d.MaxWindow, d.RcvWnd, d.RcvWup} {
		binary.Write(&in, binary.NativeEndian, v)
	}
	in.Write(snap.InQ)
	in.Write(snap.OutQ)
	sock, err := dupFile(fd, "sock")
	if err != nil {
		return err
	}
	defer sock.Close()
	nsf, err := dupFile(int(l.sides[side].ns), "netns")
	if err != nil {
		return err
	}
	defer nsf.Close()
	ip := func(a string) string { return a }
	cmd := exec.Command(LibsoccrHelper(), "restore", "3", "4",
		ip(snap.Src.Addr().String()), fmt.Sprint(snap.Src.Port()), ip(snap.Dst.Addr().String()), fmt.Sprint(snap.Dst.Port()))
	cmd.ExtraFiles = []*os.File{sock, nsf}
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if line != "" {
			l.Note("%s", line)
		}
	}
	if err != nil {
		return fmt.Errorf("libsoccr restore %v: %v: %s", snap.State, err, lastLines(stderr.String()))
	}
	return nil
}

// dupFile wraps a duplicate of fd: the *os.File closes its own descriptor (also from a
// finalizer), never the lab's.
func dupFile(fd int, name string) (*os.File, error) {
	d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return nil, fmt.Errorf("dup %s: %w", name, err)
	}
	return os.NewFile(uintptr(d), name), nil
}

func lastLines(s string) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	var errs []string
	for _, l := range ls {
		if strings.Contains(l, "error") {
			errs = append(errs, l)
		}
	}
	if len(errs) > 0 {
		return strings.Join(errs, " | ")
	}
	if len(ls) > 3 {
		ls = ls[len(ls)-3:]
	}
	return strings.Join(ls, " | ")
}
