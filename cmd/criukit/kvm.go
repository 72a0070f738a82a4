package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/criukit/criukit/kvm"
	"github.com/spf13/cobra"
)

func init() {
	kvmCmd := &cobra.Command{
		Use:   "kvm",
		Short: "Checkpoint a KVM guest through CRIU with a cooperative VMM (demo)",
		Long: `CRIU cannot dump a process that holds KVM objects (/dev/kvm, kvm-vm and kvm-vcpu fds, the mmapped
kvm_run page: "Unknown shit 600 (anon_inode:kvm-vcpu:0)"), and no plugin can save them from outside,
because KVM refuses ioctls from any other mm. The way that works today is cooperation, like
cuda-checkpoint: before the dump the VMM saves the vCPU registers into its own memory and closes the
VM; guest RAM is ordinary anonymous memory, so CRIU dumps it; after restore the VMM re-creates the VM
over the restored RAM and loads the registers back.

"criukit kvm run" is such a VMM (raw KVM ioctls, one real-mode vCPU whose guest increments a counter
in guest RAM); "criukit kvm demo" drives the whole cycle with criu and shows the counter continuing.
The park/resume steps hook into criu as an --action-script (pre-dump, post-dump, post-resume) or, for
RPC users, as go-criu notifications (package kvm, type Notify).`,
	}

	var (
		tick     time.Duration
		status   string
		duration time.Duration
		noAuto   bool
	)
	runCmd := &cobra.Command{
		Use:   "run [--tick D] [--status FILE] [--duration D]",
		Short: "Run the cooperative VMM (guest counter) in the foreground",
		Long: `Runs the tiny VMM: the guest increments a 32-bit counter at guest address 0x2000, writes it to I/O
port 0x10 and halts; the VMM resumes it every --tick. The state (counter, VM generation, parked or
running, ...) is written as JSON to --status on every change and every 100ms.

Signals: SIGUSR2 parks (vCPU registers saved in the VMM's memory, vCPU/VM/kvm fds closed, kvm_run
unmapped: the process is now dumpable by criu); SIGHUP resumes (a new VM over the same guest RAM,
registers loaded back). A restored VMM also resumes by itself when it sees its process start time
changed (disable with --no-auto-resume). SIGINT/SIGTERM stop it.

To checkpoint it with criu yourself, start it as a session leader with stdio on /dev/null and use the
action script of "criukit kvm demo" (it parks on pre-dump and resumes on post-resume), or send
SIGUSR2 and wait for "parked" in the status file before "criu dump".`,
		Example: `  setsid criukit kvm run --status /tmp/vmm.json </dev/null >/dev/null 2>&1 &
  pid=$!; kill -USR2 $pid; sleep 0.2; grep -o '"state":"[a-z]*"' /tmp/vmm.json   # "parked"
  criu dump -t $pid -D img && wait $pid     # reap it: criu restore reuses the pid
  criu restore -D img -d                    # resumes by itself; the counter continues`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if status == "" {
				status = os.Getenv(kvm.EnvStatus)
			}
			m, err := kvm.New(kvm.Config{Tick: tick, StatusPath: status, AutoResume: !noAuto})
			if err != nil {
				return err
			}
			ctx := cmd.Context() // cancelled by SIGINT/SIGTERM (main)
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "VMM pid %d running (SIGUSR2: park, SIGHUP: resume)\n", os.Getpid())
			err = m.Serve(ctx)
			s := m.Status()
			fmt.Fprintf(cmd.OutOrStdout(), "stopped: counter=%d, VM generation %d, %d parks, %d exits\n", s.Counter, s.Generation, s.Parks, s.Exits)
			return err
		},
	}
	runCmd.Flags().DurationVar(&tick, "tick", 10*time.Millisecond, "pause between guest counter increments")
	runCmd.Flags().StringVar(&status, "status", "", "status JSON file (default $"+kvm.EnvStatus+", or none)")
	runCmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (0: run until a signal)")
	runCmd.Flags().BoolVar(&noAuto, "no-auto-resume", false, "after a restore, wait for SIGHUP instead of resuming by itself")

	var (
		count   time.Duration
		dir     string
		signals bool
		keep    bool
		asJSON  bool
		demoTk  time.Duration
	)
	demoCmd := &cobra.Command{
		Use:   "demo [--count D] [--signals] [--keep] [--dir DIR] [--json]",
		Short: "Checkpoint and restore a running KVM guest with criu, and show it continue",
		Long: `Runs the whole cooperative cycle and narrates it:
  1. starts "criukit kvm run" as a session leader and lets the guest count for --count;
  2. criu dump with an --action-script whose pre-dump step makes the VMM park (or, with --signals,
     sends SIGUSR2 itself and waits for "parked");
  3. waits until the dumped VMM is gone (reaped), then criu restore -d --pidfile;
  4. the restored VMM re-creates its VM over the restored guest RAM, and the counter goes on from the
     value it had at the dump, not from 0. The demo fails if it does not.
Needs root, /dev/kvm and criu >= 4.2 (CRIUKIT_CRIU, /usr/local/sbin/criu or PATH).`,
		Example: `  sudo criukit kvm demo
  sudo criukit kvm demo --count 3s --dir /tmp/kvmdemo --json   # keep images and logs in /tmp/kvmdemo`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			if dir != "" {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return err
				}
			}
			opts := kvm.DemoOptions{
				Argv:    []string{exe, "kvm", "run", "--tick", demoTk.String()},
				Dir:     dir,
				Count:   count,
				Signals: signals,
				Keep:    keep,
			}
			if !asJSON {
				opts.Progress = cmd.OutOrStdout()
			}
			ctx := cmd.Context() // cancelled by SIGINT/SIGTERM (main)
			res, err := kvm.Demo(ctx, opts)
			if asJSON && res != nil {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if jerr := enc.Encode(res); jerr != nil {
					return jerr
				}
			}
			return err
		},
	}
	demoCmd.Flags().DurationVar(&count, "count", time.Second, "how long the guest counts before the dump and after the restore")
	demoCmd.Flags().StringVar(&dir, "dir", "", "keep images, logs and the status file here (default: a temp dir, removed)")
	demoCmd.Flags().BoolVar(&signals, "signals", false, "park/resume with signals from the demo instead of criu's action script")
	demoCmd.Flags().BoolVar(&keep, "keep", false, "leave the restored VMM running")
	demoCmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	demoCmd.Flags().DurationVar(&demoTk, "tick", 10*time.Millisecond, "guest tick of the VMM")

	kvmCmd.AddCommand(runCmd, demoCmd)
	root.AddCommand(kvmCmd)
}
