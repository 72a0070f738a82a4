package inspect

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/image/explore"
)

// VMA is one mapping of a task with how its pages were dumped.
type VMA struct {
	Start   uint64 `json:"start"`
	End     uint64 `json:"end"`
	Prot    string `json:"prot"` // rwx, '-' for missing rights
	Kind    string `json:"kind"` // heap, stack, anon, file, shmem, memfd, sysvipc, vdso, vvar, vsyscall, aio, socket
	Path    string `json:"path,omitempty"`
	Shared  bool   `json:"shared,omitempty"`
	Pgoff   uint64 `json:"pgoff,omitempty"`
	Pages   uint64 `json:"pages"`   // VMA size in pages
	Present uint64 `json:"present"` // pages in pages-*.img
	Parent  uint64 `json:"parent"`  // pages in a parent dump (incremental, or COW-shared after `dump --cow`)
	Lazy    uint64 `json:"lazy,omitempty"`
	Zero    uint64 `json:"zero"` // pages in no pagemap entry (never touched, or file pages CRIU rereads)
}

// Size returns the VMA size in bytes.
func (v VMA) Size() uint64 { return v.End - v.Start }

// String renders a VMA like /proc/PID/maps.
func (v VMA) String() string {
	s := fmt.Sprintf("%012x-%012x %s %s", v.Start, v.End, v.Prot, v.Kind)
	if v.Path != "" {
		s += " " + v.Path
	}
	return s
}

// ProcMemSize is one row of checkpointctl memparse's table, with criukit's breakdown.
type ProcMemSize struct {
	Pid          uint32 `json:"pid"`
	Comm         string `json:"command"`
	MemoryBytes  int64  `json:"memory_size"`        // pagemap entries' pages (checkpointctl's "Memory size")
	SharedBytes  int64  `json:"shared_memory_size"` // MAP_SHARED VMAs (checkpointctl's "Shared memory size")
	PresentBytes int64  `json:"present_bytes"`
	ParentBytes  int64  `json:"parent_bytes,omitempty"`
	LazyBytes    int64  `json:"lazy_bytes,omitempty"`
	VirtualBytes int64  `json:"virtual_bytes"`
	VMAs         int    `json:"vmas"`
	PagesID      uint32 `json:"pages_id"`
}

func (im *Images) vma(v *vma.VmaEntry) VMA {
	st := v.GetStatus()
	out := VMA{Start: v.GetStart(), End: v.GetEnd(), Prot: explore.ProtString(v.GetProt()), Shared: v.GetFlags()&explore.MapShared != 0}
	if v.GetEnd() > v.GetStart() {
		out.Pages = (v.GetEnd() - v.GetStart()) / uint64(image.PageSize)
	}
	switch {
	case st&explore.VMAHeap != 0:
		out.Kind = "heap"
	case st&explore.VMAStack != 0:
		out.Kind, out.Path = "stack", "[stack]"
	case st&explore.VMAVdso != 0:
		out.Kind, out.Path = "vdso", "[vdso]"
	case st&explore.VMAVvar != 0:
		out.Kind, out.Path = "vvar", "[vvar]"
	case st&explore.VMAVsyscall != 0:
		out.Kind, out.Path = "vsyscall", "[vsyscall]"
	case st&explore.VMASysvipc != 0:
		out.Kind, out.Path = "sysvipc", fmt.Sprintf("SYSV shm %d", v.GetShmid())
	case st&explore.VMASocket != 0:
		out.Kind = "socket"
	case st&explore.VMAAioring != 0:
		out.Kind = "aio"
	case st&explore.VMAMemfd != 0:
		out.Kind, out.Path = "memfd", im.X.FileString("MEMFD", uint32(v.GetShmid()))
	case st&(explore.VMAFilePrivate|explore.VMAFileShared) != 0:
		out.Kind, out.Path, out.Pgoff = "file", im.X.FileString("REG", uint32(v.GetShmid())), v.GetPgoff()
	case st&explore.VMAAnonShared != 0:
		out.Kind, out.Path = "shmem", fmt.Sprintf("shmem %#x", v.GetShmid())
	default:
		out.Kind = "anon"
		if v.GetFlags()&explore.MapGrowsdown != 0 {
			out.Kind = "stack"
		}
	}
	if out.Kind == "heap" {
		out.Path = "[heap]"
	}
	return out
}

// MemoryMap returns a task's VMAs with their dumped pages, and the page ranges of its pagemap.
func (im *Images) MemoryMap(t *Task) ([]VMA, []image.PageRange, error) {
	if t.MM == nil {
		return nil, nil, nil
	}
	m, err := im.Memory(t.Pid())
	if err != nil {
		return nil, nil, err
	}
	defer m.Close()
	ranges := m.Ranges()
	vmas := make([]VMA, 0, len(t.MM.GetVmas()))
	for _, v := range t.MM.GetVmas() {
		vmas = append(vmas, im.vma(v))
	}
	sort.SliceStable(vmas, func(i, j int) bool { return vmas[i].Start < vmas[j].Start })
	ps := uint64(image.PageSize)
	j := 0
	for i := range vmas {
		v := &vmas[i]
		for j > 0 && ranges[j-1].End() > v.Start {
			j--
		}
		var covered uint64
		for k := j; k < len(ranges) && ranges[k].Vaddr < v.End; k++ {
			r := ranges[k]
			lo, hi := max(r.Vaddr, v.Start), min(r.End(), v.End)
			if hi <= lo {
				continue
			}
			n := (hi - lo) / ps
			covered += n
			switch {
			case r.Flags&image.PEPresent != 0:
				v.Present += n
			case r.Flags&image.PEParent != 0:
				v.Parent += n
			case r.Flags&image.PELazy != 0:
				v.Lazy += n
			}
			j = k
		}
		if covered < v.Pages {
			v.Zero = v.Pages - covered
		}
	}
	return vmas, ranges, nil
}

