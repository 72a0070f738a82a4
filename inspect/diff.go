package inspect

import (
	"fmt"
	"hash/maphash"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/criukit/criukit/ckpt"
	"github.com/criukit/criukit/image"
)

// Diff is the deep comparison of two checkpoints (A: older, B: newer). Field names of the parts
// checkpointctl diff also has follow it (process_changes, file_changes, memory_changes,
// socket_changes, summary).
type Diff struct {
	A              string      `json:"checkpoint_a_path"`
	B              string      `json:"checkpoint_b_path"`
	ContainerID    string      `json:"container_id,omitempty"`
	ContainerName  string      `json:"container_name,omitempty"`
	Image          string      `json:"image,omitempty"`
	CheckpointA    DiffInfo    `json:"checkpoint_a"`
	CheckpointB    DiffInfo    `json:"checkpoint_b"`
	SameContainer  bool        `json:"same_container"`
	ProcessChanges ProcessDiff `json:"process_changes"`
	FileChanges    FileDiff    `json:"file_changes"`
	SocketChanges  SocketDiff  `json:"socket_changes"`
	MountChanges   MountDiff   `json:"mount_changes"`
	MemoryChanges  MemoryDiff  `json:"memory_changes"`
	Summary        string      `json:"summary"`
}

// DiffInfo identifies one side.
type DiffInfo struct {
	Created      string `json:"created,omitempty"`
	Checkpointed string `json:"checkpointed,omitempty"`
	TotalSize    int64  `json:"total_size"`
	PagesSize    int64  `json:"memory_pages_size"`
}

// ProcInfo names a process in a diff.
type ProcInfo struct {
	PID     uint32 `json:"pid"`
	Command string `json:"command"`
	Cmdline string `json:"cmdline,omitempty"`
}

// ProcChange is a process present in both with what differs.
type ProcChange struct {
	ProcInfo
	CommandA   string               `json:"command_a,omitempty"`
	CmdlineA   string               `json:"cmdline_a,omitempty"`
	StateA     string               `json:"state_a,omitempty"`
	StateB     string               `json:"state_b,omitempty"`
	EnvAdded   map[string]string    `json:"env_added,omitempty"`
	EnvRemoved map[string]string    `json:"env_removed,omitempty"`
	EnvChanged map[string][2]string `json:"env_changed,omitempty"` // key: [A, B]
	ParentA    uint32               `json:"ppid_a,omitempty"`
	ParentB    uint32               `json:"ppid_b,omitempty"`
}

// ProcessDiff lists processes added (only in B), removed (only in A), modified.
type ProcessDiff struct {
	Added     []ProcInfo   `json:"added,omitempty"`
	Removed   []ProcInfo   `json:"removed,omitempty"`
	Modified  []ProcChange `json:"modified,omitempty"`
	Unchanged int          `json:"unchanged"`
}

// FileDiffEntry is one descriptor in a diff.
type FileDiffEntry struct {
	PID  uint32 `json:"pid"`
	FD   string `json:"fd"`
	Type string `json:"type"`
	Path string `json:"path"`
}

// FileDiff lists descriptors opened (only in B) and closed (only in A), keyed by pid, fd and path.
type FileDiff struct {
	Added     []FileDiffEntry `json:"added,omitempty"`
	Removed   []FileDiffEntry `json:"removed,omitempty"`
	Unchanged int             `json:"unchanged"`
}

// SockDiffEntry is one socket in a diff.
type SockDiffEntry struct {
	PID uint32 `json:"pid"`
	Socket
}

// SockChange is a socket in both checkpoints whose state or queues changed.
type SockChange struct {
	PID      uint32     `json:"pid"`
	A        SocketData `json:"a"`
	B        SocketData `json:"b"`
	Protocol string     `json:"protocol"`
	What     []string   `json:"changed"` // state, inq, outq, queued, send_buf, recv_buf
}

