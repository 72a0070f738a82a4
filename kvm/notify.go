package kvm

import (
	"context"
	"fmt"
	"syscall"
	"time"

	criu "github.com/checkpoint-restore/go-criu/v8"
)

// Notify parks and resumes a VMM from CRIU's RPC notifications (go-criu's Notify interface), the
// RPC counterpart of ActionScript: pre-dump parks it (and waits until its status file says
// "parked"), post-dump resumes it (relevant with leave-running), and post-resume resumes the
// restored VMM (whose pid comes with post-restore).
type Notify struct {
	criu.NoNotify
	Pid        int           // the VMM to dump
	StatusPath string        // its status file
	Timeout    time.Duration // how long to wait for "parked" (default 10s)

	restored int
}

var _ criu.Notify = (*Notify)(nil)

// PreDump parks the VMM.
func (n *Notify) PreDump() error {
	if err := syscall.Kill(n.Pid, SigPark); err != nil {
		return fmt.Errorf("kvm notify: park pid %d: %w", n.Pid, err)
	}
	d := n.Timeout
	if d <= 0 {
		d = 10 * time.Second
	}
	if _, err := waitStatus(context.Background(), n.StatusPath, d, func(s Status) bool { return s.State == "parked" && s.Pid == n.Pid }); err != nil {
		return fmt.Errorf("kvm notify: VMM pid %d did not park: %w", n.Pid, err)
	}
	return nil
}

// PostDump resumes the VMM (it only matters when criu leaves it running).
func (n *Notify) PostDump() error {
	_ = syscall.Kill(n.Pid, SigResume)
	return nil
}

// PostRestore records the restored VMM's pid.
func (n *Notify) PostRestore(pid int32) error {
	n.restored = int(pid)
	return nil
}

// PostResume resumes the restored VMM.
func (n *Notify) PostResume() error {
	pid := n.restored
	if pid == 0 {
		pid = n.Pid
	}
	if err := syscall.Kill(pid, SigResume); err != nil {
		return fmt.Errorf("kvm notify: resume pid %d: %w", pid, err)
	}
	return nil
}
