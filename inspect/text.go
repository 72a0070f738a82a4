package inspect

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// node is a line of a tree view with its children.
type node struct {
	text string
	kids []*node
}

func (n *node) add(format string, args ...any) *node {
	k := &node{text: fmt.Sprintf(format, args...)}
	n.kids = append(n.kids, k)
	return k
}

func (n *node) write(w io.Writer, prefix string) {
	for i, k := range n.kids {
		branch, next := "├── ", "│   "
		if i == len(n.kids)-1 {
			branch, next = "└── ", "    "
		}
		lines := strings.Split(k.text, "\n")
		fmt.Fprintf(w, "%s%s%s\n", prefix, branch, lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(w, "%s%s%s\n", prefix, next, l)
		}
		k.write(w, prefix+next)
	}
}

// FormatTime renders CRIU's microsecond statistics like checkpointctl ("19.15ms").
func FormatTime(us uint32) string {
	return (time.Duration(us) * time.Microsecond).String()
}

// WriteTree prints a report as a tree (checkpointctl inspect's default view).
func WriteTree(w io.Writer, r *Report) {
	fmt.Fprintf(w, "\nDisplaying checkpoint tree view from %s\n\n", r.Path)
	root := &node{}
	title := r.Container.Name
	if title == "" {
		title = r.Path
	}
	fmt.Fprintln(w, title)
	c := r.Container
	if c.Engine != "" {
		root.add("Image: %s", c.Image)
		root.add("ID: %s", c.ID)
		root.add("Runtime: %s", c.Runtime)
		root.add("Created: %s", c.Created)
		if c.Checkpointed != "" {
			root.add("Checkpointed: %s", c.Checkpointed)
		}
		root.add("Engine: %s", c.Engine)
		if c.IP != "" {
			root.add("IP: %s", c.IP)
		}
		if c.MAC != "" {
			root.add("MAC: %s", c.MAC)
		}
		if len(c.Networks) > 0 {
			nw := root.add("Networks")
			for _, n := range c.Networks {
				nn := nw.add("%s", n.Name)
				var ifs []string
				for k := range n.Interfaces {
					ifs = append(ifs, k)
				}
				sort.Strings(ifs)
				for _, k := range ifs {
					i := n.Interfaces[k]
					nn.add("%s: IP %s, MAC %s, gateway %s", k, i.IP, i.MAC, i.Gateway)
				}
			}
		}
	} else {
		root.add("Kind: CRIU images directory (%s)", r.Kind)
	}
	cs := root.add("Checkpoint size: %s", ByteSize(r.Sizes.Total))
	if r.Sizes.Pages > 0 {
		cs.add("Memory pages size: %s", ByteSize(r.Sizes.Pages))
	}
	if r.Compression != "" {
		cs.add("Archive: %s (%s)", ByteSize(r.Sizes.Archive), r.Compression)
	}
	if r.Sizes.RootfsDiff > 0 {
		root.add("Root FS diff size: %s", ByteSize(r.Sizes.RootfsDiff))
	}
	if s := r.Stats; s != nil {
		n := root.add("CRIU dump statistics")
		n.add("Freezing time: %s", FormatTime(s.FreezingTime))
		n.add("Frozen time: %s", FormatTime(s.FrozenTime))
		n.add("Memdump time: %s", FormatTime(s.MemdumpTime))
		n.add("Memwrite time: %s", FormatTime(s.MemwriteTime))
		n.add("Pages scanned: %d", s.PagesScanned)
		n.add("Pages written: %d", s.PagesWritten)
		if s.PagesSkippedParent > 0 {
			n.add("Pages skipped (in parent): %d", s.PagesSkippedParent)
		}
		if s.PagesLazy > 0 {
			n.add("Pages lazy: %d", s.PagesLazy)
		}
	}
	if m := r.Metadata; m != nil {
		n := root.add("Metadata")
		if m.PodName != "" {
			n.add("Pod name: %s", m.PodName)
		}
		if m.Namespace != "" {
			n.add("Kubernetes namespace: %s", m.Namespace)
		}
		if len(m.Annotations) > 0 {
			a := n.add("Annotations")
			keys := make([]string, 0, len(m.Annotations))
			for k := range m.Annotations {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				a.add("%s: %s", k, m.Annotations[k])
			}
		}
	}
	if len(r.Mounts) > 0 {
		n := root.add("Overview of mounts")
		for _, m := range r.Mounts {
			n.add("Destination: %s\nType: %s\nSource: %s", m.Destination, m.Type, m.Source)
		}
	}
	if len(r.MountPoints) > 0 && r.Container.Engine == "" {
		n := root.add("CRIU mount points")
		for _, m := range r.MountPoints {
			n.add("%d %s (%s, %s)", m.ID, m.Mountpoint, m.FsType, m.Source)
		}
	}
	files := map[uint32][]OpenFile{}
	for _, f := range r.Files {
		files[f.Pid] = f.Files
	}
	socks := map[uint32][]Socket{}
	for _, s := range r.Sockets {
		socks[s.Pid] = s.Sockets
	}
	mem := map[uint32]ProcMemSize{}
	for _, m := range r.Memory {
		mem[m.Pid] = m
	}
	roots := r.Roots
	if roots == nil && r.Tree != nil {
		roots = []*Process{r.Tree}
	}
	if len(roots) > 0 {
		pt := root.add("Process tree")
		var add func(parent *node, p *Process)
		add = func(parent *node, p *Process) {
			n := parent.add("[%d]  %s", p.Pid, p.Comm)
			if p.State != "" && p.State != "Alive" {
				n.text += " (" + p.State + ")"
			}
			if p.Cmdline != "" {
				n.add("Cmdline: %s", p.Cmdline)
			}
			if len(p.EnvList) > 0 {
				e := n.add("Environment variables")
				for _, kv := range p.EnvList {
					e.add("%s", kv)
				}
			}
			if p.Error != "" {
				n.add("Error: %s", p.Error)
			}
			if m, ok := mem[p.Pid]; ok {
				n.add("Memory: %s dumped (%s shared mappings, %s virtual)", ByteSize(m.MemoryBytes), ByteSize(m.SharedBytes), ByteSize(m.VirtualBytes))
			}
			if fs := files[p.Pid]; len(fs) > 0 {
				f := n.add("Open files")
				for _, of := range fs {
					f.add("[%s]  %s", of.FD, of.Path)
				}
			}
			if ss := socks[p.Pid]; len(ss) > 0 {
				s := n.add("Open sockets")
				for _, sk := range ss {
					s.add("%s", socketLine(sk))
				}
			}
			for _, k := range p.Children {
				add(n, k)
			}
		}
		for _, p := range roots {
			add(pt, p)
		}
	} else {
		// Files or sockets without the tree: group by pid.
		if len(r.Files) > 0 {
			n := root.add("Open files")
			for _, tf := range r.Files {
				p := n.add("[%d]", tf.Pid)
				for _, of := range tf.Files {
					p.add("[%s]  %s", of.FD, of.Path)
				}
			}
		}
		if len(r.Sockets) > 0 {
			n := root.add("Open sockets")
			for _, ts := range r.Sockets {
				p := n.add("[%d]", ts.Pid)
				for _, sk := range ts.Sockets {
					p.add("%s", socketLine(sk))
				}
			}
		}
		if len(r.Memory) > 0 {
			n := root.add("Memory")
			for _, m := range r.Memory {
				n.add("[%d] %s: %s dumped, %s shared", m.Pid, m.Comm, ByteSize(m.MemoryBytes), ByteSize(m.SharedBytes))
			}
		}
	}
	for _, wmsg := range r.Warnings {
		root.add("Warning: %s", wmsg)
	}
	root.write(w, "")
}

