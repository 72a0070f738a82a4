package kvm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/criukit/criukit/internal/criurun"
	"golang.org/x/sys/unix"
)

// ErrDemo is returned when the checkpoint/restore cycle ran but the guest did not continue.
var ErrDemo = errors.New("kvm demo: the guest counter did not continue after restore")

// DemoOptions configure Demo.
type DemoOptions struct {
	Argv     []string      // command that runs the VMM (e.g. criukit kvm run); EnvStatus is set for it
	Criu     string        // criu binary; "" means criurun.Find
	Dir      string        // work directory (images, logs, status); "" makes a temp dir that is removed
	Count    time.Duration // how long the guest counts before the dump and after the restore (default 1s)
	Signals  bool          // park/resume with signals sent by Demo instead of criu's action script
	Keep     bool          // leave the restored VMM running (its pid is in the result)
	Progress io.Writer     // step-by-step narration (optional)
}

// DemoResult is what Demo observed.
type DemoResult struct {
	Pid         int    `json:"pid"`
	RestoredPid int    `json:"restored_pid"`
	Images      string `json:"images_dir"`
	ImagesBytes int64  `json:"images_bytes"`
	Before      Status `json:"before_dump"`   // status just before the dump
	Parked      Status `json:"parked"`        // status written when the VMM parked for the dump
	After       Status `json:"after_restore"` // status Count after the restore
	DumpNs      int64  `json:"dump_ns"`
	RestoreNs   int64  `json:"restore_ns"`
	Kept        bool   `json:"kept_running"`
}

// ActionScript is the criu --action-script Demo uses: on pre-dump it sends SigPark to the VMM and
// waits (up to 10s) until its status file says "parked"; on post-dump (--leave-running) and
// post-resume it sends SigResume. CRIU sets CRTOOLS_SCRIPT_ACTION and CRTOOLS_INIT_PID.
func ActionScript(statusPath string) string {
	return fmt.Sprintf(`#!/bin/sh
# criukit kvm: park the VMM before criu freezes it, resume it after restore.
status=%q
case "$CRTOOLS_SCRIPT_ACTION" in
pre-dump)
	kill -USR2 "$CRTOOLS_INIT_PID" || exit 1
	n=0
	until grep -q '"state":"parked"' "$status" 2>/dev/null; do
		n=$((n+1))
		if [ $n -gt 200 ]; then echo "criukit kvm: VMM $CRTOOLS_INIT_PID did not park" >&2; exit 1; fi
		sleep 0.05
	done
	;;
post-dump|post-resume)
	kill -HUP "$CRTOOLS_INIT_PID" 2>/dev/null
	;;
esac
exit 0
`, statusPath)
}

