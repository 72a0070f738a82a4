package memtrack

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNotSupported is returned when the kernel lacks async uffd write-protect or PAGEMAP_SCAN.
var ErrNotSupported = errors.New("userfaultfd WP_ASYNC + PAGEMAP_SCAN not supported (needs Linux >= 6.7 with CONFIG_USERFAULTFD and CONFIG_PTE_MARKER_UFFD_WP)")

// ErrExec is returned by Scan when the target executed a new program after Attach: the tracked
// memory no longer exists (the uffd belongs to the old address space). Attach again.
var ErrExec = errors.New("memtrack: the target executed a new program since Attach; attach again")

// ErrClosed is returned by Scan after Close.
var ErrClosed = errors.New("memtrack: tracker closed")

// Region is a range memtrack registered for write tracking (one VMA at the time it was armed).
type Region struct {
	ID    int    `json:"id"`
	Start uint64 `json:"start"`
	End   uint64 `json:"end"`
	Perms string `json:"perms"`
	Label string `json:"label"`
	Armed int    `json:"armed_at_interval"` // 0 for regions armed by Attach
	// Retired regions were unmapped or replaced while tracked (FollowNew); their writes stay counted.
	Retired bool `json:"retired,omitempty"`
}

// Pages is the size of the region in pages.
func (r *Region) Pages() int { return int((r.End - r.Start) / pageSize) }

// Skipped is a VMA memtrack does not track, and why.
type Skipped struct {
	VMA
	Reason string `json:"reason"`
}

// Range is a run of written pages [Start, End).
type Range struct {
	Start uint64 `json:"start"`
	End   uint64 `json:"end"`
}

// RegionWrites is what one region saw in one interval.
type RegionWrites struct {
	Region int     `json:"region"` // Region.ID
	Pages  int     `json:"pages"`
	Ranges []Range `json:"ranges,omitempty"`
}

// Interval is the result of one Scan: pages written since the previous Scan (or Attach).
type Interval struct {
	Index      int            `json:"index"`
	Start      time.Time      `json:"start"`
	End        time.Time      `json:"end"`
	Pages      int            `json:"pages"`       // total written pages
	Bytes      uint64         `json:"bytes"`       // Pages * page size
	Rate       float64        `json:"rate_bps"`    // bytes written per second
	ScanTime   time.Duration  `json:"scan_ns"`     // time PAGEMAP_SCAN (+ re-protect) took
	NewRegions int            `json:"new_regions"` // regions armed during this scan (seen from the next one)
	Regions    []RegionWrites `json:"regions"`     // only regions with writes
}

// Options tune a Tracker.
type Options struct {
	// FollowNew arms writable private anonymous VMAs that appear after Attach, at every Scan.
	FollowNew bool
	// NoUnpopulated leaves unpopulated pages alone (no UFFD_FEATURE_WP_UNPOPULATED; Attach and Scan
	// protect only populated pages). Writes to them are still seen (a new page is not
	// write-protected), but no pte markers are installed: the kernel reports markers as swapped
	// pages, so a `criu dump` of a tracked process would read and store every unpopulated page of a
	// tracked VMA (as zeros) and its restore would allocate them. migrate sets it.
	NoUnpopulated bool
}

var pageSize = uint64(os.Getpagesize())

// Tracker tracks the writes of one process. Methods are safe for concurrent use.
type Tracker struct {
	pid  int
	opts Options

	mu      sync.Mutex
	uffd    int
	regions []*Region // sorted by Start, non-overlapping
	retired []*Region
	skipped []Skipped
	last    time.Time
	index   int
	nextID  int
	vec     []pageRegion
	auxv    []byte // /proc/PID/auxv at Attach: any exec changes it
}

// Attach starts tracking pid: it injects userfaultfd() into it (the target keeps no uffd), then
// registers and write-protects every writable private anonymous VMA.
func Attach(pid int, opts Options) (*Tracker, error) {
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		return nil, fmt.Errorf("memtrack: no process %d: %w", pid, err)
	}
	fd, err := InjectUffd(pid)
	if err != nil {
		if os.Geteuid() != 0 && (errors.Is(err, os.ErrPermission) || strings.Contains(err.Error(), "permission denied") || strings.Contains(err.Error(), "not permitted")) {
			err = fmt.Errorf("%w (memtrack needs root: ptrace, pidfd_getfd and userfaultfd on another process)", err)
		}
		return nil, err
	}
	if err := uffdAPIHandshake(fd, opts.NoUnpopulated); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("memtrack: pid %d: %w: %w", pid, ErrNotSupported, err)
	}
	t := &Tracker{pid: pid, opts: opts, uffd: fd, vec: make([]pageRegion, 4096)}
	t.auxv, _ = os.ReadFile(fmt.Sprintf("/proc/%d/auxv", pid))
	vmas, err := ReadMaps(pid)
	if err != nil {
		t.Close()
		return nil, err
	}
	if _, err := t.arm(vmas, true); err != nil {
		t.Close()
		return nil, err
	}
	if len(t.regions) == 0 {
		t.Close()
		return nil, fmt.Errorf("memtrack: pid %d has no writable private anonymous memory to track", pid)
	}
	t.last = time.Now()
	return t, nil
}

