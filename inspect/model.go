package inspect

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"path"
	"sort"
	"strings"

	criu_core "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/stats"
	tcp_stream "github.com/checkpoint-restore/go-criu/v8/crit/images/tcp-stream"
	"github.com/criukit/criukit/ckpt"
	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/image/explore"
	"google.golang.org/protobuf/proto"
)

// Options select what Collect reads (checkpointctl inspect's flags).
type Options struct {
	PsTree   bool   // process tree
	Cmdline  bool   // command lines from dumped memory (implies PsTree)
	Env      bool   // environments from dumped memory (implies PsTree)
	Files    bool   // open files, cwd, root
	Sockets  bool   // sockets
	Mounts   bool   // the container's mounts (OCI spec), and CRIU's mount points
	Stats    bool   // CRIU dump statistics
	Metadata bool   // pod, namespace, annotations
	Memory   bool   // per-process memory sizes
	Pid      uint32 // only this process (and its subtree)
}

// All is every view.
var All = Options{PsTree: true, Cmdline: true, Env: true, Files: true, Sockets: true, Mounts: true, Stats: true, Metadata: true, Memory: true}

// Sizes are the checkpoint's byte counts (checkpointctl's checkpoint_size, plus criukit's).
type Sizes struct {
	Total      int64 `json:"total_size,omitempty"`
	Pages      int64 `json:"memory_pages_size,omitempty"`
	RootfsDiff int64 `json:"root_fs_diff_size,omitempty"`
	Archive    int64 `json:"archive_size,omitempty"`
	Spooled    int64 `json:"spooled_size,omitempty"`
}

// Stats are CRIU's dump statistics (stats-dump).
type Stats struct {
	FreezingTime uint32 `json:"freezing_time,omitempty"`
	FrozenTime   uint32 `json:"frozen_time,omitempty"`
	MemdumpTime  uint32 `json:"memdump_time,omitempty"`
	MemwriteTime uint32 `json:"memwrite_time,omitempty"`
	PagesScanned uint64 `json:"pages_scanned,omitempty"`
	PagesWritten uint64 `json:"pages_written,omitempty"`
	// criukit: the rest of stats-dump.
	PagesSkippedParent uint64 `json:"pages_skipped_parent,omitempty"`
	PagesLazy          uint64 `json:"pages_lazy,omitempty"`
	IrmapResolve       uint32 `json:"irmap_resolve,omitempty"`
	ShpagesScanned     uint64 `json:"shpages_scanned,omitempty"`
	ShpagesSkipped     uint64 `json:"shpages_skipped_parent,omitempty"`
	ShpagesWritten     uint64 `json:"shpages_written,omitempty"`
	PageAllocFailed    uint64 `json:"page_pipes,omitempty"`
}

