package explore

import (
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	criu_core "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fs"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pipe"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/regfile"
	sk_unix "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-unix"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"github.com/criukit/criukit/image"
	"google.golang.org/protobuf/proto"
)

// ErrUnknownExplorer is returned by Write for a name other than ps, fds, mems, rss, sk.
var ErrUnknownExplorer = errors.New("unknown explorer (want ps, fds, mems, rss or sk)")

// Names lists the explorers in crit's order (sk is criukit's addition).
var Names = []string{"ps", "fds", "mems", "rss", "sk"}

// Dir is an images directory being explored; images are read once and cached.
type Dir struct {
	Path   string
	fsys   iofs.FS // nil: Path is an OS directory
	cache  map[string][]proto.Message
	files  map[uint32]*fdinfo.FileEntry // files.img by id (nil: not loaded)
	legacy map[string]map[uint32]proto.Message
}

// Open checks that dir holds a dump (pstree.img) and returns it.
func Open(dir string) (*Dir, error) {
	if _, err := os.Stat(filepath.Join(dir, "pstree.img")); err != nil {
		return nil, fmt.Errorf("%s is not a CRIU images directory (no pstree.img): %w", dir, err)
	}
	return &Dir{Path: dir, cache: map[string][]proto.Message{}, legacy: map[string]map[uint32]proto.Message{}}, nil
}

// OpenFS explores the images directory dir of fsys (an archive opened by package ckpt, or os.DirFS).
func OpenFS(fsys iofs.FS, dir string) (*Dir, error) {
	if _, err := iofs.Stat(fsys, path.Join(dir, "pstree.img")); err != nil {
		return nil, fmt.Errorf("%s is not a CRIU images directory (no pstree.img): %w", dir, err)
	}
	return &Dir{Path: dir, fsys: fsys, cache: map[string][]proto.Message{}, legacy: map[string]map[uint32]proto.Message{}}, nil
}

// OpenFSPartial is OpenFS without the pstree.img check, for images still arriving (a compressed
// archive being read in name order: pstree.img comes after core-, files.img and mm-).
func OpenFSPartial(fsys iofs.FS, dir string) *Dir {
	return &Dir{Path: dir, fsys: fsys, cache: map[string][]proto.Message{}, legacy: map[string]map[uint32]proto.Message{}}
}

// Exists reports whether the image name is in the directory.
func (d *Dir) Exists(name string) bool {
	if d.fsys != nil {
		_, err := iofs.Stat(d.fsys, path.Join(d.Path, name))
		return err == nil
	}
	_, err := os.Stat(filepath.Join(d.Path, name))
	return err == nil
}

// Load decodes the image name (once: entries are cached) and returns its entries.
func (d *Dir) Load(name string) ([]proto.Message, error) {
	if m, ok := d.cache[name]; ok {
		return m, nil
	}
	var img *image.Image
	var err error
	if d.fsys != nil {
		img, err = image.ReadFileFS(d.fsys, path.Join(d.Path, name))
	} else {
		img, err = image.ReadFile(filepath.Join(d.Path, name))
	}
	if err != nil {
		return nil, err
	}
	var out []proto.Message
	for _, e := range img.Entries {
		out = append(out, e.Msg)
	}
	d.cache[name] = out
	return out, nil
}

func first[T proto.Message](d *Dir, name string) (T, error) {
	var zero T
	ms, err := d.Load(name)
	if err != nil {
		return zero, err
	}
	if len(ms) == 0 {
		return zero, fmt.Errorf("%s: no entries", name)
	}
	t, ok := ms[0].(T)
	if !ok {
		return zero, fmt.Errorf("%s: unexpected message %T", name, ms[0])
	}
	return t, nil
}