// arm registers and write-protects the trackable VMAs that are not armed yet. At Attach that is all
// of them; later (FollowNew) it finds VMAs that are new, grew, or replaced an armed range in place
// (munmap + mmap at the same address), using a PAGEMAP_SCAN probe for VMAs without the uffd-wp flag.
// Must be called with t.mu held (or before t is shared).
func (t *Tracker) arm(vmas []VMA, initial bool) (int, error) {
	added := 0
	pm := -1
	if !initial {
		f, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", t.pid))
		if err != nil {
			return 0, fmt.Errorf("memtrack: open pagemap of pid %d: %w", t.pid, err)
		}
		defer f.Close()
		pm = int(f.Fd())
	}
	for _, v := range vmas {
		if why := Trackable(v); why != "" {
			if initial {
				t.skipped = append(t.skipped, Skipped{VMA: v, Reason: why})
			}
			continue
		}
		gaps := t.uncovered(v.Start, v.End)
		if !initial {
			armed, err := probeArmed(pm, v)
			if err != nil {
				continue // the VMA changed under us; the next Scan looks again
			}
			if armed {
				// Registered but partly outside our regions: the VMA grew (e.g. brk). Protect and
				// track the new part.
				for _, g := range gaps {
					if t.protect(g.Start, g.End) == nil {
						t.add(g.Start, g.End, v)
						added++
					}
				}
				continue
			}
			t.carve(v.Start, v.End) // whatever we had there is gone
		}
		if err := uffdRegisterWP(t.uffd, v.Start, v.End); err != nil {
			why := ""
			switch err {
			case unix.EBUSY:
				why = SkipOtherUffd
			case unix.EINVAL, unix.ENOMEM:
				why = SkipChanged
			}
			if initial && why != "" {
				t.skipped = append(t.skipped, Skipped{VMA: v, Reason: why})
			}
			if !initial || why != "" {
				continue
			}
			return added, fmt.Errorf("memtrack: pid %d: UFFDIO_REGISTER %#x-%#x (%s): %w", t.pid, v.Start, v.End, v.Label(), err)
		}
		if err := t.protect(v.Start, v.End); err != nil {
			_ = uffdUnregister(t.uffd, v.Start, v.End)
			if !initial {
				continue
			}
			return added, fmt.Errorf("memtrack: pid %d: UFFDIO_WRITEPROTECT %#x-%#x (%s): %w", t.pid, v.Start, v.End, v.Label(), err)
		}
		t.add(v.Start, v.End, v)
		added++
	}
	sort.Slice(t.regions, func(i, j int) bool { return t.regions[i].Start < t.regions[j].Start })
	return added, nil
}

