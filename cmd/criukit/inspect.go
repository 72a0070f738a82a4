package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/criukit/criukit/ckpt"
	"github.com/criukit/criukit/inspect"
	"github.com/criukit/criukit/internal/outfile"
	"github.com/spf13/cobra"
)

var inspectOpt struct {
	o      inspect.Options
	all    bool
	format string
	json   bool
	html   string
	pid    uint32
	memory bool
}

var inspectCmd = &cobra.Command{
	Use:   "inspect CHECKPOINT... [--all|--ps-tree|--files|...] [--format tree|json] [--html FILE]",
	Short: "Look inside checkpoints: container, process tree, cmdlines, env, files, sockets, mounts, memory",
	Long: `inspect shows what a checkpoint holds, like checkpointctl inspect, for container checkpoint
archives (podman, CRI-O, containerd: tar, tar.gz, tar.zst) and plain CRIU images directories alike.
Without flags it shows the container and the checkpoint sizes; each flag adds a view:

  --ps-tree        process tree (pid, command, state)
  --ps-tree-cmd    ... with command lines, read from the dumped memory (mm arg_start..arg_end)
  --ps-tree-env    ... with environments, read from the dumped memory
  --files          open files, cwd and root of every process
  --sockets        sockets: protocol, state, addresses, buffers, TCP queue sizes, queued packets
  --mounts         the container's mounts (OCI spec); CRIU's mount points in JSON
  --stats          CRIU's dump statistics (stats-dump)
  --metadata       pod, namespace and annotations
  --memory         per-process memory sizes (like memparse)
  --pid P          only process P and its children
  --all            all of the above

--format json (or --json) prints a JSON array, one object per checkpoint, with checkpointctl's
field names plus criukit's (argv, ordered environment, ppid/pgid/sid, TCP queues...).
--html FILE writes a self-contained report (process tree, per-VMA memory map with present, parent
and zero pages, files, sockets, statistics) that opens in a browser from disk.

Plain tars are read in place; compressed archives are decompressed once to an unlinked temporary
file (only checkpoint/ and the metadata; the pages only when a view needs memory).

Related: criukit inspect show | memparse | search | diff | list.`,
	Example: `  criukit inspect /var/lib/kubelet/checkpoints/checkpoint-web.tar --all
  criukit inspect ckpt.tar.zst --ps-tree-env --pid 1 --format json | jq '.[0].process_tree.environment_variables'
  criukit inspect /tmp/dump --ps-tree-cmd --files --sockets
  criukit inspect ckpt.tar.zst --html report.html`,
	Args: cobra.MinimumNArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		o := inspectOpt.o
		if inspectOpt.all || inspectOpt.html != "" {
			o = inspect.All
		}
		o.Pid = inspectOpt.pid
		if inspectOpt.memory {
			o.Memory = true
		}
		asJSON, err := jsonFormat(inspectOpt.format, inspectOpt.json)
		if err != nil {
			return err
		}
		if inspectOpt.html != "" {
			if len(args) != 1 {
				return fmt.Errorf("--html takes one checkpoint (got %d)", len(args))
			}
			return runInspectHTML(args[0], o, inspectOpt.html)
		}
		return runInspect(cmd.OutOrStdout(), args, o, asJSON)
	},
}

func jsonFormat(format string, asJSON bool) (bool, error) {
	switch format {
	case "", "tree", "table":
		return asJSON, nil
	case "json":
		return true, nil
	}
	return false, fmt.Errorf("--format %q: want tree or json", format)
}

func collect(p string, o inspect.Options) (*inspect.Report, *ckpt.Checkpoint, error) {
	c, err := inspect.OpenFor(p, o)
	if err != nil {
		return nil, nil, err
	}
	r, err := inspect.Collect(c, o)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return r, c, nil
}