func (im *Images) memSize(t *Task) (ProcMemSize, error) {
	s := ProcMemSize{Pid: t.Pid(), Comm: t.Core.GetTc().GetComm()}
	m, err := im.Memory(t.Pid())
	if err != nil {
		return s, err
	}
	defer m.Close()
	s.PagesID = m.PagesID
	for _, r := range m.Ranges() {
		b := int64(r.NrPages) * image.PageSize
		s.MemoryBytes += b
		switch {
		case r.Flags&image.PEPresent != 0:
			s.PresentBytes += b
		case r.Flags&image.PEParent != 0:
			s.ParentBytes += b
		case r.Flags&image.PELazy != 0:
			s.LazyBytes += b
		}
	}
	for _, v := range t.MM.GetVmas() {
		if v.GetEnd() > v.GetStart() {
			s.VirtualBytes += int64(v.GetEnd() - v.GetStart())
			if v.GetFlags()&explore.MapShared != 0 {
				s.SharedBytes += int64(v.GetEnd() - v.GetStart())
			}
		}
	}
	s.VMAs = len(t.MM.GetVmas())
	return s, nil
}

// MemSizes returns checkpointctl memparse's per-process table (tasks with memory, pstree order).
func (im *Images) MemSizes() ([]ProcMemSize, error) {
	tasks, err := im.Tasks()
	if err != nil {
		return nil, err
	}
	var out []ProcMemSize
	for _, t := range tasks {
		if !t.HasMemory() {
			continue
		}
		s, err := im.memSize(t)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// ByteSize formats like checkpointctl's tables ("1.5 KiB", "72.0 KiB").
func ByteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for i := n / unit; i >= unit; i /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// matchKind reports whether a VMA matches a --vma filter: a kind (heap, stack, anon, file, shmem,
// ...) or, for anything else, a substring of its path.
func (v VMA) matchKind(f string) bool {
	if f == "" {
		return true
	}
	for _, k := range strings.Split(f, ",") {
		switch k {
		case "heap", "stack", "anon", "file", "shmem", "memfd", "sysvipc", "vdso", "vvar", "vsyscall", "aio", "socket":
			if v.Kind == k {
				return true
			}
		default:
			if strings.Contains(v.Path, k) {
				return true
			}
		}
	}
	return false
}

// HexDump writes every dumped page of task pid as "address  hex  |ascii|" lines (checkpointctl
// memparse --pid's layout); compact folds repeated lines into "*" like hexdump. checkOnly only
// checks that pid is a dumped task with memory.
func (im *Images) HexDump(w io.Writer, pid uint32, compact, checkOnly bool) error {
	tasks, err := im.Tasks()
	if err != nil {
		return err
	}
	var t *Task
	for _, x := range tasks {
		if x.Pid() == pid {
			t = x
		}
	}
	if t == nil {
		return errNoPid(im.C.Path, pid)
	}
	if !t.HasMemory() {
		return fmt.Errorf("%s: process %d has no memory pages (task state %s)", im.C.Path, pid, State(t.Core.GetTc().GetTaskState()))
	}
	if checkOnly {
		return nil
	}
	m, err := im.Memory(pid)
	if err != nil {
		return err
	}
	defer m.Close()
	bw := bufio.NewWriterSize(w, 256<<10)
	defer bw.Flush()
	buf := make([]byte, 1<<20)
	line := make([]byte, 0, 100)
	var prev [16]byte
	dup := false
	for _, r := range m.Ranges() {
		if r.Flags&(image.PEPresent|image.PEParent) == 0 {
			continue
		}
		first := true
		for off := uint64(0); off < r.NrPages*uint64(image.PageSize); off += uint64(len(buf)) {
			n := min(uint64(len(buf)), r.NrPages*uint64(image.PageSize)-off)
			b := buf[:n]
			if _, err := m.ReadAt(b, int64(r.Vaddr+off)); err != nil {
				return err
			}
			for i := 0; i < len(b); i += 16 {
				row := b[i : i+16]
				if compact && !first && [16]byte(row) == prev {
					if !dup {
						bw.WriteString("*\n")
						dup = true
					}
					continue
				}
				first, dup = false, false
				copy(prev[:], row)
				line = line[:0]
				line = fmt.Appendf(line, "%016x  ", r.Vaddr+off+uint64(i))
				for _, c := range row {
					line = append(line, hexDigits[c>>4], hexDigits[c&15], ' ')
				}
				line = append(line, " |"...)
				for _, c := range row {
					if c < 32 || c >= 127 {
						c = '.'
					}
					line = append(line, c)
				}
				line = append(line, "|\n"...)
				if _, err := bw.Write(line); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

const hexDigits = "0123456789abcdef"