func socketLine(s Socket) string {
	d := s.Data
	var b strings.Builder
	fmt.Fprintf(&b, "[%s", s.Protocol)
	if d.State != "" {
		fmt.Fprintf(&b, " (%s)", d.State)
	}
	fmt.Fprintf(&b, "] fd %d", d.Fd)
	switch {
	case d.Family == "UNIX":
		name := UnixName(d.Address)
		fmt.Fprintf(&b, " %s %s ino %d", d.SockType, name, d.Ino)
		if d.Peer != 0 {
			fmt.Fprintf(&b, " peer %d", d.Peer)
		}
	case d.Source != "":
		fmt.Fprintf(&b, " %s -> %s", hostPort(d.Source, d.SourcePort), hostPort(d.Dest, d.DestPort))
	}
	if d.InqBytes+d.OutqBytes > 0 {
		fmt.Fprintf(&b, " (recv queue %d B, send queue %d B)", d.InqBytes, d.OutqBytes)
	}
	if d.QueuedPackets > 0 {
		fmt.Fprintf(&b, " (%d queued packets, %d B)", d.QueuedPackets, d.QueuedBytes)
	}
	fmt.Fprintf(&b, " (send buf %s, recv buf %s)", d.SendBuf, d.RecvBuf)
	return b.String()
}