func runInspect(w io.Writer, paths []string, o inspect.Options, asJSON bool) error {
	var rs []*inspect.Report
	for _, p := range paths {
		r, c, err := collect(p, o)
		if err != nil {
			return err
		}
		c.Close()
		rs = append(rs, r)
	}
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	if asJSON {
		return writeJSON(bw, rs)
	}
	for _, r := range rs {
		inspect.WriteTree(bw, r)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeResult writes v to the command's output, buffered: as indented JSON with asJSON, else with text.
func writeResult(cmd *cobra.Command, asJSON bool, v any, text func(io.Writer)) error {
	w := bufio.NewWriter(cmd.OutOrStdout())
	defer w.Flush()
	if asJSON {
		return writeJSON(w, v)
	}
	text(w)
	return nil
}

func runInspectHTML(p string, o inspect.Options, out string) error {
	c, err := inspect.OpenFor(p, o)
	if err != nil {
		return err
	}
	defer c.Close()
	return outfile.Write(out, func(w io.Writer) error { return inspect.WriteHTML(w, c, o) })
}

var showOpt struct {
	format string
	json   bool
}

var inspectShowCmd = &cobra.Command{
	Use:   "show CHECKPOINT...",
	Short: "One line per checkpoint: container, image, id, runtime, created, engine, sizes (checkpointctl show)",
	Long: `show prints checkpointctl show's overview for any number of checkpoints at once: container name,
image, id, runtime, creation time, engine, checkpoint size, root file system diff size, plus the
pages size and the archive's own size and compression. Images directories show as "CRIU". Only
headers and metadata are read (pages of compressed archives are skipped while decompressing).`,
	Example: `  criukit inspect show /var/lib/containers/storage/*.tar.zst
  criukit inspect show a.tar.gz b.tar /tmp/dump --format json`,
	Args: cobra.MinimumNArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		asJSON, err := jsonFormat(showOpt.format, showOpt.json)
		if err != nil {
			return err
		}
		var rs []*inspect.Report
		for _, p := range args {
			r, c, err := collect(p, inspect.Options{})
			if err != nil {
				return err
			}
			c.Close()
			rs = append(rs, r)
		}
		return writeResult(cmd, asJSON, rs, func(w io.Writer) { inspect.WriteShow(w, rs) })
	},
}

var memOpt struct {
	pid     uint32
	search  []string
	regex   []string
	context int
	output  string
	format  string
	json    bool
	vma     string
	prot    string
	addr    string
	max     int
	stats   bool
}

var memparseCmd = &cobra.Command{
	Use:     "memparse CHECKPOINT... [--pid P [--output FILE]] [--search S|--search-regex RE ...]",
	Aliases: []string{"mem", "search"},
	Short:   "Memory of a checkpoint: per-process sizes, hexdump of a process, search (checkpointctl memparse)",
	Long: `memparse works on the dumped memory like checkpointctl memparse, on archives and images dirs:

  memparse CKPT...               per-process memory sizes (dumped pages, shared mappings, present,
                                 in parent, virtual size, VMA count)
  memparse CKPT --pid P          hexdump of every dumped page of process P (--output FILE to write it)
  memparse CKPT --search S       search memory; every process unless --pid; repeat --search and
                                 --search-regex to look for several patterns in one pass

Search filters (criukit): --pid (repeatable), --vma heap|stack|anon|file|shmem|memfd|vdso|... or a
path substring (comma-separated), --prot rw / -x (rights the VMA must have / lack), --addr
START-END. --context N adds N bytes around each hit. Literal patterns match raw bytes; regexps are
Go RE2 on raw bytes. --format json prints hits with vaddr and the VMA (start, end, kind, path, prot).
Pages are streamed from pages-*.img in 4 MiB chunks (in place for plain tars and directories);
--stats prints the bytes scanned and the rate on stderr.`,
	Example: `  criukit inspect memparse ckpt.tar.zst
  criukit inspect memparse ckpt.tar --pid 1 | less
  criukit inspect memparse ckpt.tar --search PASSWORD= --context 32
  criukit inspect search /tmp/dump --search-regex '[a-z0-9.]+@example\.com' --vma heap,anon --format json
  criukit inspect search ckpt.tar.zst --search secret --search token --prot rw --addr 0x7f0000000000-0x7fffffffffff`,
	Args: cobra.MinimumNArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		asJSON, err := jsonFormat(memOpt.format, memOpt.json)
		if err != nil {
			return err
		}
		w := bufio.NewWriter(cmd.OutOrStdout())
		defer w.Flush()
		if len(memOpt.search)+len(memOpt.regex) > 0 {
			return runSearch(w, cmd.ErrOrStderr(), args, asJSON)
		}
		if memOpt.pid != 0 {
			if len(args) != 1 {
				return fmt.Errorf("--pid hexdump takes one checkpoint (got %d)", len(args))
			}
			return runMemDump(w, args[0], memOpt.pid, memOpt.output)
		}
		type sizes struct {
			Path      string                `json:"path"`
			Processes []inspect.ProcMemSize `json:"processes"`
		}
		var all []sizes
		for _, p := range args {
			c, err := inspect.Open(p, false)
			if err != nil {
				return err
			}
			im, err := inspect.NewImages(c)
			if err != nil {
				c.Close()
				return err
			}
			ms, err := im.MemSizes()
			c.Close()
			if err != nil {
				return err
			}
			if asJSON {
				all = append(all, sizes{p, ms})
			} else {
				inspect.WriteMemSizes(w, p, ms)
			}
		}
		if asJSON {
			return writeJSON(w, all)
		}
		return nil
	},
}