// protect write-protects [start,end). With NoUnpopulated only its populated (present or swapped)
// runs: UFFDIO_WRITEPROTECT installs a pte marker on every empty pte of the range, and the kernel
// reports markers as swapped pages (pagemap PM_SWAP, PAGEMAP_SCAN PAGE_IS_SWAPPED), so `criu dump`
// would store each of them as a page of zeros and the restore would allocate it. An unprotected
// empty pte needs no marker: the page a later write allocates has no uffd-wp bit, so Scan reports
// it as written. Pages populated while this runs are reported as written too (a superset).
func (t *Tracker) protect(start, end uint64) error {
	if !t.opts.NoUnpopulated {
		return uffdWriteProtect(t.uffd, start, end)
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", t.pid))
	if err != nil {
		return err
	}
	defer f.Close()
	vec := make([]pageRegion, 512)
	for cur := start; cur < end; {
		arg := pmScanArg{
			Size:              uint64(unsafe.Sizeof(pmScanArg{})),
			Start:             cur,
			End:               end,
			Vec:               uint64(uintptr(unsafe.Pointer(&vec[0]))),
			VecLen:            uint64(len(vec)),
			CategoryAnyofMask: pageIsPresent | pageIsSwapped,
			Return:            pageIsPresent | pageIsSwapped,
		}
		n, err := ioctl(int(f.Fd()), pagemapScan, unsafe.Pointer(&arg))
		runtime.KeepAlive(vec)
		if err != nil {
			return err
		}
		for _, r := range vec[:n] {
			if err := uffdWriteProtect(t.uffd, r.Start, r.End); err != nil {
				return err
			}
		}
		if arg.WalkEnd <= cur {
			break
		}
		cur = arg.WalkEnd
	}
	return nil
}

func (t *Tracker) add(start, end uint64, v VMA) {
	t.regions = append(t.regions, &Region{ID: t.nextID, Start: start, End: end, Perms: v.Perms, Label: v.Label(), Armed: t.index})
	t.nextID++
}

// carve removes [lo,hi) from the regions: regions inside it retire, regions overlapping its edges
// retire and leave their outside parts as new regions.
func (t *Tracker) carve(lo, hi uint64) {
	var keep []*Region
	for _, r := range t.regions {
		if r.End <= lo || r.Start >= hi {
			keep = append(keep, r)
			continue
		}
		r.Retired = true
		t.retired = append(t.retired, r)
		for _, part := range []Range{{r.Start, min(r.End, lo)}, {max(r.Start, hi), r.End}} {
			if part.Start < part.End {
				n := *r
				n.ID, n.Start, n.End, n.Retired = t.nextID, part.Start, part.End, false
				t.nextID++
				keep = append(keep, &n)
			}
		}
	}
	t.regions = keep
}

// probeArmed reports whether VMA v is registered for async write-protect: PAGEMAP_SCAN for any page
// lacking PAGE_IS_WPALLOWED finds none in a registered VMA.
func probeArmed(pagemap int, v VMA) (bool, error) {
	var vec [1]pageRegion
	arg := pmScanArg{
		Size:             uint64(unsafe.Sizeof(pmScanArg{})),
		Start:            v.Start,
		End:              v.End,
		Vec:              uint64(uintptr(unsafe.Pointer(&vec[0]))),
		VecLen:           1,
		MaxPages:         1,
		CategoryInverted: pageIsWPAllowed,
		CategoryMask:     pageIsWPAllowed,
		Return:           pageIsWPAllowed,
	}
	n, err := ioctl(pagemap, pagemapScan, unsafe.Pointer(&arg))
	runtime.KeepAlive(&vec)
	if err != nil {
		return false, err
	}
	return n == 0, nil
}

// uncovered returns the parts of [start,end) not covered by registered regions.
func (t *Tracker) uncovered(start, end uint64) []Range {
	var out []Range
	cur := start
	for _, r := range t.regions {
		if r.End <= cur || r.Start >= end {
			continue
		}
		if r.Start > cur {
			out = append(out, Range{cur, r.Start})
		}
		cur = max(cur, r.End)
	}
	if cur < end {
		out = append(out, Range{cur, end})
	}
	return out
}

// Pid is the tracked process.
func (t *Tracker) Pid() int { return t.pid }

// Regions returns a copy of the registered regions, sorted by address.
func (t *Tracker) Regions() []Region {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Region, len(t.regions))
	for i, r := range t.regions {
		out[i] = *r
	}
	return out
}

// AllRegions returns the registered and the retired regions, sorted by ID.
func (t *Tracker) AllRegions() []Region {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Region, 0, len(t.regions)+len(t.retired))
	for _, r := range append(append([]*Region(nil), t.regions...), t.retired...) {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Skipped returns the VMAs not tracked at Attach, with the reason.
func (t *Tracker) Skipped() []Skipped {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Skipped(nil), t.skipped...)
}