// SocketDiff lists sockets added, removed and changed (keyed by pid, fd, protocol and addresses).
type SocketDiff struct {
	Added     []SockDiffEntry `json:"added,omitempty"`
	Removed   []SockDiffEntry `json:"removed,omitempty"`
	Changed   []SockChange    `json:"changed,omitempty"`
	Unchanged int             `json:"unchanged"`
}

// MountDiff lists the container's and CRIU's mounts added and removed.
type MountDiff struct {
	Added       []Mount      `json:"added,omitempty"`
	Removed     []Mount      `json:"removed,omitempty"`
	CRIUAdded   []MountPoint `json:"criu_added,omitempty"`
	CRIURemoved []MountPoint `json:"criu_removed,omitempty"`
}

// VMADiff is what changed in one mapping.
type VMADiff struct {
	Start        uint64 `json:"start"`
	EndA         uint64 `json:"end_a,omitempty"`
	EndB         uint64 `json:"end_b,omitempty"`
	Kind         string `json:"kind"`
	Path         string `json:"path,omitempty"`
	Change       string `json:"change"` // added, removed, resized, protection, pages
	ProtA        string `json:"prot_a,omitempty"`
	ProtB        string `json:"prot_b,omitempty"`
	PagesChanged uint64 `json:"pages_changed"`   // dumped in both, different content
	PagesSame    uint64 `json:"pages_same"`      // dumped in both, same content
	PagesNew     uint64 `json:"pages_only_in_b"` // dumped only in B
	PagesGone    uint64 `json:"pages_only_in_a"` // dumped only in A
}

// ProcMemDiff is one process' memory changes.
type ProcMemDiff struct {
	PID          uint32    `json:"pid"`
	Command      string    `json:"command"`
	BytesA       int64     `json:"memory_size_a"`
	BytesB       int64     `json:"memory_size_b"`
	PagesChanged uint64    `json:"pages_changed"`
	VMAs         []VMADiff `json:"vmas,omitempty"` // only VMAs with a change
}

// MemoryDiff has checkpointctl's size change plus the per-process, per-VMA page diff.
type MemoryDiff struct {
	SizeChangeBytes int64         `json:"size_change_bytes"`
	SizeChangeMB    float64       `json:"size_change_mb"`
	Processes       []ProcMemDiff `json:"processes,omitempty"`
}

// DiffOptions choose the diff's depth.
type DiffOptions struct {
	Memory bool // hash pages per VMA (reads all dumped memory of both)
}

type side struct {
	c     *ckpt.Checkpoint
	r     *Report
	im    *Images
	tasks map[uint32]*Task
}

func openSide(c *ckpt.Checkpoint) (*side, error) {
	o := All
	o.Memory = true
	r, err := Collect(c, o)
	if err != nil {
		return nil, err
	}
	im, err := NewImages(c)
	if err != nil {
		return nil, err
	}
	ts, err := im.Tasks()
	if err != nil {
		return nil, err
	}
	s := &side{c: c, r: r, im: im, tasks: map[uint32]*Task{}}
	for _, t := range ts {
		s.tasks[t.Pid()] = t
	}
	return s, nil
}

func flatten(r *Report) map[uint32]*Process {
	out := map[uint32]*Process{}
	roots := r.Roots
	if roots == nil && r.Tree != nil {
		roots = []*Process{r.Tree}
	}
	walk(roots, func(p *Process) { out[p.Pid] = p })
	return out
}