// Metadata is the orchestration metadata (checkpointctl's --metadata).
type Metadata struct {
	PodName     string            `json:"pod_name,omitempty"`
	Namespace   string            `json:"kubernetes_namespace,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Process is one task of the tree.
type Process struct {
	Pid      uint32            `json:"pid"`
	Comm     string            `json:"command"`
	Cmdline  string            `json:"cmdline,omitempty"`
	State    string            `json:"task_state,omitempty"`
	Env      map[string]string `json:"environment_variables,omitempty"`
	Children []*Process        `json:"children,omitempty"`
	// criukit additions
	Ppid    uint32   `json:"ppid"`
	Pgid    uint32   `json:"pgid"`
	Sid     uint32   `json:"sid"`
	Threads []uint32 `json:"threads,omitempty"`
	Argv    []string `json:"argv,omitempty"`
	EnvList []string `json:"environment,omitempty"` // in memory order, duplicates kept
	Error   string   `json:"error,omitempty"`       // why cmdline/env could not be read
}

// OpenFile is one descriptor (checkpointctl's open_files).
type OpenFile struct {
	Type string `json:"type"`
	FD   string `json:"fd"`
	Path string `json:"path"`
	ID   uint32 `json:"id,omitempty"`
}

// TaskFiles are a task's descriptors, then cwd and root.
type TaskFiles struct {
	Pid   uint32     `json:"pid"`
	Files []OpenFile `json:"open_files,omitempty"`
}

// SocketData follows checkpointctl's socket data, plus queue sizes and identities.
type SocketData struct {
	Type       string `json:"type,omitempty"`
	Address    string `json:"address,omitempty"`
	State      string `json:"state,omitempty"`
	Source     string `json:"src,omitempty"`
	SourcePort uint32 `json:"src_port,omitempty"`
	Dest       string `json:"dst,omitempty"`
	DestPort   uint32 `json:"dst_port,omitempty"`
	SendBuf    string `json:"send_buf,omitempty"`
	RecvBuf    string `json:"recv_buf,omitempty"`
	// criukit
	Fd            uint32 `json:"fd"`
	Ino           uint32 `json:"ino,omitempty"`
	Family        string `json:"family,omitempty"`
	SockType      string `json:"sock_type,omitempty"`
	Peer          uint32 `json:"peer,omitempty"`
	SendBufBytes  uint32 `json:"send_buf_bytes,omitempty"`
	RecvBufBytes  uint32 `json:"recv_buf_bytes,omitempty"`
	InqBytes      uint32 `json:"inq_bytes,omitempty"`
	OutqBytes     uint32 `json:"outq_bytes,omitempty"`
	QueuedPackets int    `json:"queued_packets,omitempty"`
	QueuedBytes   uint64 `json:"queued_bytes,omitempty"`
}

// Socket is one socket of a task.
type Socket struct {
	Protocol string     `json:"protocol,omitempty"`
	Data     SocketData `json:"data"`
}

// TaskSockets are a task's sockets.
type TaskSockets struct {
	Pid     uint32   `json:"pid"`
	Sockets []Socket `json:"open_sockets,omitempty"`
}

// MountPoint is one of CRIU's mount points (mountpoints-*.img).
type MountPoint struct {
	ID         uint32 `json:"mnt_id"`
	Parent     uint32 `json:"parent_mnt_id"`
	Mountpoint string `json:"mountpoint"`
	Root       string `json:"root"`
	FsType     string `json:"fstype"`
	Source     string `json:"source,omitempty"`
	Options    string `json:"options,omitempty"`
	External   string `json:"external,omitempty"`
}

// Report is everything inspect shows about one checkpoint.
type Report struct {
	*Container
	Sizes       Sizes         `json:"checkpoint_size"`
	Stats       *Stats        `json:"statistics,omitempty"`
	Metadata    *Metadata     `json:"metadata,omitempty"`
	Tree        *Process      `json:"process_tree,omitempty"`
	Files       []TaskFiles   `json:"file_descriptors,omitempty"`
	Sockets     []TaskSockets `json:"sockets,omitempty"`
	Mounts      []Mount       `json:"mounts,omitempty"`
	Memory      []ProcMemSize `json:"memory,omitempty"`
	Path        string        `json:"path"`
	Kind        ckpt.Kind     `json:"kind"`
	Compression string        `json:"compression,omitempty"`
	Roots       []*Process    `json:"process_roots,omitempty"` // when the dump has several roots
	MountPoints []MountPoint  `json:"criu_mounts,omitempty"`
	Warnings    []string      `json:"warnings,omitempty"`
	src         *ckpt.Checkpoint
}

// Images is a checkpoint's CRIU images, read once and cached.
type Images struct {
	C   *ckpt.Checkpoint
	FS  fs.FS
	Dir string
	X   *explore.Dir
}

// NewImages reads the images of an opened checkpoint.
func NewImages(c *ckpt.Checkpoint) (*Images, error) {
	x, err := explore.OpenFS(c.FS(), c.ImagesPath())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Path, err)
	}
	return &Images{C: c, FS: c.FS(), Dir: c.ImagesPath(), X: x}, nil
}

func (im *Images) has(name string) bool { return im.X.Exists(name) }

// load returns the entries of image name (decoded once, by explore).
func (im *Images) load(name string) ([]proto.Message, error) {
	ms, err := im.X.Load(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", im.C.Path, err)
	}
	return ms, nil
}

func first[T proto.Message](im *Images, name string) (T, error) {
	var zero T
	ms, err := im.load(name)
	if err != nil {
		return zero, err
	}
	for _, m := range ms {
		if v, ok := m.(T); ok {
			return v, nil
		}
	}
	return zero, fmt.Errorf("%s: %s has no %T entry", im.C.Path, name, zero)
}

// Task is one pstree entry with its core and mm.
type Task struct {
	Entry *pstree.PstreeEntry
	Core  *criu_core.CoreEntry
	MM    *mm.MmEntry // nil for zombies and dead tasks
}

// Pid returns the task's pid.
func (t *Task) Pid() uint32 { return t.Entry.GetPid() }

// State names a task state as checkpointctl does.
func State(s uint32) string {
	switch s {
	case 1:
		return "Alive"
	case 2:
		return "Dead"
	case 3:
		return "Stopped"
	case 6:
		return "Zombie"
	}
	return "Unknown"
}

// HasMemory reports whether the task was dumped with memory (alive or stopped).
func (t *Task) HasMemory() bool {
	s := t.Core.GetTc().GetTaskState()
	return s == 1 || s == 3
}

// Tasks returns the dumped tasks in pstree order.
func (im *Images) Tasks() ([]*Task, error) {
	ms, err := im.load("pstree.img")
	if err != nil {
		return nil, err
	}
	var out []*Task
	for _, m := range ms {
		p, ok := m.(*pstree.PstreeEntry)
		if !ok {
			continue
		}
		t := &Task{Entry: p}
		if t.Core, err = first[*criu_core.CoreEntry](im, fmt.Sprintf("core-%d.img", p.GetPid())); err != nil {
			return nil, err
		}
		if t.HasMemory() {
			if t.MM, err = first[*mm.MmEntry](im, fmt.Sprintf("mm-%d.img", p.GetPid())); err != nil {
				return nil, err
			}
		}
		out = append(out, t)
	}
	return out, nil
}

// Memory opens the dumped memory of a task.
func (im *Images) Memory(pid uint32) (*image.Memory, error) {
	return image.OpenMemoryFS(im.FS, im.Dir, int(pid))
}

// Open opens a checkpoint for inspection; withPages keeps memory readable in compressed archives.
func Open(p string, withPages bool) (*ckpt.Checkpoint, error) {
	return ckpt.Open(p, ckpt.Options{SkipPages: !withPages})
}

// OpenFor opens a checkpoint with what the views of o read: of a compressed archive's pages, only
// those holding command lines and environments (none when o needs neither).
func OpenFor(p string, o Options) (*ckpt.Checkpoint, error) {
	if o.Cmdline || o.Env {
		return ckpt.Open(p, ckpt.Options{KeepPages: KeepArgsEnv})
	}
	return ckpt.Open(p, ckpt.Options{SkipPages: true})
}

// Collect reads the views o asks for. The checkpoint must stay open while the report is used
// for memory views (HTML, search).
func Collect(c *ckpt.Checkpoint, o Options) (*Report, error) {
	if o.Cmdline || o.Env || o.Pid != 0 {
		o.PsTree = true
	}
	r := &Report{Path: c.Path, Kind: c.Kind, src: c}
	if c.Kind == ckpt.KindArchive {
		r.Compression = c.Compression.String()
	}
	r.Sizes = Sizes{Total: c.Sizes.Checkpoint, Pages: c.Sizes.Pages, RootfsDiff: c.Sizes.RootfsDiff, Archive: c.Sizes.Archive, Spooled: c.Sizes.Spooled}
	ct, err := ReadContainer(c.FS())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Path, err)
	}
	r.Container = ct
	if ct == nil {
		r.Container = &Container{}
	}
	if o.Metadata {
		r.Metadata = &Metadata{PodName: r.Container.Pod, Namespace: r.Container.Namespace, Annotations: r.Container.Annotations}
	}
	if o.Mounts {
		r.Mounts = r.Container.Mounts
	}
	if o.Stats {
		if r.Stats, err = readStats(c); err != nil {
			if !errors.Is(err, errNoStats) {
				return nil, err
			}
			r.Warnings = append(r.Warnings, err.Error())
		}
	}
	if !(o.PsTree || o.Files || o.Sockets || o.Memory || o.Mounts) {
		return r, nil
	}
	im, err := NewImages(c)
	if err != nil {
		return nil, err
	}
	tasks, err := im.Tasks()
	if err != nil {
		return nil, err
	}
	keep := map[uint32]bool{}
	if o.PsTree {
		roots := im.tree(tasks, o, r)
		if o.Pid != 0 {
			p := find(roots, o.Pid)
			if p == nil {
				return nil, errNoPid(c.Path, o.Pid)
			}
			roots = []*Process{p}
		}
		if len(roots) > 0 {
			r.Tree = roots[0]
		}
		if len(roots) > 1 {
			r.Roots = roots
		}
		if o.Pid != 0 {
			walk(roots, func(p *Process) { keep[p.Pid] = true })
		}
	}
	sel := func(pid uint32) bool { return o.Pid == 0 || keep[pid] }
	if o.Files {
		if r.Files, err = im.files(tasks, sel); err != nil {
			return nil, err
		}
	}
	if o.Sockets {
		if r.Sockets, err = im.sockets(tasks, sel); err != nil {
			return nil, err
		}
	}
	if o.Mounts {
		r.MountPoints = im.mountPoints()
	}
	if o.Memory {
		for _, t := range tasks {
			if !sel(t.Pid()) || !t.HasMemory() {
				continue
			}
			s, err := im.memSize(t)
			if err != nil {
				return nil, err
			}
			r.Memory = append(r.Memory, s)
		}
	}
	return r, nil
}

func readStats(c *ckpt.Checkpoint) (*Stats, error) {
	for _, name := range []string{path.Join(c.ImagesPath(), "stats-dump"), "stats-dump"} {
		if _, err := fs.Stat(c.FS(), name); err != nil {
			continue
		}
		img, err := image.ReadFileFS(c.FS(), name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Path, err)
		}
		for _, e := range img.Entries {
			if se, ok := e.Msg.(*stats.StatsEntry); ok && se.GetDump() != nil {
				d := se.GetDump()
				return &Stats{FreezingTime: d.GetFreezingTime(), FrozenTime: d.GetFrozenTime(), MemdumpTime: d.GetMemdumpTime(),
					MemwriteTime: d.GetMemwriteTime(), PagesScanned: d.GetPagesScanned(), PagesWritten: d.GetPagesWritten(),
					PagesSkippedParent: d.GetPagesSkippedParent(), PagesLazy: d.GetPagesLazy(), IrmapResolve: d.GetIrmapResolve(),
					ShpagesScanned: d.GetShpagesScanned(), ShpagesSkipped: d.GetShpagesSkippedParent(), ShpagesWritten: d.GetShpagesWritten()}, nil
			}
		}
	}
	return nil, fmt.Errorf("%s: %w", c.Path, errNoStats)
}

var errNoStats = errors.New("no stats-dump (container engines keep it next to checkpoint/; a plain images directory has it only when criu dump wrote it there)")

func find(ps []*Process, pid uint32) *Process {
	var out *Process
	walk(ps, func(p *Process) {
		if p.Pid == pid && out == nil {
			out = p
		}
	})
	return out
}

func walk(ps []*Process, f func(*Process)) {
	for _, p := range ps {
		f(p)
		walk(p.Children, f)
	}
}

func (im *Images) tree(tasks []*Task, o Options, r *Report) []*Process {
	var order []*Process
	for _, t := range tasks {
		e := t.Entry
		p := &Process{Pid: e.GetPid(), Ppid: e.GetPpid(), Pgid: e.GetPgid(), Sid: e.GetSid(), Comm: t.Core.GetTc().GetComm(),
			State: State(t.Core.GetTc().GetTaskState())}
		if len(e.GetThreads()) > 1 {
			p.Threads = e.GetThreads()
		}
		if t.HasMemory() && (o.Cmdline || o.Env) {
			argv, env, err := im.ArgvEnv(t)
			if err != nil {
				p.Error = err.Error()
				r.Warnings = append(r.Warnings, fmt.Sprintf("pid %d: %v", p.Pid, err))
			}
			if o.Cmdline {
				p.Argv = argv
				p.Cmdline = strings.Join(argv, " ")
			}
			if o.Env && len(env) > 0 {
				p.EnvList = env
				p.Env = map[string]string{}
				for _, kv := range env {
					k, v, _ := strings.Cut(kv, "=")
					p.Env[k] = v
				}
			}
		}
		order = append(order, p)
	}
	return explore.Forest(order, func(p *Process) (uint32, uint32) { return p.Pid, p.Ppid },
		func(parent, child *Process) { parent.Children = append(parent.Children, child) })
}

// maxArgs bounds what is read for argv/env (the kernel's ARG_MAX-like sizes; hostile mm images
// cannot make us allocate more).
const maxArgs = 8 << 20

// ArgvEnv reads the command line and environment of a task from its dumped memory (mm's
// arg_start..arg_end and env_start..env_end).
func (im *Images) ArgvEnv(t *Task) (argv, env []string, err error) {
	if t.MM == nil {
		return nil, nil, nil
	}
	m, err := im.Memory(t.Pid())
	if err != nil {
		return nil, nil, err
	}
	defer m.Close()
	read := func(what string, a, b uint64) ([]string, error) {
		if b <= a {
			return nil, nil
		}
		if b-a > maxArgs {
			return nil, fmt.Errorf("%s: %d bytes at %#x (more than %d: corrupt mm image?)", what, b-a, a, maxArgs)
		}
		buf := make([]byte, b-a)
		n, err := m.ReadAt(buf, int64(a))
		if err != nil {
			err = fmt.Errorf("%s at %#x: %w", what, a, err)
		}
		s := strings.TrimRight(string(buf[:n]), "\x00")
		if s == "" {
			return nil, err
		}
		return strings.Split(s, "\x00"), err
	}
	argv, err1 := read("command line", t.MM.GetMmArgStart(), t.MM.GetMmArgEnd())
	env, err2 := read("environment", t.MM.GetMmEnvStart(), t.MM.GetMmEnvEnd())
	return argv, env, errors.Join(err1, err2)
}

func (im *Images) files(tasks []*Task, sel func(uint32) bool) ([]TaskFiles, error) {
	fds, err := im.X.Fds()
	if err != nil {
		return nil, err
	}
	alive := map[uint32]bool{}
	for _, t := range tasks {
		alive[t.Pid()] = t.HasMemory()
	}
	var out []TaskFiles
	for _, tf := range fds {
		if !sel(tf.Pid) || !alive[tf.Pid] {
			continue
		}
		f := TaskFiles{Pid: tf.Pid}
		for _, d := range tf.FDs {
			of := OpenFile{Path: d.File, ID: d.ID}
			if d.Fd == "cwd" || d.Fd == "root" {
				of.FD = d.Fd
			} else {
				of.Type = d.Type
				of.FD = strings.TrimSpace(d.Type + " " + d.Fd)
			}
			f.Files = append(f.Files, of)
		}
		out = append(out, f)
	}
	return out, nil
}

var (
	skTypes    = map[uint32]string{1: "STREAM", 2: "DGRAM", 3: "RAW", 4: "RDM", 5: "SEQPACKET", 10: "PACKET"}
	skStates   = map[uint32]string{1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV"}
	skProtos   = map[uint32]string{1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 136: "UDPLITE", 255: "RAW"}
	skFamilies = map[uint32]string{1: "UNIX", 2: "IPv4", 10: "IPv6", 16: "NETLINK", 17: "PACKET"}
)

func mapName(m map[uint32]string, v uint32) string {
	if s, ok := m[v]; ok {
		return s
	}
	if v == 0 {
		return ""
	}
	return fmt.Sprint(v)
}

// ipString renders CRIU's address words (IPv4: 1 word, IPv6: 4, network order in memory).
func ipString(w []uint32) string {
	var b [16]byte
	switch len(w) {
	case 1:
		b4 := [4]byte{byte(w[0]), byte(w[0] >> 8), byte(w[0] >> 16), byte(w[0] >> 24)}
		return netip.AddrFrom4(b4).String()
	case 4:
		for i, x := range w {
			b[i*4], b[i*4+1], b[i*4+2], b[i*4+3] = byte(x), byte(x>>8), byte(x>>16), byte(x>>24)
		}
		return netip.AddrFrom16(b).String()
	}
	return ""
}

// HumanBytes formats like checkpointctl's socket buffers ("16.0 KB").
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprint(n, " B")
	}
	div, exp := int64(unit), 0
	for i := n / unit; i >= unit; i /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "KMGTPE"[exp])
}

func (im *Images) sockets(tasks []*Task, sel func(uint32) bool) ([]TaskSockets, error) {
	qPk, qBy, err := im.X.SkQueues()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", im.C.Path, err)
	}
	var out []TaskSockets
	for _, t := range tasks {
		if !sel(t.Pid()) || !t.HasMemory() {
			continue
		}
		ids, err := first[*criu_core.TaskKobjIdsEntry](im, fmt.Sprintf("ids-%d.img", t.Pid()))
		if err != nil {
			return nil, err
		}
		ms, err := im.load(fmt.Sprintf("fdinfo-%d.img", ids.GetFilesId()))
		if err != nil {
			return nil, err
		}
		ts := TaskSockets{Pid: t.Pid()}
		for _, m := range ms {
			fe, ok := m.(*fdinfo.FdinfoEntry)
			if !ok {
				continue
			}
			f := im.X.File(fe.GetId())
			if f == nil {
				continue
			}
			d := SocketData{Fd: fe.GetFd()}
			var s Socket
			bufs := func(snd, rcv uint32) {
				d.SendBufBytes, d.RecvBufBytes = snd, rcv
				d.SendBuf, d.RecvBuf = HumanBytes(int64(snd)), HumanBytes(int64(rcv))
			}
			switch fe.GetType() {
			case fdinfo.FdTypes_INETSK:
				k := f.GetIsk()
				if k == nil {
					continue
				}
				s.Protocol = mapName(skProtos, k.GetProto())
				d.Type, d.State, d.Family, d.SockType, d.Ino = s.Protocol, mapName(skStates, k.GetState()), mapName(skFamilies, k.GetFamily()), mapName(skTypes, k.GetType()), k.GetIno()
				d.Source, d.SourcePort, d.Dest, d.DestPort = ipString(k.GetSrcAddr()), k.GetSrcPort(), ipString(k.GetDstAddr()), k.GetDstPort()
				bufs(k.GetOpts().GetSoSndbuf(), k.GetOpts().GetSoRcvbuf())
				if n := fmt.Sprintf("tcp-stream-%x.img", k.GetIno()); im.has(n) {
					if tcp, err := first[*tcp_stream.TcpStreamEntry](im, n); err == nil {
						d.InqBytes, d.OutqBytes = tcp.GetInqLen(), tcp.GetOutqLen()
					}
				}
			case fdinfo.FdTypes_UNIXSK:
				u := f.GetUsk()
				if u == nil {
					continue
				}
				s.Protocol = "UNIX"
				d.Type, d.Address, d.State, d.SockType, d.Ino, d.Peer, d.Family = "UNIX", string(u.GetName()), mapName(skStates, u.GetState()), mapName(skTypes, u.GetType()), u.GetIno(), u.GetPeer(), "UNIX"
				bufs(u.GetOpts().GetSoSndbuf(), u.GetOpts().GetSoRcvbuf())
			case fdinfo.FdTypes_PACKETSK:
				p := f.GetPsk()
				if p == nil {
					continue
				}
				s.Protocol = mapName(skProtos, p.GetProtocol())
				d.Family, d.SockType, d.Ino = "PACKET", mapName(skTypes, p.GetType()), p.GetId()
				bufs(p.GetOpts().GetSoSndbuf(), p.GetOpts().GetSoRcvbuf())
			case fdinfo.FdTypes_NETLINKSK:
				n := f.GetNlsk()
				if n == nil {
					continue
				}
				s.Protocol = mapName(skProtos, n.GetProtocol())
				d.Family, d.State, d.Ino, d.SockType = "NETLINK", mapName(skStates, n.GetState()), n.GetIno(), fmt.Sprintf("proto %d", n.GetProtocol())
				bufs(n.GetOpts().GetSoSndbuf(), n.GetOpts().GetSoRcvbuf())
			default:
				continue
			}
			d.QueuedPackets, d.QueuedBytes = qPk[fe.GetId()], qBy[fe.GetId()]
			s.Data = d
			ts.Sockets = append(ts.Sockets, s)
		}
		if len(ts.Sockets) > 0 {
			out = append(out, ts)
		}
	}
	return out, nil
}

func (im *Images) mountPoints() []MountPoint {
	des, err := fs.ReadDir(im.FS, im.Dir)
	if err != nil {
		return nil
	}
	var out []MountPoint
	for _, de := range des {
		if !strings.HasPrefix(de.Name(), "mountpoints-") {
			continue
		}
		img, err := image.ReadFileFS(im.FS, path.Join(im.Dir, de.Name()))
		if err != nil {
			continue
		}
		for _, e := range img.Entries {
			mp, ok := e.Msg.(interface {
				GetMntId() uint32
				GetParentMntId() uint32
				GetMountpoint() string
				GetRoot() string
				GetSource() string
				GetOptions() string
				GetExtKey() string
			})
			if !ok {
				continue
			}
			m := MountPoint{ID: mp.GetMntId(), Parent: mp.GetParentMntId(), Mountpoint: mp.GetMountpoint(), Root: mp.GetRoot(),
				Source: mp.GetSource(), Options: mp.GetOptions(), External: mp.GetExtKey()}
			if ft, ok := e.Msg.(interface{ GetFstype() uint32 }); ok {
				m.FsType = fsTypeName(ft.GetFstype())
			}
			if fn, ok := e.Msg.(interface{ GetFsname() string }); ok && fn.GetFsname() != "" {
				m.FsType = fn.GetFsname()
			}
			out = append(out, m)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// fsTypeName names CRIU's fstype enum (mnt.proto).
func fsTypeName(v uint32) string {
	names := []string{"unsupported", "proc", "sysfs", "devtmpfs", "binfmt_misc", "tmpfs", "devpts", "simfs", "pstore",
		"securityfs", "fusectl", "debugfs", "cgroup", "aufs", "mqueue", "fuse", "auto", "overlay", "autofs", "tracefs", "cgroup2"}
	if int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprint(v)
}