func hostPort(h string, p uint32) string {
	if strings.Contains(h, ":") {
		return fmt.Sprintf("[%s]:%d", h, p)
	}
	return fmt.Sprintf("%s:%d", h, p)
}

// WriteShow prints checkpointctl show's table for several checkpoints.
func WriteShow(w io.Writer, rs []*Report) {
	tw := newTable(w, "CONTAINER", "IMAGE", "ID", "RUNTIME", "CREATED", "ENGINE", "CHKPT SIZE", "ROOT FS DIFF SIZE", "PAGES", "ARCHIVE")
	for _, r := range rs {
		c := r.Container
		id := c.ID
		if len(id) > 12 {
			id = id[:12]
		}
		name := c.Name
		if c.Engine == "" {
			name, c.Engine = r.Path, "CRIU ("+string(r.Kind)+")"
		}
		arch := "-"
		if r.Compression != "" {
			arch = ByteSize(r.Sizes.Archive) + " " + r.Compression
		}
		tw.row(name, dash(c.Image), dash(id), dash(c.Runtime), dash(c.Created), c.Engine, ByteSize(r.Sizes.Total), ByteSize(r.Sizes.RootfsDiff), ByteSize(r.Sizes.Pages), arch)
	}
	tw.flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteMemSizes prints memparse's table.
func WriteMemSizes(w io.Writer, path string, ms []ProcMemSize) {
	fmt.Fprintf(w, "\nDisplaying processes memory sizes from %s\n\n", path)
	tw := newTable(w, "PID", "PROCESS NAME", "MEMORY SIZE", "SHARED MEMORY SIZE", "PRESENT", "IN PARENT", "VIRTUAL", "VMAS")
	for _, m := range ms {
		tw.row(fmt.Sprint(m.Pid), m.Comm, ByteSize(m.MemoryBytes), ByteSize(m.SharedBytes), ByteSize(m.PresentBytes), ByteSize(m.ParentBytes), ByteSize(m.VirtualBytes), fmt.Sprint(m.VMAs))
	}
	tw.flush()
}

type table struct {
	w    io.Writer
	rows [][]string
}

func newTable(w io.Writer, head ...string) *table {
	t := &table{w: w}
	t.rows = append(t.rows, head)
	u := make([]string, len(head))
	for i, h := range head {
		u[i] = strings.Repeat("-", len(h))
	}
	t.rows = append(t.rows, u)
	return t
}

func (t *table) row(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) flush() {
	width := make([]int, len(t.rows[0]))
	for _, r := range t.rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	for _, r := range t.rows {
		var b strings.Builder
		for i, c := range r {
			if i == len(r)-1 {
				b.WriteString(c)
			} else {
				fmt.Fprintf(&b, "%-*s   ", width[i], c)
			}
		}
		fmt.Fprintln(t.w, strings.TrimRight(b.String(), " "))
	}
}

// UnixName renders a unix socket name for people: abstract names as @name, the kernel's trailing
// NULs dropped, other control bytes escaped; "-" for unnamed sockets.
func UnixName(raw string) string {
	if raw == "" {
		return "-"
	}
	abstract := raw[0] == 0
	if abstract {
		raw = raw[1:]
	}
	raw = strings.TrimRight(raw, "\x00")
	var b strings.Builder
	if abstract {
		b.WriteByte('@')
	}
	for _, r := range raw {
		if r < 0x20 || r == 0x7f {
			fmt.Fprintf(&b, "\\x%02x", r)
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}