// Compare diffs two opened checkpoints (each an archive or an images directory).
func Compare(ca, cb *ckpt.Checkpoint, o DiffOptions) (*Diff, error) {
	a, err := openSide(ca)
	if err != nil {
		return nil, err
	}
	b, err := openSide(cb)
	if err != nil {
		return nil, err
	}
	d := &Diff{A: ca.Path, B: cb.Path, ContainerID: a.r.Container.ID, ContainerName: a.r.Container.Name, Image: a.r.Container.Image}
	d.SameContainer = a.r.Container.ID == b.r.Container.ID
	info := func(r *Report) DiffInfo {
		return DiffInfo{Created: r.Container.Created, Checkpointed: r.Container.Checkpointed, TotalSize: r.Sizes.Total, PagesSize: r.Sizes.Pages}
	}
	d.CheckpointA, d.CheckpointB = info(a.r), info(b.r)

	// processes
	pa, pb := flatten(a.r), flatten(b.r)
	for _, pid := range slices.Sorted(maps.Keys(pb)) {
		p := pb[pid]
		q, ok := pa[pid]
		if !ok {
			d.ProcessChanges.Added = append(d.ProcessChanges.Added, ProcInfo{pid, p.Comm, p.Cmdline})
			continue
		}
		ch := ProcChange{ProcInfo: ProcInfo{pid, p.Comm, p.Cmdline}}
		changed := false
		if q.Comm != p.Comm {
			ch.CommandA, changed = q.Comm, true
		}
		if q.Cmdline != p.Cmdline {
			ch.CmdlineA, changed = q.Cmdline, true
		}
		if q.State != p.State {
			ch.StateA, ch.StateB, changed = q.State, p.State, true
		}
		if q.Ppid != p.Ppid {
			ch.ParentA, ch.ParentB, changed = q.Ppid, p.Ppid, true
		}
		for k, v := range p.Env {
			if w, ok := q.Env[k]; !ok {
				if ch.EnvAdded == nil {
					ch.EnvAdded = map[string]string{}
				}
				ch.EnvAdded[k], changed = v, true
			} else if w != v {
				if ch.EnvChanged == nil {
					ch.EnvChanged = map[string][2]string{}
				}
				ch.EnvChanged[k], changed = [2]string{w, v}, true
			}
		}
		for k, v := range q.Env {
			if _, ok := p.Env[k]; !ok {
				if ch.EnvRemoved == nil {
					ch.EnvRemoved = map[string]string{}
				}
				ch.EnvRemoved[k], changed = v, true
			}
		}
		if changed {
			d.ProcessChanges.Modified = append(d.ProcessChanges.Modified, ch)
		} else {
			d.ProcessChanges.Unchanged++
		}
	}
	for _, pid := range slices.Sorted(maps.Keys(pa)) {
		if _, ok := pb[pid]; !ok {
			p := pa[pid]
			d.ProcessChanges.Removed = append(d.ProcessChanges.Removed, ProcInfo{pid, p.Comm, p.Cmdline})
		}
	}

	// files
	fileKeys := func(r *Report) (map[string]FileDiffEntry, []string) {
		m := map[string]FileDiffEntry{}
		var order []string
		for _, tf := range r.Files {
			for _, f := range tf.Files {
				k := fmt.Sprintf("%d:%s:%s", tf.Pid, f.FD, f.Path)
				if _, ok := m[k]; !ok {
					order = append(order, k)
				}
				m[k] = FileDiffEntry{tf.Pid, f.FD, f.Type, f.Path}
			}
		}
		return m, order
	}
	fa, oa := fileKeys(a.r)
	fb, ob := fileKeys(b.r)
	for _, k := range ob {
		if _, ok := fa[k]; ok {
			d.FileChanges.Unchanged++
		} else {
			d.FileChanges.Added = append(d.FileChanges.Added, fb[k])
		}
	}
	for _, k := range oa {
		if _, ok := fb[k]; !ok {
			d.FileChanges.Removed = append(d.FileChanges.Removed, fa[k])
		}
	}

	// sockets
	type sk struct {
		pid uint32
		s   Socket
	}
	sockKeys := func(r *Report) (map[string]sk, []string) {
		m := map[string]sk{}
		var order []string
		for _, ts := range r.Sockets {
			for _, s := range ts.Sockets {
				x := s.Data
				k := fmt.Sprintf("%d:%d:%s:%s:%s:%d:%s:%d", ts.Pid, x.Fd, s.Protocol, x.Address, x.Source, x.SourcePort, x.Dest, x.DestPort)
				if _, ok := m[k]; !ok {
					order = append(order, k)
				}
				m[k] = sk{ts.Pid, s}
			}
		}
		return m, order
	}
	sa, soa := sockKeys(a.r)
	sb, sob := sockKeys(b.r)
	for _, k := range sob {
		y := sb[k]
		x, ok := sa[k]
		if !ok {
			d.SocketChanges.Added = append(d.SocketChanges.Added, SockDiffEntry{y.pid, y.s})
			continue
		}
		var what []string
		xa, xb := x.s.Data, y.s.Data
		if xa.State != xb.State {
			what = append(what, "state")
		}
		if xa.InqBytes != xb.InqBytes {
			what = append(what, "inq")
		}
		if xa.OutqBytes != xb.OutqBytes {
			what = append(what, "outq")
		}
		if xa.QueuedBytes != xb.QueuedBytes || xa.QueuedPackets != xb.QueuedPackets {
			what = append(what, "queued")
		}
		if xa.SendBufBytes != xb.SendBufBytes {
			what = append(what, "send_buf")
		}
		if xa.RecvBufBytes != xb.RecvBufBytes {
			what = append(what, "recv_buf")
		}
		if len(what) > 0 {
			d.SocketChanges.Changed = append(d.SocketChanges.Changed, SockChange{PID: y.pid, A: xa, B: xb, Protocol: y.s.Protocol, What: what})
		} else {
			d.SocketChanges.Unchanged++
		}
	}
	for _, k := range soa {
		if _, ok := sb[k]; !ok {
			x := sa[k]
			d.SocketChanges.Removed = append(d.SocketChanges.Removed, SockDiffEntry{x.pid, x.s})
		}
	}

	// mounts
	mk := func(m Mount) string { return m.Destination + "\x00" + m.Type + "\x00" + m.Source }
	added, removed := setDiff(a.r.Mounts, b.r.Mounts, mk)
	d.MountChanges.Added = append(d.MountChanges.Added, added...)
	d.MountChanges.Removed = append(d.MountChanges.Removed, removed...)
	ck := func(m MountPoint) string {
		return m.Mountpoint + "\x00" + m.FsType + "\x00" + m.Source + "\x00" + m.Root
	}
	cadded, cremoved := setDiff(a.r.MountPoints, b.r.MountPoints, ck)
	d.MountChanges.CRIUAdded = append(d.MountChanges.CRIUAdded, cadded...)
	d.MountChanges.CRIURemoved = append(d.MountChanges.CRIURemoved, cremoved...)

	// memory
	ch := b.r.Sizes.Pages - a.r.Sizes.Pages
	d.MemoryChanges.SizeChangeBytes, d.MemoryChanges.SizeChangeMB = ch, float64(ch)/1024/1024
	if o.Memory {
		sizeA := map[uint32]int64{}
		for _, m := range a.r.Memory {
			sizeA[m.Pid] = m.MemoryBytes
		}
		for _, m := range b.r.Memory {
			ta, ok := a.tasks[m.Pid]
			if !ok || !ta.HasMemory() {
				continue
			}
			pm, err := diffMemory(a.im, b.im, ta, b.tasks[m.Pid])
			if err != nil {
				return nil, err
			}
			pm.BytesA, pm.BytesB = sizeA[m.Pid], m.MemoryBytes
			d.MemoryChanges.Processes = append(d.MemoryChanges.Processes, pm)
		}
	}
	d.Summary = d.summary()
	return d, nil
}