func parseRange(s string) (lo, hi uint64, err error) {
	if s == "" {
		return 0, 0, nil
	}
	a, b, ok := strings.Cut(s, "-")
	if lo, err = strconv.ParseUint(a, 0, 64); err != nil || !ok {
		return 0, 0, fmt.Errorf("--addr %q: want START-END like 0x400000-0x500000", s)
	}
	if hi, err = strconv.ParseUint(b, 0, 64); err != nil || hi <= lo {
		return 0, 0, fmt.Errorf("--addr %q: want START-END with END > START", s)
	}
	return lo, hi, nil
}

func runSearch(w *bufio.Writer, errw io.Writer, paths []string, asJSON bool) error {
	lo, hi, err := parseRange(memOpt.addr)
	if err != nil {
		return err
	}
	o := inspect.SearchOptions{Patterns: memOpt.search, Regexps: memOpt.regex, VMA: memOpt.vma, Prot: memOpt.prot,
		From: lo, To: hi, Context: memOpt.context, Max: memOpt.max}
	if memOpt.pid != 0 {
		o.Pids = []uint32{memOpt.pid}
	}
	for _, re := range o.Regexps {
		if _, err := regexp.Compile(re); err != nil {
			return fmt.Errorf("--search-regex %q: %w", re, err)
		}
	}
	type result struct {
		Path  string              `json:"path"`
		Hits  []inspect.Hit       `json:"hits"`
		Stats inspect.SearchStats `json:"stats"`
	}
	var results []result
	for _, p := range paths {
		res := result{Path: p, Hits: []inspect.Hit{}}
		if !asJSON {
			fmt.Fprintf(w, "\nSearching the memory of %s\n\n", p)
			fmt.Fprintf(w, "%-7s %-16s %-16s %-20s %s\n", "PID", "COMMAND", "ADDRESS", "VMA", "MATCH")
		}
		n := 0
		st, err := inspect.SearchPath(p, o, func(h inspect.Hit) error {
			n++
			if asJSON {
				res.Hits = append(res.Hits, h)
				return nil
			}
			v := h.VMA.Kind
			if h.VMA.Path != "" {
				v += " " + h.VMA.Path
			}
			_, err := fmt.Fprintf(w, "%-7d %-16s %016x %-20s %s\n", h.Pid, h.Comm, h.Vaddr, v, h.Match)
			return err
		})
		if err != nil {
			return err
		}
		res.Stats = st
		results = append(results, res)
		if !asJSON && n == 0 {
			fmt.Fprintf(w, "No matches in %s\n", p)
		}
		if memOpt.stats {
			fmt.Fprintf(errw, "%s: %d hits, %d bytes of %d tasks scanned in %v (%.2f GB/s)\n", p, st.Hits, st.Bytes, st.Tasks, st.Elapsed, st.GBps())
		}
	}
	if asJSON {
		return writeJSON(w, results)
	}
	return nil
}