// Scan returns the pages written since the previous Scan (or Attach) and write-protects them
// again, atomically per page (PAGEMAP_SCAN with PM_SCAN_WP_MATCHING). With ranges, the written
// page ranges are included.
func (t *Tracker) Scan(ranges bool) (*Interval, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.uffd < 0 {
		return nil, ErrClosed
	}
	if auxv, err := os.ReadFile(fmt.Sprintf("/proc/%d/auxv", t.pid)); err == nil && !bytes.Equal(auxv, t.auxv) {
		return nil, fmt.Errorf("pid %d: %w", t.pid, ErrExec)
	}
	t.index++
	iv := &Interval{Index: t.index, Start: t.last}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", t.pid))
	if err != nil {
		return nil, fmt.Errorf("memtrack: open pagemap of pid %d: %w", t.pid, err)
	}
	defer mem.Close()
	began := time.Now()
	byRegion := map[int]*RegionWrites{}
	for _, r := range t.regions {
		if err := t.scanRange(int(mem.Fd()), r, byRegion, ranges); err != nil {
			return nil, err
		}
	}
	iv.End = time.Now()
	iv.ScanTime = iv.End.Sub(began)
	t.last = iv.End
	for _, r := range t.regions {
		if w := byRegion[r.ID]; w != nil {
			iv.Regions = append(iv.Regions, *w)
			iv.Pages += w.Pages
		}
	}
	iv.Bytes = uint64(iv.Pages) * pageSize
	if d := iv.End.Sub(iv.Start).Seconds(); d > 0 {
		iv.Rate = float64(iv.Bytes) / d
	}
	if t.opts.FollowNew {
		vmas, err := ReadMaps(t.pid)
		if err != nil {
			return nil, err
		}
		n, err := t.arm(vmas, false)
		if err != nil {
			return nil, err
		}
		iv.NewRegions = n
	}
	return iv, nil
}

func (t *Tracker) scanRange(fd int, r *Region, byRegion map[int]*RegionWrites, ranges bool) error {
	start := r.Start
	for start < r.End {
		arg := pmScanArg{
			Size:         uint64(unsafe.Sizeof(pmScanArg{})),
			Flags:        pmScanWPMatching,
			Start:        start,
			End:          r.End,
			Vec:          uint64(uintptr(unsafe.Pointer(&t.vec[0]))),
			VecLen:       uint64(len(t.vec)),
			CategoryMask: pageIsWritten | pageIsWPAllowed,
			Return:       pageIsWritten,
		}
		if t.opts.NoUnpopulated {
			// Empty ptes of a VMA without WP_UNPOPULATED count as written, and WP_MATCHING
			// would put a marker on each: only populated pages are reported and re-protected.
			arg.CategoryAnyofMask = pageIsPresent | pageIsSwapped
		}
		n, err := ioctl(fd, pagemapScan, unsafe.Pointer(&arg))
		if err != nil {
			if err == unix.ENOTTY || err == unix.EINVAL {
				return fmt.Errorf("memtrack: pid %d: PAGEMAP_SCAN %#x-%#x: %w: %w", t.pid, start, r.End, ErrNotSupported, err)
			}
			return fmt.Errorf("memtrack: pid %d: PAGEMAP_SCAN %#x-%#x (%s): %w", t.pid, start, r.End, r.Label, err)
		}
		for _, pr := range t.vec[:n] {
			w := byRegion[r.ID]
			if w == nil {
				w = &RegionWrites{Region: r.ID}
				byRegion[r.ID] = w
			}
			w.Pages += int((pr.End - pr.Start) / pageSize)
			if ranges {
				if k := len(w.Ranges); k > 0 && w.Ranges[k-1].End == pr.Start {
					w.Ranges[k-1].End = pr.End
				} else {
					w.Ranges = append(w.Ranges, Range{pr.Start, pr.End})
				}
			}
		}
		if arg.WalkEnd <= start {
			break
		}
		start = arg.WalkEnd
	}
	runtime.KeepAlive(t.vec)
	return nil
}

// Close stops tracking: it unregisters every region still mapped and closes the uffd. The target
// holds no uffd at any time after Attach returned, so it can be dumped by CRIU right away.
func (t *Tracker) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.uffd < 0 {
		return nil
	}
	var errs []error
	if vmas, err := ReadMaps(t.pid); err == nil {
		for _, v := range vmas {
			for _, r := range t.regions {
				lo, hi := max(v.Start, r.Start), min(v.End, r.End)
				if lo >= hi {
					continue
				}
				if err := uffdUnregister(t.uffd, lo, hi); err != nil && err != unix.EINVAL && err != unix.ENOMEM && err != unix.ESRCH {
					errs = append(errs, fmt.Errorf("memtrack: pid %d: UFFDIO_UNREGISTER %#x-%#x: %w", t.pid, lo, hi, err))
				}
			}
		}
	}
	// Closing the last reference also unregisters whatever is left (kernel userfaultfd_release).
	if err := unix.Close(t.uffd); err != nil {
		errs = append(errs, fmt.Errorf("memtrack: close uffd: %w", err))
	}
	t.uffd = -1
	return errors.Join(errs...)
}

func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}
