package soccr

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/criukit/criukit/internal/nsrun"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	tcpstream "github.com/checkpoint-restore/go-criu/v8/crit/images/tcp-stream"
	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/internal/testenv"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The test binary doubles as the workload CRIU dumps (SOCCR_WORKLOAD=port:dir).
func TestMain(m *testing.M) {
	if w := os.Getenv("SOCCR_WORKLOAD"); w != "" {
		workload(w)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// workload connects to 127.0.0.1:port, says hello, then waits for the file dir/go and from then
// on echoes what it reads, upper-cased.
func workload(arg string) {
	port, dir, _ := strings.Cut(arg, ":")
	p, _ := strconv.Atoi(port)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		os.Exit(2)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: p, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		os.Exit(3)
	}
	unix.Write(fd, []byte("hello-from-workload"))
	os.WriteFile(filepath.Join(dir, "ready"), nil, 0o644)
	buf := make([]byte, 4096)
	for {
		time.Sleep(20 * time.Millisecond)
		if _, err := os.Stat(filepath.Join(dir, "go")); err != nil {
			continue
		}
		n, _, _ := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
		if n > 0 {
			unix.Write(fd, bytes.ToUpper(buf[:n]))
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func waitFile(path string, d time.Duration) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return true
		}
	}
	return false
}

func readFor(fd int, want int, d time.Duration) []byte {
	var out []byte
	buf := make([]byte, 4096)
	for end := time.Now().Add(d); len(out) < want && time.Now().Before(end); {
		n, _, _ := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
		if n > 0 {
			out = append(out, buf[:n]...)
			continue
		}
		time.Sleep(10 * time.Millisecond)
	}
	return out
}

// TestCRIUInterop proves both directions against CRIU 4.2: a socket dumped by CRIU
// (--tcp-established) is restored by soccr from tcp-stream-*.img and files.img and continues the
// conversation; then soccr dumps it again, rewrites those images, and CRIU restores the
// workload, which reads the data soccr put in its queue.
func TestCRIUInterop(t *testing.T) {
	testenv.Root(t)
	testenv.File(t, "/usr/local/sbin/criu")
	testenv.Command(t, "nsenter")
	testenv.Command(t, "ip")
	testenv.Short(t)
	const criu = "/usr/local/sbin/criu"
	name := fmt.Sprintf("criukit-soccr-%d", os.Getpid())
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	nsPath := "/run/netns/" + name

	// Listener and server side live in the test process, inside the namespace.
	var lfd int
	if err := nsrun.Do(ns, func() error {
		var err error
		if lfd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return err
		}
		return unix.Listen(lfd, 1)
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lfd)
	sa, _ := unix.Getsockname(lfd)
	port := sa.(*unix.SockaddrInet4).Port

	work := t.TempDir()
	imgs := filepath.Join(work, "img")
	os.Mkdir(imgs, 0o755)
	cmd := exec.Command("nsenter", "--net="+nsPath, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("SOCCR_WORKLOAD=%d:%s", port, work))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	reaped := false
	t.Cleanup(func() {
		if !reaped {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	if !waitFile(filepath.Join(work, "ready"), 5*time.Second) {
		t.Fatal("workload did not start")
	}
	sv, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sv)
	if got := readFor(sv, 19, 2*time.Second); string(got) != "hello-from-workload" {
		t.Fatalf("server got %q", got)
	}
	unix.Write(sv, []byte("queued-in-workload")) // stays in the workload's receive queue
	time.Sleep(50 * time.Millisecond)

	// 1. CRIU dumps the workload.
	out, err := exec.Command("nsenter", "--net="+nsPath, criu, "dump", "-t", strconv.Itoa(pid), "-D", imgs,
		"-o", "dump.log", "-v4", "--tcp-established", "--network-lock", "nftables").CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(imgs, "dump.log"))
		t.Fatalf("criu dump: %v\n%s\n%s", err, out, tail(string(log), 20))
	}
	cmd.Wait()
	reaped = true

	// 2. soccr restores the dumped socket from CRIU's images.
	files, err := image.ReadFile(filepath.Join(imgs, "files.img"))
	if err != nil {
		t.Fatal(err)
	}
	var fe *fdinfo.FileEntry
	for _, e := range files.Entries {
		if f, ok := e.Msg.(*fdinfo.FileEntry); ok && f.GetIsk() != nil && f.GetIsk().GetProto() == unix.IPPROTO_TCP {
			fe = f
		}
	}
	if fe == nil {
		t.Fatal("no TCP inet socket in files.img")
	}
	tsName := fmt.Sprintf("tcp-stream-%x.img", fe.GetIsk().GetIno())
	tsImg, err := image.ReadFile(filepath.Join(imgs, tsName))
	if err != nil {
		t.Fatal(err)
	}
	ts := tsImg.Entries[0].Msg.(*tcpstream.TcpStreamEntry)
	snap, err := FromImages(ts, tsImg.Entries[0].Extra, fe.GetIsk())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("CRIU image: %v inq=%d outq=%d src=%v dst=%v window=%v", snap.State, snap.InqLen, snap.OutqLen, snap.Src, snap.Dst, snap.HasWindow)
	if string(snap.InQ) != "queued-in-workload" {
		t.Fatalf("CRIU's receive queue %q", snap.InQ)
	}
	var fd int
	if err := nsrun.Do(ns, func() error {
		var err error
		// CRIU keeps its nftables lock after a dump; a migration target unlocks after restore.
		// Here soccr is the restorer, so remove CRIU's table (after the restore, like CRIU).
		if fd, err = NewSocket(snap); err != nil {
			return err
		}
		if err := Restore(fd, snap, &RestoreOptions{Injector: RawInjector{}}); err != nil {
			return err
		}
		if err := unlockCRIU(); err != nil {
			return fmt.Errorf("remove CRIU's network lock: %w", err)
		}
		return Resume(fd, true)
	}); err != nil {
		t.Fatalf("soccr restore of CRIU's socket: %v", err)
	}
	if got := readFor(fd, 18, 2*time.Second); string(got) != "queued-in-workload" {
		unix.Close(fd)
		t.Fatalf("soccr-restored socket read %q (is CRIU's network lock still in place?)", got)
	}
	unix.Write(fd, []byte("ping-from-soccr"))
	if got := readFor(sv, 15, 3*time.Second); string(got) != "ping-from-soccr" {
		unix.Close(fd)
		t.Fatalf("server got %q from the soccr-restored socket", got)
	}

	// 3. soccr dumps it again with new data queued; CRIU restores the workload from our images.
	unix.Write(sv, []byte("for-criu-restore"))
	time.Sleep(50 * time.Millisecond)
	if err := Pause(fd); err != nil {
		t.Fatal(err)
	}
	snap2, err := Save(fd)
	unix.Close(fd) // silent, in repair mode
	if err != nil {
		t.Fatal(err)
	}
	if string(snap2.InQ) != "for-criu-restore" {
		t.Fatalf("soccr dump queue %q", snap2.InQ)
	}
	tsImg.Entries[0].Msg = snap2.ToTcpStream()
	tsImg.Entries[0].Extra = append(append([]byte{}, snap2.InQ...), snap2.OutQ...)
	tsImg.Entries[0].ExtraLen = int64(len(tsImg.Entries[0].Extra))
	if err := image.WriteFile(filepath.Join(imgs, tsName), tsImg); err != nil {
		t.Fatal(err)
	}
	snap2.FillInetSk(fe.Isk, 0, 0)
	if err := image.WriteFile(filepath.Join(imgs, "files.img"), files); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(work, "go"), nil, 0o644)
	pidfile := filepath.Join(work, "restored.pid")
	out, err = exec.Command("nsenter", "--net="+nsPath, criu, "restore", "-d", "-D", imgs, "-o", "restore.log", "-v4",
		"--tcp-established", "--network-lock", "nftables", "--pidfile", pidfile).CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(imgs, "restore.log"))
		t.Fatalf("criu restore of soccr's images: %v\n%s\n%s", err, out, tail(string(log), 30))
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidfile); err == nil {
			if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && p > 0 {
				unix.Kill(p, unix.SIGKILL)
			}
		}
	})
	if got := readFor(sv, 16, 5*time.Second); string(got) != "FOR-CRIU-RESTORE" {
		t.Fatalf("the CRIU-restored workload echoed %q, want FOR-CRIU-RESTORE", got)
	}
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

var _ = errors.Is
