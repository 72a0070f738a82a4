package main

import (
	"fmt"
	"strings"

	"github.com/criukit/criukit/internal/workload"
	"github.com/spf13/cobra"
)

var workloadCfg workload.Config

var workloadCmd = &cobra.Command{
	Use:    "workload [--ready-file F] [--dir D] NAME [ARGS...]",
	Short:  "Run a test workload (a process to dump with CRIU) in this process",
	Hidden: true,
	Long: `Runs one of criukit's test workloads in this process: it sets up kernel objects (files,
sockets, namespaces...), writes its pid to F.pid and then its info line to --ready-file F (both
atomically; a setup failure goes to F.err instead), and waits until it is killed. SIGUSR1 makes it
check its objects and write "ok ..." or "error: ..." to DIR/check. Start it in its own session with
stdio on /dev/null so that CRIU can dump it. Needs root for the ns workload.

Workloads: ` + strings.Join(workload.Names(), ", ") + `
  sleep [-children N]  nothing at all (optionally N child processes)
  files [--secret S]   regular and deleted files (small and big sparse ghosts), pipe, FIFO, unix
                       stream/dgram/abstract/bound sockets with queued data, memfd, eventfd, shared memory
  tcp [-6]             established TCP connection on 127.0.0.1 (::1) with data queued both ways;
                       dump and restore with --tcp-established
  ns [-veth=false]     init of new pid/net/ipc/uts/mnt namespaces plus a child: hostname, veth pair with
                       addresses and routes, tmpfs, SysV shm/msg/sem, pty; F.pid is the host pid to dump.
                       Restores (criu restore --root /) only with -veth=false.`,
	Example: `  setsid criukit workload --ready-file /tmp/wl.ready files </dev/null >/dev/null 2>&1 &
  while [ ! -e /tmp/wl.ready ]; do sleep 0.1; done
  criu dump -t $(cat /tmp/wl.ready.pid) -D imgs -v4 -o dump.log --network-lock skip`,
	Args: cobra.MinimumNArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		if err := workload.RunConfig(args[0], args[1:], workloadCfg); err != nil {
			return fmt.Errorf("workload: %w", err)
		}
		return nil
	},
}

func init() {
	workloadCmd.Flags().StringVar(&workloadCfg.ReadyFile, "ready-file", "", "file the workload writes its info line to when ready")
	workloadCmd.Flags().StringVar(&workloadCfg.Dir, "dir", "", "private work directory (default: a new temp dir)")
	workloadCmd.Flags().SetInterspersed(false)
	root.AddCommand(workloadCmd)
}