// Demo starts the VMM, lets the guest count, checkpoints it with criu (the VMM parks first),
// reaps it, restores it with criu and checks that the guest counter continues from where it
// stopped. It returns an error wrapping ErrDemo if it did not.
func Demo(ctx context.Context, o DemoOptions) (res *DemoResult, err error) {
	if len(o.Argv) == 0 {
		return nil, fmt.Errorf("kvm demo: no VMM command")
	}
	if o.Count <= 0 {
		o.Count = time.Second
	}
	say := func(format string, a ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format+"\n", a...)
		}
	}
	if _, err := os.Stat(DevKVM); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotSupported, err)
	}
	if o.Criu == "" {
		p, _, err := criurun.Find()
		if err != nil {
			return nil, err
		}
		o.Criu = p
	}
	keepDir := o.Dir != ""
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "criukit-kvm-demo-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		o.Dir = d
	}
	status := DefaultStatusPath(o.Dir)
	images := filepath.Join(o.Dir, "images")
	script := filepath.Join(o.Dir, "kvm-action.sh")
	if err := os.WriteFile(script, []byte(ActionScript(status)), 0o755); err != nil {
		return nil, err
	}
	res = &DemoResult{}
	if keepDir {
		res.Images = images
	}

	// 1. Start the VMM as a session leader with stdio on /dev/null, so criu can dump it alone.
	cmd := exec.Command(o.Argv[0], o.Argv[1:]...)
	cmd.Env = append(os.Environ(), EnvStatus+"="+status)
	cmd.Dir = o.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("kvm demo: start VMM %v: %w", o.Argv, err)
	}
	res.Pid = cmd.Process.Pid
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	live := res.Pid // the process to kill if we fail
	defer func() {
		if live > 0 && (err != nil || !o.Keep) {
			_ = syscall.Kill(live, syscall.SIGKILL)
			if live == res.Pid {
				<-exited
			} else {
				var ws unix.WaitStatus
				_, _ = unix.Wait4(live, &ws, 0, nil)
			}
		}
	}()
	say("started VMM pid %d: %v (status file %s)", res.Pid, o.Argv, status)
	st, err := waitStatus(ctx, status, 10*time.Second, func(s Status) bool { return s.State == "running" && s.Counter > 0 })
	if err != nil {
		return res, fmt.Errorf("kvm demo: VMM pid %d did not start counting: %w", res.Pid, err)
	}
	if err := sleepCtx(ctx, o.Count); err != nil {
		return res, err
	}
	if res.Before, err = ReadStatus(status); err != nil {
		return res, err
	}
	say("guest counting: counter=%d after %v (VM generation %d, %d exits)", res.Before.Counter, o.Count, res.Before.Generation, res.Before.Exits)
	_ = st

	// 2. Park and dump.
	args := []string{"--action-script", script}
	if o.Signals {
		args = nil
		if err := syscall.Kill(res.Pid, SigPark); err != nil {
			return res, err
		}
		if _, err := waitStatus(ctx, status, 10*time.Second, func(s Status) bool { return s.State == "parked" }); err != nil {
			return res, fmt.Errorf("kvm demo: VMM pid %d did not park: %w", res.Pid, err)
		}
		say("sent SIGUSR2: the VMM saved its vCPU state and closed the VM")
	} else {
		say("criu dump with --action-script %s (pre-dump: the VMM parks)", script)
	}
	began := time.Now()
	dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err = criurun.Dump(dctx, res.Pid, criurun.Opts{Criu: o.Criu, ImagesDir: images, LogFile: filepath.Join(o.Dir, "dump.log"), Args: args})
	cancel()
	res.DumpNs = int64(time.Since(began))
	if err != nil {
		_ = syscall.Kill(res.Pid, SigResume)
		return res, fmt.Errorf("kvm demo: %w", err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		return res, fmt.Errorf("kvm demo: pid %d still alive 10s after criu dump", res.Pid)
	}
	live = 0
	if res.Parked, err = ReadStatus(status); err != nil {
		return res, err
	}
	res.ImagesBytes = dirBytes(images)
	say("dumped in %v (%d KiB of images in %s); the VMM had parked at counter=%d, saved rip=%#x", time.Duration(res.DumpNs).Round(time.Millisecond),
		res.ImagesBytes/1024, images, res.Parked.ParkedAt, res.Parked.SavedRIP)
	say("pid %d is gone (reaped)", res.Pid)

	// 3. Restore; the restored task is re-parented to us (child subreaper) so that we can reap it.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	began = time.Now()
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	pid, err := criurun.Restore(rctx, criurun.Opts{Criu: o.Criu, ImagesDir: images, LogFile: filepath.Join(o.Dir, "restore.log"), Args: args})
	cancel()
	res.RestoreNs = int64(time.Since(began))
	if err != nil {
		return res, fmt.Errorf("kvm demo: %w", err)
	}
	res.RestoredPid, live = pid, pid
	say("criu restore: pid %d is back in %v", pid, time.Duration(res.RestoreNs).Round(time.Millisecond))
	if o.Signals {
		if err := syscall.Kill(pid, SigResume); err != nil {
			return res, err
		}
	}
	st, err = waitStatus(ctx, status, 10*time.Second, func(s Status) bool { return s.State == "running" && s.Generation > res.Parked.Generation })
	if err != nil {
		return res, fmt.Errorf("kvm demo: restored VMM pid %d did not re-create its VM: %w", pid, err)
	}
	how := "on SIGHUP"
	if st.AutoResume {
		how = "by itself (restore detected)"
	}
	say("the VMM re-created the VM %s over the restored guest RAM: generation %d, resumed at counter=%d", how, st.Generation, st.ResumedAt)
	if err := sleepCtx(ctx, o.Count); err != nil {
		return res, err
	}
	if res.After, err = ReadStatus(status); err != nil {
		return res, err
	}
	say("guest counting again: counter=%d after %v", res.After.Counter, o.Count)
	res.Kept = o.Keep
	if !res.After.Restored || res.After.ResumedAt != res.Parked.ParkedAt || res.After.Counter <= res.Parked.ParkedAt || res.After.Pid != res.Pid {
		return res, fmt.Errorf("%w: parked at %d, resumed at %d, now %d (restored=%v, pid %d)", ErrDemo,
			res.Parked.ParkedAt, res.After.ResumedAt, res.After.Counter, res.After.Restored, res.After.Pid)
	}
	say("OK: the guest counter continued from %d (it did not restart from 0): %d -> %d", res.Parked.ParkedAt, res.Parked.ParkedAt, res.After.Counter)
	if o.Keep {
		say("restored VMM left running: pid %d (kill it when done)", pid)
	}
	return res, nil
}

func waitStatus(ctx context.Context, path string, d time.Duration, ok func(Status) bool) (Status, error) {
	deadline := time.Now().Add(d)
	var last Status
	var lastErr error
	for time.Now().Before(deadline) {
		s, err := ReadStatus(path)
		if err == nil {
			if s.Error != "" {
				return s, fmt.Errorf("VMM reported: %s", s.Error)
			}
			if ok(s) {
				return s, nil
			}
			last = s
		}
		lastErr = err
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return last, err
		}
	}
	if lastErr != nil {
		return last, fmt.Errorf("no usable status in %s after %v: %w", path, d, lastErr)
	}
	return last, fmt.Errorf("timed out after %v; last status %+v", d, last)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func dirBytes(dir string) int64 {
	var n int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}