var seed = maphash.MakeSeed()

// maxDiffPages bounds the pages hashed per process (a hostile pagemap cannot make us allocate more).
const maxDiffPages = 64 << 20

// pageHashes hashes every dumped page (present or in a parent) of a task.
func pageHashes(im *Images, t *Task) (map[uint64]uint64, error) {
	m, err := im.Memory(t.Pid())
	if err != nil {
		return nil, err
	}
	defer m.Close()
	var total uint64
	for _, r := range m.Ranges() {
		if r.Flags&(image.PEPresent|image.PEParent) != 0 {
			total += r.NrPages
		}
	}
	if total > maxDiffPages {
		return nil, fmt.Errorf("%s: pid %d: %d dumped pages (more than %d)", im.C.Path, t.Pid(), total, maxDiffPages)
	}
	out := make(map[uint64]uint64, total)
	ps := uint64(image.PageSize)
	buf := make([]byte, 1<<20)
	for _, r := range m.Ranges() {
		if r.Flags&(image.PEPresent|image.PEParent) == 0 {
			continue
		}
		for off := uint64(0); off < r.NrPages*ps; off += uint64(len(buf)) {
			n := min(uint64(len(buf)), r.NrPages*ps-off)
			if _, err := m.ReadAt(buf[:n], int64(r.Vaddr+off)); err != nil && err != io.EOF {
				return nil, fmt.Errorf("%s: pid %d: %w", im.C.Path, t.Pid(), err)
			}
			for p := uint64(0); p < n; p += ps {
				out[r.Vaddr+off+p] = maphash.Bytes(seed, buf[p:p+ps])
			}
		}
	}
	return out, nil
}