func (d *Dir) pstree() ([]*pstree.PstreeEntry, error) {
	ms, err := d.Load("pstree.img")
	if err != nil {
		return nil, err
	}
	var out []*pstree.PstreeEntry
	for _, m := range ms {
		if p, ok := m.(*pstree.PstreeEntry); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// Proc is one task of the process tree.
type Proc struct {
	Pid      uint32   `json:"pid"`
	Ppid     uint32   `json:"ppid"`
	Pgid     uint32   `json:"pgid"`
	Sid      uint32   `json:"sid"`
	Comm     string   `json:"comm"`
	State    string   `json:"state,omitempty"`
	Threads  []uint32 `json:"threads,omitempty"`
	Children []*Proc  `json:"children,omitempty"`
}

// Ps returns the process tree (roots: tasks whose parent is not in the dump).
func (d *Dir) Ps() ([]*Proc, error) {
	pst, err := d.pstree()
	if err != nil {
		return nil, err
	}
	var order []*Proc
	for _, p := range pst {
		pr := &Proc{Pid: p.GetPid(), Ppid: p.GetPpid(), Pgid: p.GetPgid(), Sid: p.GetSid(), Threads: p.GetThreads()}
		core, err := first[*criu_core.CoreEntry](d, fmt.Sprintf("core-%d.img", p.GetPid()))
		if err != nil {
			return nil, err
		}
		pr.Comm = core.GetTc().GetComm()
		switch core.GetTc().GetTaskState() {
		case 1:
			pr.State = "Alive"
		case 2: // TASK_DEAD: how CRIU dumps a zombie
			pr.State = "Zombie"
		case 3:
			pr.State = "Stopped"
		}
		order = append(order, pr)
	}
	return Forest(order, func(p *Proc) (uint32, uint32) { return p.Pid, p.Ppid },
		func(parent, child *Proc) { parent.Children = append(parent.Children, child) }), nil
}

// Forest links the nodes of a process tree (in pstree order) to their parents and returns the
// roots: nodes whose parent pid is 0, not among nodes, or their own. ids gives a node's pid and
// parent pid; adopt appends child to parent's children.
func Forest[T comparable](nodes []T, ids func(T) (pid, ppid uint32), adopt func(parent, child T)) []T {
	by := make(map[uint32]T, len(nodes))
	for _, n := range nodes {
		pid, _ := ids(n)
		by[pid] = n
	}
	var roots []T
	for _, n := range nodes {
		_, ppid := ids(n)
		if pp, ok := by[ppid]; ok && ppid != 0 && pp != n {
			adopt(pp, n)
		} else {
			roots = append(roots, n)
		}
	}
	return roots
}

// WritePs prints the tree like `crit x DIR ps`.
func WritePs(w io.Writer, roots []*Proc) {
	fmt.Fprintf(w, "%7s%7s%7s   %s\n", "PID", "PGID", "SID", "COMM")
	var walk func(p *Proc, depth int)
	walk = func(p *Proc, depth int) {
		fmt.Fprintf(w, "%7d%7d%7d   %s%s\n", p.Pid, p.Pgid, p.Sid, strings.Repeat(" ", 4*depth), p.Comm)
		for _, k := range p.Children {
			walk(k, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
}

// file returns files.img's entry with id, or nil.
// File returns files.img's entry id (nil when there is none).
func (d *Dir) File(id uint32) *fdinfo.FileEntry { return d.file(id) }

func (d *Dir) file(id uint32) *fdinfo.FileEntry {
	if d.files == nil {
		d.files = map[uint32]*fdinfo.FileEntry{}
		if ms, err := d.Load("files.img"); err == nil {
			for _, m := range ms {
				if f, ok := m.(*fdinfo.FileEntry); ok {
					d.files[f.GetId()] = f
				}
			}
		}
	}
	return d.files[id]
}

// legacyFile looks id up in a pre-files.img image (reg-files.img, pipes.img, unixsk.img).
func (d *Dir) legacyFile(img string, id uint32) proto.Message {
	m, ok := d.legacy[img]
	if !ok {
		m = map[uint32]proto.Message{}
		if ms, err := d.Load(img); err == nil {
			for _, x := range ms {
				if g, ok := x.(interface{ GetId() uint32 }); ok {
					m[g.GetId()] = x
				}
			}
		}
		d.legacy[img] = m
	}
	return m[id]
}

// FileString describes file id of fd type typ like crit: the path of regular files, pipe[ID],
// unix[INO (PEER) NAME], TYPE.ID for the rest.
func (d *Dir) FileString(typ string, id uint32) string {
	haveFiles := len(d.filesOrEmpty()) > 0
	switch typ {
	case "REG":
		var r *regfile.RegFileEntry
		if haveFiles {
			if f := d.file(id); f != nil {
				r = f.GetReg()
				if m := f.GetMemfd(); m != nil {
					return fmt.Sprintf("memfd[%d]", m.GetInodeId()) // crit says "unknown path"
				}
			}
		} else if m, ok := d.legacyFile("reg-files.img", id).(*regfile.RegFileEntry); ok {
			r = m
		}
		if r == nil || r.GetName() == "" {
			return "unknown path"
		}
		return r.GetName()
	case "PIPE":
		var p *pipe.PipeEntry
		if haveFiles {
			if f := d.file(id); f != nil {
				p = f.GetPipe()
			}
		} else if m, ok := d.legacyFile("pipes.img", id).(*pipe.PipeEntry); ok {
			p = m
		}
		if p == nil {
			return "pipe[?]"
		}
		return fmt.Sprintf("pipe[%d]", p.GetPipeId())
	case "UNIXSK":
		var u *sk_unix.UnixSkEntry
		if haveFiles {
			if f := d.file(id); f != nil {
				u = f.GetUsk()
			}
		} else if m, ok := d.legacyFile("unixsk.img", id).(*sk_unix.UnixSkEntry); ok {
			u = m
		}
		if u == nil {
			return "unix[?]"
		}
		n := ""
		if len(u.GetName()) > 0 {
			n = " " + unixName(u.GetName())
		}
		return fmt.Sprintf("unix[%d (%d)%s]", u.GetIno(), u.GetPeer(), n)
	}
	return fmt.Sprintf("%s.%d", typ, id)
}

func (d *Dir) filesOrEmpty() map[uint32]*fdinfo.FileEntry {
	d.file(0)
	return d.files
}

// FD is one open file descriptor.
type FD struct {
	Fd   string `json:"fd"` // number, or "cwd"/"root"
	Type string `json:"type"`
	ID   uint32 `json:"id"`
	File string `json:"file"`
}

// TaskFDs lists the descriptors of one task.
type TaskFDs struct {
	Pid    uint32 `json:"pid"`
	Zombie bool   `json:"zombie,omitempty"` // a zombie has no files, memory or sockets in the dump
	FDs    []FD   `json:"fds"`
}

// zombie reports whether task pid was dumped as a zombie (core task_state 2, TASK_DEAD: CRIU writes no ids,
// fdinfo, fs, mm or pagemap image for it).
func (d *Dir) zombie(pid uint32) bool {
	core, err := first[*criu_core.CoreEntry](d, fmt.Sprintf("core-%d.img", pid))
	return err == nil && core.GetTc().GetTaskState() == 2
}

// loadOptional loads an image that CRIU may not have written (an empty table): missing = no entries.
func (d *Dir) loadOptional(name string) ([]proto.Message, error) {
	ms, err := d.Load(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return ms, err
}

func zombieLine(w io.Writer, pid uint32, zombie bool) bool {
	if zombie {
		fmt.Fprintf(w, "%d (zombie)\n", pid)
		return true
	}
	fmt.Fprintf(w, "%d\n", pid)
	return false
}

// Fds returns the open files of every task, then its cwd and root, like `crit x DIR fds`.
func (d *Dir) Fds() ([]TaskFDs, error) {
	pst, err := d.pstree()
	if err != nil {
		return nil, err
	}
	var out []TaskFDs
	for _, p := range pst {
		pid := p.GetPid()
		if d.zombie(pid) {
			out = append(out, TaskFDs{Pid: pid, Zombie: true})
			continue
		}
		ids, err := first[*criu_core.TaskKobjIdsEntry](d, fmt.Sprintf("ids-%d.img", pid))
		if err != nil {
			return nil, err
		}
		t := TaskFDs{Pid: pid, FDs: []FD{}}
		fdi, err := d.loadOptional(fmt.Sprintf("fdinfo-%d.img", ids.GetFilesId()))
		if err != nil {
			return nil, err
		}
		for _, m := range fdi {
			fe, ok := m.(*fdinfo.FdinfoEntry)
			if !ok {
				continue
			}
			typ := fe.GetType().String()
			t.FDs = append(t.FDs, FD{Fd: fmt.Sprint(fe.GetFd()), Type: typ, ID: fe.GetId(), File: d.FileString(typ, fe.GetId())})
		}
		fse, err := first[*fs.FsEntry](d, fmt.Sprintf("fs-%d.img", pid))
		if err != nil {
			return nil, err
		}
		t.FDs = append(t.FDs, FD{Fd: "cwd", Type: "REG", ID: fse.GetCwdId(), File: d.FileString("REG", fse.GetCwdId())})
		t.FDs = append(t.FDs, FD{Fd: "root", Type: "REG", ID: fse.GetRootId(), File: d.FileString("REG", fse.GetRootId())})
		out = append(out, t)
	}
	return out, nil
}

// WriteFds prints like `crit x DIR fds`.
func WriteFds(w io.Writer, tasks []TaskFDs) {
	for _, t := range tasks {
		zombieLine(w, t.Pid, t.Zombie)
		for _, f := range t.FDs {
			fmt.Fprintf(w, "\t%7s: %s\n", f.Fd, f.File)
		}
	}
}

// VMA status bits (criu/include/image.h) and mmap flags of a VmaEntry.
const (
	VMARegular     = 1 << 0
	VMAStack       = 1 << 1
	VMAVsyscall    = 1 << 2
	VMAVdso        = 1 << 3
	VMAHeap        = 1 << 5
	VMAFilePrivate = 1 << 6
	VMAFileShared  = 1 << 7
	VMAAnonShared  = 1 << 8
	VMAAnonPrivate = 1 << 9
	VMASysvipc     = 1 << 10
	VMASocket      = 1 << 11
	VMAVvar        = 1 << 12
	VMAAioring     = 1 << 13
	VMAMemfd       = 1 << 14

	MapShared    = 0x01
	MapGrowsdown = 0x0100
)

// ProtString renders PROT_* bits as rwx, '-' for a missing right.
func ProtString(p uint32) string {
	b := []byte("---")
	if p&1 != 0 {
		b[0] = 'r'
	}
	if p&2 != 0 {
		b[1] = 'w'
	}
	if p&4 != 0 {
		b[2] = 'x'
	}
	return string(b)
}

// Mapping is one VMA of a task.
type Mapping struct {
	Start  uint64 `json:"start"`
	End    uint64 `json:"end"`
	Prot   string `json:"prot"`
	What   string `json:"what"` // file path, [stack], shmem[N]...; "" for anonymous private
	Status uint32 `json:"status"`
	// Unusual is crit's "*" mark: the VMA lacks VMA_AREA_REGULAR (vsyscall, vvar...).
	Unusual bool `json:"unusual,omitempty"`
}

// TaskMems lists the mappings of one task.
type TaskMems struct {
	Pid    uint32    `json:"pid"`
	Zombie bool      `json:"zombie,omitempty"`
	Exe    string    `json:"exe,omitempty"`
	VMAs   []Mapping `json:"vmas"`
}

type vmaIDs struct {
	ids  map[uint64]int
	last int
}

func (v *vmaIDs) get(id uint64) int {
	if n, ok := v.ids[id]; ok {
		return n
	}
	v.last++
	v.ids[id] = v.last
	return v.last
}

func (d *Dir) mm(pid uint32) (*mm.MmEntry, error) {
	return first[*mm.MmEntry](d, fmt.Sprintf("mm-%d.img", pid))
}

// Mems returns the mappings of every task like `crit x DIR mems`.
func (d *Dir) Mems() ([]TaskMems, error) {
	pst, err := d.pstree()
	if err != nil {
		return nil, err
	}
	vids := &vmaIDs{ids: map[uint64]int{}}
	var out []TaskMems
	for _, p := range pst {
		if d.zombie(p.GetPid()) {
			out = append(out, TaskMems{Pid: p.GetPid(), Zombie: true})
			continue
		}
		m, err := d.mm(p.GetPid())
		if err != nil {
			return nil, err
		}
		t := TaskMems{Pid: p.GetPid(), Exe: d.FileString("REG", m.GetExeFileId())}
		for _, v := range m.GetVmas() {
			t.VMAs = append(t.VMAs, d.mapping(v, vids))
		}
		out = append(out, t)
	}
	return out, nil
}

func (d *Dir) mapping(v *vma.VmaEntry, vids *vmaIDs) Mapping {
	st := v.GetStatus()
	var fn string
	switch {
	case st&VMASysvipc != 0:
		fn = fmt.Sprintf("ips[%x]", vids.get(v.GetShmid()))
	case st&VMAAnonShared != 0:
		fn = fmt.Sprintf("shmem[%x]", vids.get(v.GetShmid()))
	case st&VMASocket != 0:
		fn = fmt.Sprintf("packet[%x]", vids.get(v.GetShmid()))
	case st&(VMAFilePrivate|VMAFileShared) != 0:
		fn = d.FileString("REG", uint32(v.GetShmid()))
		if v.GetPgoff() != 0 {
			fn += fmt.Sprintf(" + %#x", v.GetPgoff())
		}
		if st&VMAFileShared != 0 {
			fn += " (s)"
		}
	case st&VMAStack != 0:
		fn = "[stack]"
	case st&VMAVsyscall != 0:
		fn = "[vsyscall]"
	case st&VMAVdso != 0:
		fn = "[vdso]"
	case v.GetFlags()&MapGrowsdown != 0:
		fn = "[stack?]"
	}
	return Mapping{Start: v.GetStart(), End: v.GetEnd(), Prot: ProtString(v.GetProt()), What: fn, Status: st, Unusual: st&VMARegular == 0}
}

// WriteMems prints like `crit x DIR mems`.
func WriteMems(w io.Writer, tasks []TaskMems) {
	for _, t := range tasks {
		if zombieLine(w, t.Pid, t.Zombie) {
			continue
		}
		fmt.Fprintf(w, "\t%-36s    %s\n", "exe", t.Exe)
		for _, m := range t.VMAs {
			fn := ""
			if m.What != "" {
				fn = " " + m.What
			}
			if m.Unusual {
				fn += " *"
			}
			fmt.Fprintf(w, "\t%-36s%s%s\n", fmt.Sprintf("%08x-%08x", m.Start, m.End), m.Prot, fn)
		}
	}
}

// RssRange is one pagemap entry and the VMAs it covers.
type RssRange struct {
	Vaddr uint64   `json:"vaddr"`
	Pages uint64   `json:"nr_pages"`
	Flags uint32   `json:"flags"`
	VMAs  []RssVMA `json:"vmas"`
}

// RssVMA is a VMA covered by a pagemap entry; Same marks crit's "~" (the VMA of the previous line).
type RssVMA struct {
	Start uint64 `json:"start"`
	Pages uint64 `json:"pages"`
	File  string `json:"file,omitempty"`
	Same  bool   `json:"same,omitempty"`
}

// TaskRss lists the dumped page ranges of one task.
type TaskRss struct {
	Pid    uint32     `json:"pid"`
	Zombie bool       `json:"zombie,omitempty"`
	Ranges []RssRange `json:"ranges"`
}

// PageCount returns the page count of a pagemap entry: field 5 (CRIU >= 4.2) or field 2 (older).
func PageCount(pe *pagemap.PagemapEntry) uint64 {
	if pe.NrPages != nil {
		return pe.GetNrPages()
	}
	return uint64(pe.GetCompatNrPages())
}

// Rss returns, per task, the dumped page ranges and the VMAs they fall in (`crit x DIR rss`).
func (d *Dir) Rss() ([]TaskRss, error) {
	pst, err := d.pstree()
	if err != nil {
		return nil, err
	}
	var out []TaskRss
	for _, p := range pst {
		if d.zombie(p.GetPid()) {
			out = append(out, TaskRss{Pid: p.GetPid(), Zombie: true})
			continue
		}
		m, err := d.mm(p.GetPid())
		if err != nil {
			return nil, err
		}
		vmas := m.GetVmas()
		pms, err := d.Load(fmt.Sprintf("pagemap-%d.img", p.GetPid()))
		if err != nil {
			return nil, err
		}
		t := TaskRss{Pid: p.GetPid()}
		vmi, pvmi := 0, -1
		for _, x := range pms {
			pe, ok := x.(*pagemap.PagemapEntry)
			if !ok {
				continue // the pagemap_head
			}
			n := PageCount(pe)
			r := RssRange{Vaddr: pe.GetVaddr(), Pages: n, Flags: pe.GetFlags()}
			for vmi < len(vmas) && vmas[vmi].GetEnd() <= pe.GetVaddr() {
				vmi++
			}
			pme := pe.GetVaddr() + n<<12
			for vmi < len(vmas) && vmas[vmi].GetStart() < pme {
				v := vmas[vmi]
				if vmi == pvmi {
					r.VMAs = append(r.VMAs, RssVMA{Start: v.GetStart(), Pages: (v.GetEnd() - v.GetStart()) >> 12, Same: true})
				} else {
					rv := RssVMA{Start: v.GetStart(), Pages: (v.GetEnd() - v.GetStart()) >> 12}
					if v.GetStatus()&(VMAFilePrivate|VMAFileShared) != 0 {
						rv.File = d.FileString("REG", uint32(v.GetShmid()))
					}
					r.VMAs = append(r.VMAs, rv)
					pvmi = vmi
				}
				vmi++
			}
			if vmi > 0 {
				vmi--
			}
			t.Ranges = append(t.Ranges, r)
		}
		out = append(out, t)
	}
	return out, nil
}

// WriteRss prints like `crit x DIR rss`.
func WriteRss(w io.Writer, tasks []TaskRss) {
	for _, t := range tasks {
		zombieLine(w, t.Pid, t.Zombie)
		for _, r := range t.Ranges {
			pstr := fmt.Sprintf("\t%x / %-8d", r.Vaddr, r.Pages)
			var vstr strings.Builder
			for _, v := range r.VMAs {
				if v.Same {
					vstr.WriteString(" ~")
				} else {
					fmt.Fprintf(&vstr, " %08x / %-8d", v.Start, v.Pages)
					if v.File != "" {
						vstr.WriteString(" " + v.File)
					}
				}
				fmt.Fprintf(&vstr, "\n\t%23s", "")
			}
			fmt.Fprintf(w, "%-24s%s\n", pstr, vstr.String())
		}
	}
}
