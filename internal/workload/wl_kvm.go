package workload

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/criukit/criukit/kvm"
)

func init() {
	// kvm-counter [TICK]: the cooperative VMM of package kvm running its counter guest (one increment
	// per TICK, default 10ms). SIGUSR2 parks it (vCPU state saved, VM fds closed: dumpable), SIGHUP
	// resumes it; after a CRIU restore it resumes by itself. Status JSON: Dir/kvm-status.json (or
	// $CRIUKIT_KVM_STATUS). Ready info: "status=PATH".
	Register("kvm-counter", func(c *Ctx) error {
		tick := 10 * time.Millisecond
		if len(c.Args) > 0 {
			d, err := time.ParseDuration(c.Args[0])
			if err != nil || d <= 0 {
				return fmt.Errorf("kvm-counter: bad tick %q", c.Args[0])
			}
			tick = d
		}
		status := os.Getenv(kvm.EnvStatus)
		if status == "" {
			status = kvm.DefaultStatusPath(c.Dir)
		}
		m, err := kvm.New(kvm.Config{Tick: tick, StatusPath: status, AutoResume: true})
		if err != nil {
			return err
		}
		c.Keep(m)
		c.OnCheck(func() (string, error) {
			s := m.Status()
			if s.Error != "" {
				return "", fmt.Errorf("VMM: %s", s.Error)
			}
			return fmt.Sprintf("counter=%d state=%s generation=%d", s.Counter, s.State, s.Generation), nil
		})
		go m.Serve(context.Background())
		return c.Ready("status=" + status)
	})
	// kvm-hold: holds /dev/kvm, a kvm-vm fd, a kvm-vcpu:0 fd and its kvm_run mapping (CRIU refuses
	// to dump it). Ready info: "kvm=FD vm=FD vcpu=FD".
	Register("kvm-hold", func(c *Ctx) error {
		h, err := kvm.HoldFDs()
		if err != nil {
			return err
		}
		c.Keep(h)
		return c.Ready(fmt.Sprintf("kvm=%d vm=%d vcpu=%d", h.KVM, h.VM, h.VCPU))
	})
}
