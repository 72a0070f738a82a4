package ghosts

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	ipc_shm "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-shm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/memfd"
	"github.com/criukit/criukit/image"
)

// AuditItem is one image file (or part of one) that holds a copy of file data.
type AuditItem struct {
	Kind  Kind   `json:"kind"`
	File  string `json:"file"`
	Bytes int64  `json:"bytes"`
	Note  string `json:"note,omitempty"`
}

// Audit is the measured size of the copies in a finished dump.
type Audit struct {
	Dir   string      `json:"dir"`
	Items []AuditItem `json:"items"`
	Total int64       `json:"total"`
}

// auditPatterns maps image file name globs to the kind of copy they hold.
var auditPatterns = []struct {
	glob string
	kind Kind
}{
	{"ghost-file-*.img", KindGhost},
	{"tmpfs-dev-*.tar.gz.img", KindTmpfs},
	{"tmpfs-*.tar.gz.img", KindTmpfs},
	{"ipcns-shm-*.img", KindSysVShm},
	{"pipes-data.img", KindPipe},
	{"fifo-data.img", KindFifo},
	{"sk-queues.img", KindUnixQueue},
	{"tcp-stream-*.img", KindTCPQueue},
}

// AuditDir measures the copies of file data in the images directory dir: the sizes of ghost-file,
// tmpfs, ipcns-shm, pipes-data, fifo-data, sk-queues and tcp-stream images, plus the shmem pages
// of every memfd (memfd.img inodes -> pagemap-shmem-SHMID.img).
func AuditDir(dir string) (*Audit, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("audit: %s is not an images directory: %v", dir, err)
	}
	a := &Audit{Dir: dir}
	seen := map[string]bool{}
	for _, p := range auditPatterns {
		m, err := filepath.Glob(filepath.Join(dir, p.glob))
		if err != nil {
			return nil, err
		}
		for _, f := range m {
			if seen[f] {
				continue
			}
			seen[f] = true
			fi, err := os.Stat(f)
			if err != nil {
				return nil, err
			}
			a.Items = append(a.Items, AuditItem{Kind: p.kind, File: filepath.Base(f), Bytes: fi.Size()})
		}
	}
	if err := a.memfds(); err != nil {
		return nil, err
	}
	if err := a.shmPages(); err != nil {
		return nil, err
	}
	sort.SliceStable(a.Items, func(i, j int) bool { return a.Items[i].Bytes > a.Items[j].Bytes })
	for _, it := range a.Items {
		a.Total += it.Bytes
	}
	return a, nil
}

func (a *Audit) memfds() error {
	path := filepath.Join(a.Dir, "memfd.img")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	img, err := image.ReadFile(path)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	for _, e := range img.Entries {
		ino, ok := e.Msg.(*memfd.MemfdInodeEntry)
		if !ok || strings.HasPrefix(ino.GetName(), "/") {
			continue // CRIU also records MAP_SHARED|MAP_ANONYMOUS memory ("/dev/zero") here: memory, not file data
		}
		m, err := image.OpenShmem(a.Dir, uint64(ino.GetShmid()))
		if err != nil {
			a.Items = append(a.Items, AuditItem{Kind: KindMemfd, File: "memfd.img", Note: fmt.Sprintf("memfd %q: no shmem pages (%v)", ino.GetName(), err)})
			continue
		}
		var n int64
		for _, r := range m.Ranges() {
			n += int64(r.NrPages) * image.PageSize
		}
		m.Close()
		a.Items = append(a.Items, AuditItem{Kind: KindMemfd, File: fmt.Sprintf("pagemap-shmem-%d.img", ino.GetShmid()), Bytes: n,
			Note: fmt.Sprintf("memfd %q: pages stored in pages-*.img", strings.TrimPrefix(ino.GetName(), "memfd:"))})
	}
	return nil
}

// shmPages adds the pages of SysV shm segments stored in pagemaps (ipc_shm_entry.in_pagemaps):
// pagemap-shmem-SHMID.img -> pages-*.img.
func (a *Audit) shmPages() error {
	m, err := filepath.Glob(filepath.Join(a.Dir, "ipcns-shm-*.img"))
	if err != nil {
		return err
	}
	for _, f := range m {
		img, err := image.ReadFile(f)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		for _, e := range img.Entries {
			shm, ok := e.Msg.(*ipc_shm.IpcShmEntry)
			if !ok || !shm.GetInPagemaps() {
				continue
			}
			id := uint64(shm.GetDesc().GetId())
			mem, err := image.OpenShmem(a.Dir, id)
			if err != nil {
				continue // no pages were dumped (never touched)
			}
			var n int64
			for _, r := range mem.Ranges() {
				n += int64(r.NrPages) * image.PageSize
			}
			mem.Close()
			a.Items = append(a.Items, AuditItem{Kind: KindSysVShm, File: fmt.Sprintf("pagemap-shmem-%d.img", id), Bytes: n,
				Note: fmt.Sprintf("SysV shm id %d: pages stored in pages-*.img", id)})
		}
	}
	return nil
}

// BudgetError reports copies of file data over the total budget (CRIUKIT_COPY_BUDGET).
type BudgetError struct {
	Phase  string // "preflight" (prediction) or "audit" (measured after the dump)
	Budget int64
	Total  int64
	Top    []string // biggest items, largest first
	Hint   string
}

func (e *BudgetError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %v: %s bytes of copies, budget %s", e.Phase, ErrOverBudget, FormatSize(e.Total), FormatSize(e.Budget))
	if len(e.Top) > 0 {
		b.WriteString("; biggest:")
		for _, t := range e.Top {
			b.WriteString("\n  " + t)
		}
	}
	if e.Hint != "" {
		b.WriteString("\n" + e.Hint)
	}
	return b.String()
}

func (e *BudgetError) Unwrap() error { return ErrOverBudget }

const budgetHint = "What to do: raise " + EnvCopyBudget + " (or --copy-budget), or shrink the biggest items before the dump " +
	"(close or truncate deleted files, drain queues, clean tmpfs), or use --link-remap for deleted files on a writable filesystem."

// CheckBudget returns a *BudgetError when the predicted total exceeds budget (budget < 0: no budget).
func (r *Report) CheckBudget(budget int64) error {
	if budget < 0 || r.TotalImageBytes <= budget {
		return nil
	}
	e := &BudgetError{Phase: "preflight", Budget: budget, Total: r.TotalImageBytes, Hint: budgetHint}
	for _, it := range r.Biggest(3) {
		e.Top = append(e.Top, fmt.Sprintf("%s bytes  %s pid %d %s %s", FormatSize(it.ImageBytes), it.Kind, it.Pid, it.Where, it.Path))
	}
	return e
}

// CheckBudget returns a *BudgetError when the measured total exceeds budget (budget < 0: no budget).
func (a *Audit) CheckBudget(budget int64) error {
	if budget < 0 || a.Total <= budget {
		return nil
	}
	e := &BudgetError{Phase: "audit", Budget: budget, Total: a.Total,
		Hint: "The images in " + a.Dir + " were written; they break the budget. " + budgetHint}
	for i, it := range a.Items {
		if i == 3 {
			break
		}
		e.Top = append(e.Top, fmt.Sprintf("%s bytes  %s %s %s", FormatSize(it.Bytes), it.Kind, it.File, it.Note))
	}
	return e
}