func diffMemory(ia, ib *Images, ta, tb *Task) (ProcMemDiff, error) {
	pm := ProcMemDiff{PID: tb.Pid(), Command: tb.Core.GetTc().GetComm()}
	va, _, err := ia.MemoryMap(ta)
	if err != nil {
		return pm, err
	}
	vb, _, err := ib.MemoryMap(tb)
	if err != nil {
		return pm, err
	}
	ha, err := pageHashes(ia, ta)
	if err != nil {
		return pm, err
	}
	hb, err := pageHashes(ib, tb)
	if err != nil {
		return pm, err
	}
	byStart := map[uint64]VMA{}
	for _, v := range va {
		byStart[v.Start] = v
	}
	ps := uint64(image.PageSize)
	seen := map[uint64]bool{}
	for _, v := range vb {
		x := VMADiff{Start: v.Start, EndB: v.End, Kind: v.Kind, Path: v.Path, ProtB: v.Prot}
		old, ok := byStart[v.Start]
		seen[v.Start] = true
		var changes []string
		if !ok {
			changes = append(changes, "added")
		} else {
			x.EndA, x.ProtA = old.End, old.Prot
			if old.End != v.End {
				changes = append(changes, "resized")
			}
			if old.Prot != v.Prot {
				changes = append(changes, "protection")
			}
		}
		for a := v.Start; a < v.End; a += ps {
			hA, inA := ha[a]
			hB, inB := hb[a]
			switch {
			case inA && inB && hA == hB:
				x.PagesSame++
			case inA && inB:
				x.PagesChanged++
			case inB:
				x.PagesNew++
			case inA:
				x.PagesGone++
			}
		}
		if ok && x.PagesChanged+x.PagesNew+x.PagesGone > 0 {
			changes = append(changes, "pages")
		}
		pm.PagesChanged += x.PagesChanged
		if len(changes) > 0 {
			x.Change = strings.Join(changes, ",")
			if x.Kind == "" {
				x.Kind = old.Kind
			}
			pm.VMAs = append(pm.VMAs, x)
		}
	}
	for _, v := range va {
		if !seen[v.Start] {
			x := VMADiff{Start: v.Start, EndA: v.End, Kind: v.Kind, Path: v.Path, ProtA: v.Prot, Change: "removed"}
			for a := v.Start; a < v.End; a += ps {
				if _, ok := ha[a]; ok {
					x.PagesGone++
				}
			}
			pm.VMAs = append(pm.VMAs, x)
		}
	}
	sort.Slice(pm.VMAs, func(i, j int) bool { return pm.VMAs[i].Start < pm.VMAs[j].Start })
	return pm, nil
}