func runMemDump(w *bufio.Writer, p string, pid uint32, output string) error {
	c, err := inspect.Open(p, true)
	if err != nil {
		return err
	}
	defer c.Close()
	im, err := inspect.NewImages(c)
	if err != nil {
		return err
	}
	if err := im.HexDump(io.Discard, pid, false, true); err != nil { // checks the pid only
		return err
	}
	dump := func(out io.Writer) error {
		fmt.Fprintf(out, "Address           Hexadecimal                                       ASCII\n")
		fmt.Fprintf(out, "-------------------------------------------------------------------------------------\n")
		return im.HexDump(out, pid, output == "", false)
	}
	if output != "" {
		return outfile.Write(output, dump)
	}
	fmt.Fprintf(w, "\nDisplaying memory pages content for process ID %d from checkpoint: %s\n\n", pid, p)
	return dump(w)
}

func init() {
	f := inspectCmd.Flags()
	f.BoolVar(&inspectOpt.o.PsTree, "ps-tree", false, "process tree")
	f.BoolVar(&inspectOpt.o.Cmdline, "ps-tree-cmd", false, "process tree with command lines (from dumped memory)")
	f.BoolVar(&inspectOpt.o.Env, "ps-tree-env", false, "process tree with environments (from dumped memory)")
	f.BoolVar(&inspectOpt.o.Files, "files", false, "open files of every process")
	f.BoolVar(&inspectOpt.o.Sockets, "sockets", false, "sockets of every process")
	f.BoolVar(&inspectOpt.o.Mounts, "mounts", false, "mounts")
	f.BoolVar(&inspectOpt.o.Stats, "stats", false, "CRIU dump statistics")
	f.BoolVar(&inspectOpt.o.Metadata, "metadata", false, "pod, namespace, annotations")
	f.BoolVar(&inspectOpt.memory, "memory", false, "per-process memory sizes")
	f.Uint32VarP(&inspectOpt.pid, "pid", "p", 0, "only this process and its children")
	f.BoolVar(&inspectOpt.all, "all", false, "every view")
	f.StringVar(&inspectOpt.format, "format", "tree", "output format: tree or json")
	f.BoolVar(&inspectOpt.json, "json", false, "same as --format json")
	f.StringVar(&inspectOpt.html, "html", "", "write a self-contained HTML report to FILE")

	inspectShowCmd.Flags().StringVar(&showOpt.format, "format", "table", "output format: table or json")
	inspectShowCmd.Flags().BoolVar(&showOpt.json, "json", false, "same as --format json")

	m := memparseCmd.Flags()
	m.Uint32VarP(&memOpt.pid, "pid", "p", 0, "process to dump or search")
	m.StringVarP(&memOpt.output, "output", "o", "", "write the hexdump to FILE")
	m.VarP((*patternList)(&memOpt.search), "search", "s", "literal pattern (repeatable)")
	m.VarP((*patternList)(&memOpt.regex), "search-regex", "r", "regular expression, Go RE2 syntax (repeatable)")
	m.IntVarP(&memOpt.context, "context", "c", 0, "bytes of context around each hit")
	m.StringVar(&memOpt.vma, "vma", "", "only VMAs of these kinds (heap,stack,anon,file,shmem,memfd,vdso,...) or paths containing it")
	m.StringVar(&memOpt.prot, "prot", "", `only VMAs with these rights ("rw") or without them ("-x")`)
	m.StringVar(&memOpt.addr, "addr", "", "only addresses START-END (0x...-0x...)")
	m.IntVar(&memOpt.max, "max", 0, "stop after N hits (0: all)")
	m.BoolVar(&memOpt.stats, "stats", false, "print bytes scanned and GB/s on stderr")
	m.StringVar(&memOpt.format, "format", "table", "output format: table or json")
	m.BoolVar(&memOpt.json, "json", false, "same as --format json")

	inspectCmd.AddCommand(inspectShowCmd, memparseCmd)
	root.AddCommand(inspectCmd)
}

// patternList is a repeatable string flag; setting it to "" (its default) clears it, so resetting
// the flags to their defaults really empties it.
type patternList []string

func (p *patternList) String() string { return strings.Join(*p, ",") }
func (p *patternList) Type() string   { return "pattern" }
func (p *patternList) Set(v string) error {
	if v == "" {
		*p = nil
		return nil
	}
	*p = append(*p, v)
	return nil
}
