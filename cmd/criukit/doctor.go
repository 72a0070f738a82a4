package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/criukit/criukit/doctor"
	"github.com/spf13/cobra"
)

var doctorFlags struct {
	pid    int
	json   bool
	criu   string
	noCriu bool
	args   string
}

var doctorCmd = &cobra.Command{
	Use:   "doctor [--pid PID] [--json] [--dump-args '...']",
	Short: "Explain before a dump what will fail and why",
	Long: `doctor checks the system and, with --pid, a live process tree, and explains what would make
criu dump (or restore) fail, where, and which CRIU option or action fixes it:

  system   kernel features (soft-dirty, userfaultfd, PAGEMAP_SCAN, time namespaces, clone3 set_tid,
           nftables network lock) from criu check --feature, the kernel config and probes; the
           CRIU version against the kernel (CRIU < 4.2 cannot dump inet sockets on Linux >= 6.16)
  tree     fds CRIU cannot dump (KVM VM/vCPU and /dev/kvm, userfaultfd, io_uring, perf events,
           VFIO and other devices, unsupported anon inodes), mapped kvm_run areas, deleted files
           over the ghost limit (1 MiB default), connected TCP sockets without --tcp-established,
           a root that is not a session leader, mounts that need --external or external masters

Each finding has a severity (error: the dump will fail; warning: it may; info), what, where
(pid, fd, path) and the fix. Finding ids are the ids of the known-issue rules that match the
CRIU log of the failure. Pass the dump options you intend to use with --dump-args, so that
e.g. --tcp-established or --ghost-limit are taken into account. Exit status 1 when there are errors.`,
	Example: `  criukit doctor                       # kernel and CRIU only
  criukit doctor --pid 1234
  criukit doctor --pid 1234 --dump-args '--tcp-established --ghost-limit 8M'
  criukit doctor --pid 1234 --json | jq '.findings[] | select(.severity=="error")'`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		stdout := cmd.OutOrStdout()
		o := doctor.Options{Pid: doctorFlags.pid, Criu: doctorFlags.criu, NoCriu: doctorFlags.noCriu, DumpArgs: strings.Fields(doctorFlags.args)}
		r, err := doctor.Run(cmd.Context(), o)
		if err != nil {
			return fmt.Errorf("doctor: %w", err)
		}
		if doctorFlags.json {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(r); err != nil {
				return err
			}
		} else {
			printDoctor(stdout, r)
		}
		if n := r.Errors(); n > 0 {
			return fmt.Errorf("doctor: %d problem(s) will make the dump fail", n)
		}
		return nil
	},
}

func printDoctor(stdout io.Writer, r *doctor.Report) {
	fmt.Fprintf(stdout, "kernel %s (%s), criu %s %s\n", r.Kernel, r.Arch, r.CriuVersion, r.Criu)
	fmt.Fprintln(stdout, "features:")
	for _, f := range r.Features {
		mark := "yes"
		if !f.OK {
			mark = "NO "
		}
		fmt.Fprintf(stdout, "  %s  %-24s %s", mark, f.Name, f.Source)
		if f.Needed != "" && !f.OK {
			fmt.Fprintf(stdout, "  (needed for %s)", f.Needed)
		}
		fmt.Fprintln(stdout)
	}
	if r.Pid > 0 {
		fmt.Fprintf(stdout, "process tree of pid %d: %d process(es)\n", r.Pid, len(r.Pids))
	}
	if len(r.Findings) == 0 {
		fmt.Fprintln(stdout, "no problems found")
		return
	}
	fmt.Fprintf(stdout, "findings (%d):\n", len(r.Findings))
	for _, f := range r.Findings {
		fmt.Fprintf(stdout, "  [%s] %s: %s\n", strings.ToUpper(string(f.Severity)), f.ID, f.What)
		if f.Where != "" {
			fmt.Fprintf(stdout, "      where: %s\n", f.Where)
		}
		if f.Why != "" {
			fmt.Fprintf(stdout, "      why:   %s\n", f.Why)
		}
		fmt.Fprintf(stdout, "      fix:   %s\n", f.Fix)
	}
}

func init() {
	doctorCmd.Flags().IntVar(&doctorFlags.pid, "pid", 0, "root of the process tree to examine")
	doctorCmd.Flags().BoolVar(&doctorFlags.json, "json", false, "print JSON")
	doctorCmd.Flags().StringVar(&doctorFlags.criu, "criu", "", "criu binary (default: $CRIUKIT_CRIU, /usr/local/sbin/criu, PATH)")
	doctorCmd.Flags().BoolVar(&doctorFlags.noCriu, "no-criu", false, "do not run criu check (kernel config and probes only)")
	doctorCmd.Flags().StringVar(&doctorFlags.args, "dump-args", "", "criu dump options you will use (space separated)")
	root.AddCommand(doctorCmd)
}