func (d *Diff) summary() string {
	var parts []string
	p := d.ProcessChanges
	if n := len(p.Added) + len(p.Removed) + len(p.Modified); n > 0 {
		parts = append(parts, fmt.Sprintf("%d processes changed (%d added, %d removed, %d modified)", n, len(p.Added), len(p.Removed), len(p.Modified)))
	}
	if f := d.FileChanges; len(f.Added)+len(f.Removed) > 0 {
		parts = append(parts, fmt.Sprintf("%d files opened, %d closed", len(f.Added), len(f.Removed)))
	}
	if s := d.SocketChanges; len(s.Added)+len(s.Removed)+len(s.Changed) > 0 {
		parts = append(parts, fmt.Sprintf("%d sockets added, %d removed, %d changed", len(s.Added), len(s.Removed), len(s.Changed)))
	}
	if m := d.MountChanges; len(m.Added)+len(m.Removed)+len(m.CRIUAdded)+len(m.CRIURemoved) > 0 {
		parts = append(parts, fmt.Sprintf("%d mounts added, %d removed", len(m.Added)+len(m.CRIUAdded), len(m.Removed)+len(m.CRIURemoved)))
	}
	var pages uint64
	for _, pm := range d.MemoryChanges.Processes {
		pages += pm.PagesChanged
	}
	parts = append(parts, fmt.Sprintf("memory %+.2f MiB", d.MemoryChanges.SizeChangeMB))
	if pages > 0 {
		parts = append(parts, fmt.Sprintf("%d pages changed", pages))
	}
	return strings.Join(parts, ", ")
}

