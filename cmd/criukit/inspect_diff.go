package main

import (
	"fmt"
	"io"

	"github.com/criukit/criukit/ckpt"
	"github.com/criukit/criukit/inspect"
	"github.com/spf13/cobra"
)

var diffOpt struct {
	format   string
	json     bool
	noMemory bool
}

var inspectDiffCmd = &cobra.Command{
	Use:   "diff CHECKPOINT_A CHECKPOINT_B [--format tree|json] [--no-memory]",
	Short: "Deep diff of two checkpoints: processes, env, cmdlines, files, sockets, mounts, VMAs, pages",
	Long: `diff compares two checkpoints (archives or images directories, any mix) like checkpointctl diff,
and deeper:

  processes  added, removed, modified: command, command line, state, parent, environment
             (variables added, removed, changed)
  files      descriptors opened and closed (pid, fd, path)
  sockets    added, removed, and changed: TCP state, receive/send queue bytes, queued packets,
             buffer sizes
  mounts     the container's mounts and CRIU's mount points, added and removed
  memory     checkpointctl's size change, and per process and VMA: added, removed, resized,
             protection changes, and pages changed/same/new/gone by content hash

Command lines and environments are read from the dumped memory. --no-memory skips the page
hashing (which reads all dumped memory of both checkpoints). Unlike checkpointctl, checkpoints of
different containers (or plain dumps) can be compared; same_container says whether the ids match.`,
	Example: `  criukit inspect diff before.tar.zst after.tar.zst
  criukit inspect diff /tmp/dump1 /tmp/dump2 --format json | jq '.memory_changes.processes[].vmas'`,
	Args: cobra.ExactArgs(2),
	RunE: func(cmd *cobra.Command, args []string) error {
		asJSON, err := jsonFormat(diffOpt.format, diffOpt.json)
		if err != nil {
			return err
		}
		open := func(p string) (*ckpt.Checkpoint, error) {
			if diffOpt.noMemory {
				return inspect.OpenFor(p, inspect.All)
			}
			return inspect.Open(p, true)
		}
		a, err := open(args[0])
		if err != nil {
			return err
		}
		defer a.Close()
		b, err := open(args[1])
		if err != nil {
			return err
		}
		defer b.Close()
		d, err := inspect.Compare(a, b, inspect.DiffOptions{Memory: !diffOpt.noMemory})
		if err != nil {
			return err
		}
		return writeResult(cmd, asJSON, d, func(w io.Writer) { inspect.WriteDiff(w, d) })
	},
}

var listOpt struct {
	format string
	json   bool
}

var inspectListCmd = &cobra.Command{
	Use:   "list [DIR...]",
	Short: "List checkpoints in the default checkpoint directories (kubelet, podman, CRI-O) or in DIRs",
	Long: fmt.Sprintf(`list finds container checkpoints like checkpointctl list: archives named checkpoint-* (and any
*.tar, *.tar.gz, *.tar.zst that opens as a checkpoint) and unpacked container checkpoints
(userdata/checkpoint of podman and CRI-O containers). Without DIR it looks in:

  %s

DIR may be a glob pattern. For each it prints namespace, pod, container, engine, checkpoint time,
name, size and directory; --format json for scripts.`, joinLines(inspect.DefaultDirs)),
	Example: `  criukit inspect list
  criukit inspect list /srv/checkpoints /var/lib/kubelet/checkpoints --format json`,
	RunE: func(cmd *cobra.Command, args []string) error {
		asJSON, err := jsonFormat(listOpt.format, listOpt.json)
		if err != nil {
			return err
		}
		ls, err := inspect.List(args)
		if err != nil {
			return err
		}
		if ls == nil {
			ls = []inspect.Listed{} // JSON: [], not null
		}
		return writeResult(cmd, asJSON, ls, func(w io.Writer) {
			if len(ls) == 0 {
				fmt.Fprintln(w, "No checkpoints found")
				return
			}
			inspect.WriteList(w, ls)
		})
	},
}

func joinLines(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += "\n  "
		}
		out += x
	}
	return out
}

func init() {
	inspectDiffCmd.Flags().StringVar(&diffOpt.format, "format", "tree", "output format: tree or json")
	inspectDiffCmd.Flags().BoolVar(&diffOpt.json, "json", false, "same as --format json")
	inspectDiffCmd.Flags().BoolVar(&diffOpt.noMemory, "no-memory", false, "skip the per-VMA page hashing")
	inspectListCmd.Flags().StringVar(&listOpt.format, "format", "table", "output format: table or json")
	inspectListCmd.Flags().BoolVar(&listOpt.json, "json", false, "same as --format json")
	inspectCmd.AddCommand(inspectDiffCmd, inspectListCmd)
}