// WriteDiff prints a diff as a tree.
func WriteDiff(w io.Writer, d *Diff) {
	fmt.Fprintf(w, "\nDiff %s -> %s\n\n", d.A, d.B)
	root := &node{}
	title := d.ContainerName
	if title == "" {
		title = "checkpoints"
	}
	fmt.Fprintln(w, title)
	if !d.SameContainer {
		root.add("Note: different containers (%q vs the other's id)", d.ContainerID)
	}
	root.add("Checkpoint A: %s, %s (pages %s)", dash(d.CheckpointA.Checkpointed), ByteSize(d.CheckpointA.TotalSize), ByteSize(d.CheckpointA.PagesSize))
	root.add("Checkpoint B: %s, %s (pages %s)", dash(d.CheckpointB.Checkpointed), ByteSize(d.CheckpointB.TotalSize), ByteSize(d.CheckpointB.PagesSize))
	pn := root.add("Processes (%d unchanged)", d.ProcessChanges.Unchanged)
	for _, p := range d.ProcessChanges.Added {
		pn.add("+ [%d] %s %s", p.PID, p.Command, p.Cmdline)
	}
	for _, p := range d.ProcessChanges.Removed {
		pn.add("- [%d] %s %s", p.PID, p.Command, p.Cmdline)
	}
	for _, p := range d.ProcessChanges.Modified {
		n := pn.add("~ [%d] %s", p.PID, p.Command)
		if p.CommandA != "" {
			n.add("command: %s -> %s", p.CommandA, p.Command)
		}
		if p.CmdlineA != "" || p.Cmdline != "" && p.CmdlineA != p.Cmdline {
			n.add("cmdline: %q -> %q", p.CmdlineA, p.Cmdline)
		}
		if p.StateA != "" {
			n.add("state: %s -> %s", p.StateA, p.StateB)
		}
		if p.ParentA != p.ParentB {
			n.add("ppid: %d -> %d", p.ParentA, p.ParentB)
		}
		for _, k := range sortedStrings(p.EnvAdded) {
			n.add("env + %s=%s", k, p.EnvAdded[k])
		}
		for _, k := range sortedStrings(p.EnvRemoved) {
			n.add("env - %s=%s", k, p.EnvRemoved[k])
		}
		for _, k := range sortedStrings(p.EnvChanged) {
			n.add("env ~ %s: %q -> %q", k, p.EnvChanged[k][0], p.EnvChanged[k][1])
		}
	}
	fn := root.add("Files (%d unchanged)", d.FileChanges.Unchanged)
	for _, f := range d.FileChanges.Added {
		fn.add("+ [%d] %s %s", f.PID, f.FD, f.Path)
	}
	for _, f := range d.FileChanges.Removed {
		fn.add("- [%d] %s %s", f.PID, f.FD, f.Path)
	}
	sn := root.add("Sockets (%d unchanged)", d.SocketChanges.Unchanged)
	for _, s := range d.SocketChanges.Added {
		sn.add("+ [%d] %s", s.PID, socketLine(s.Socket))
	}
	for _, s := range d.SocketChanges.Removed {
		sn.add("- [%d] %s", s.PID, socketLine(s.Socket))
	}
	for _, s := range d.SocketChanges.Changed {
		sn.add("~ [%d] %s fd %d: %s: state %s -> %s, inq %d -> %d, outq %d -> %d", s.PID, s.Protocol, s.B.Fd, strings.Join(s.What, ","), s.A.State, s.B.State, s.A.InqBytes, s.B.InqBytes, s.A.OutqBytes, s.B.OutqBytes)
	}
	mc := d.MountChanges
	if len(mc.Added)+len(mc.Removed)+len(mc.CRIUAdded)+len(mc.CRIURemoved) > 0 {
		mn := root.add("Mounts")
		for _, m := range mc.Added {
			mn.add("+ %s (%s, %s)", m.Destination, m.Type, m.Source)
		}
		for _, m := range mc.Removed {
			mn.add("- %s (%s, %s)", m.Destination, m.Type, m.Source)
		}
		for _, m := range mc.CRIUAdded {
			mn.add("+ criu %s (%s, %s)", m.Mountpoint, m.FsType, m.Source)
		}
		for _, m := range mc.CRIURemoved {
			mn.add("- criu %s (%s, %s)", m.Mountpoint, m.FsType, m.Source)
		}
	}
	mn := root.add("Memory: %+d bytes (%+.2f MiB)", d.MemoryChanges.SizeChangeBytes, d.MemoryChanges.SizeChangeMB)
	for _, pm := range d.MemoryChanges.Processes {
		n := mn.add("[%d] %s: %s -> %s, %d pages changed", pm.PID, pm.Command, ByteSize(pm.BytesA), ByteSize(pm.BytesB), pm.PagesChanged)
		for _, v := range pm.VMAs {
			end := v.EndB
			if end == 0 {
				end = v.EndA
			}
			l := fmt.Sprintf("%012x-%012x %s %s: %s", v.Start, end, v.Kind, v.Path, v.Change)
			if v.EndA != 0 && v.EndB != 0 && v.EndA != v.EndB {
				l += fmt.Sprintf(" (end %#x -> %#x)", v.EndA, v.EndB)
			}
			if v.ProtA != "" && v.ProtB != "" && v.ProtA != v.ProtB {
				l += fmt.Sprintf(" (prot %s -> %s)", v.ProtA, v.ProtB)
			}
			l += fmt.Sprintf(" (pages: %d changed, %d same, %d only in B, %d only in A)", v.PagesChanged, v.PagesSame, v.PagesNew, v.PagesGone)
			n.add("%s", l)
		}
	}
	root.add("Summary: %s", d.Summary)
	root.write(w, "")
}

func sortedStrings[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// setDiff returns the elements of b whose key is in no element of a (added) and those of a whose
// key is in no element of b (removed), each in its slice's order.
func setDiff[T any](a, b []T, key func(T) string) (added, removed []T) {
	ka, kb := map[string]bool{}, map[string]bool{}
	for _, x := range a {
		ka[key(x)] = true
	}
	for _, x := range b {
		kb[key(x)] = true
		if !ka[key(x)] {
			added = append(added, x)
		}
	}
	for _, x := range a {
		if !kb[key(x)] {
			removed = append(removed, x)
		}
	}
	return added, removed
}
