package migrate

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/criukit/criukit/cow"
	"github.com/criukit/criukit/internal/pageproto"
	"github.com/criukit/criukit/internal/procfs"
	"github.com/criukit/criukit/memtrack"
)

// TreeTracker tracks the writes of every process of a tree between dump rounds. A page may be sent
// as PE_PARENT in round r only when its process has been tracked without a break since before the
// dump of round r-1 (same process: pid and start time), the page lies in a region that was armed
// before round r-1's snapshot, and the scan at round r's freeze did not report it written.
// Everything else (new processes, new or replaced mappings, untracked VMAs, shared memory) is sent.
type TreeTracker struct {
	root int

	mu    sync.Mutex
	procs map[int]*procTrack // by pid in the images (vpid)
	round int                // round whose dump comes next
	// AttachErrors are processes that could not be tracked (their pages are always sent).
	AttachErrors []string
}

type procTrack struct {
	pid, vpid int
	start     uint64 // /proc/PID/stat starttime: the same process across rounds
	t         *memtrack.Tracker
	validFrom int         // first round whose keep-set may use this tracker
	scanIdx   map[int]int // round -> interval index of the scan at that round's freeze
	regions   []memtrack.Region
	written   []memtrack.Range // sorted, from the scan at the current round's freeze
	broken    bool
}

// NewTreeTracker attaches a write tracker to every process of the tree rooted at pid. Call it
// before round 0's dump.
func NewTreeTracker(pid int) (*TreeTracker, error) {
	tt := &TreeTracker{root: pid, procs: map[int]*procTrack{}}
	if err := tt.attachNew(); err != nil {
		tt.Close()
		return nil, err
	}
	if len(tt.procs) == 0 {
		return nil, fmt.Errorf("migrate: could not track any process of tree %d: %s", pid, strings.Join(tt.AttachErrors, "; "))
	}
	return tt, nil
}

// vpidOf is the pid in the innermost pid namespace (the pid CRIU writes into the images).
func vpidOf(pid int) int {
	if st, err := procfs.ReadStatus(pid); err == nil {
		if v, ok := st.LastInt("NSpid"); ok {
			return v
		}
	}
	return pid
}

// attachNew attaches trackers to processes of the tree that have none. Must run while the tree
// runs (ptrace injection), i.e. between rounds.
func (tt *TreeTracker) attachNew() error {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	for _, pid := range cow.TreePids(tt.root) {
		v := vpidOf(pid)
		st := procfs.StartTime(pid)
		if p := tt.procs[v]; p != nil && p.pid == pid && p.start == st && !p.broken {
			continue
		}
		if p := tt.procs[v]; p != nil {
			p.close()
			delete(tt.procs, v)
		}
		t, err := memtrack.Attach(pid, memtrack.Options{FollowNew: true, NoUnpopulated: true})
		if err != nil {
			tt.AttachErrors = append(tt.AttachErrors, fmt.Sprintf("pid %d: %v", pid, err))
			continue
		}
		if procfs.StartTime(pid) != st { // exited and reused while we attached
			t.Close()
			continue
		}
		tt.procs[v] = &procTrack{pid: pid, vpid: v, start: st, t: t, validFrom: tt.round + 1, scanIdx: map[int]int{}}
	}
	return nil
}

// Frozen is called at round r's freeze (criu has seized the whole tree and opens the first
// process' pages): every tracker reads and re-protects its written pages.
func (tt *TreeTracker) Frozen(round int) (written int, err error) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	for _, p := range tt.procs {
		p.written, p.regions = nil, nil
		if p.broken {
			continue
		}
		if procfs.StartTime(p.pid) != p.start {
			p.broken = true
			continue
		}
		iv, err := p.t.Scan(true)
		if err != nil {
			p.broken = true // its pages are sent in full from now on
			continue
		}
		p.scanIdx[round] = iv.Index
		for _, rw := range iv.Regions {
			p.written = append(p.written, rw.Ranges...)
		}
		sort.Slice(p.written, func(i, j int) bool { return p.written[i].Start < p.written[j].Start })
		p.regions = p.t.Regions()
		written += iv.Pages
	}
	return written, nil
}

// Dumped is called after round r's dump when the tree keeps running: processes that appeared are
// attached (their pages are sent in full until they were tracked across a whole round).
func (tt *TreeTracker) Dumped(round int) error {
	tt.mu.Lock()
	tt.round = round + 1
	tt.mu.Unlock()
	return tt.attachNew()
}

// keeper returns, for round r, a function telling whether the page at va of image pid vpid must be
// sent (true) or may come from the parent round (false). The caller also checks that the parent
// round has the page.
func (tt *TreeTracker) keeper(round int) func(vpid int, va uint64) bool {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	type view struct {
		regions []memtrack.Region
		written []memtrack.Range
	}
	views := map[int]*view{}
	for v, p := range tt.procs {
		if p.broken || round < p.validFrom {
			continue
		}
		prev, ok := p.scanIdx[round-1]
		if !ok {
			continue
		}
		if _, ok := p.scanIdx[round]; !ok {
			continue
		}
		var regs []memtrack.Region
		for _, r := range p.regions {
			if r.Armed <= prev && !r.Retired {
				regs = append(regs, r)
			}
		}
		views[v] = &view{regions: regs, written: p.written}
	}
	return func(vpid int, va uint64) bool {
		w := views[vpid]
		if w == nil {
			return true
		}
		i := sort.Search(len(w.regions), func(i int) bool { return w.regions[i].End > va })
		if i == len(w.regions) || w.regions[i].Start > va {
			return true // not tracked across the round
		}
		j := sort.Search(len(w.written), func(i int) bool { return w.written[i].End > va })
		return j < len(w.written) && w.written[j].Start <= va
	}
}

// Continuous reports whether process vpid was tracked without a break since before round r-1's
// dump (same process, tracker attached before it, scanned at round r-1's freeze): criu may then
// take its unwritten pages from round r-1 (criu tracking mode).
func (tt *TreeTracker) Continuous(round, vpid int) bool {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	p := tt.procs[vpid]
	if p == nil || p.broken || round < p.validFrom || procfs.StartTime(p.pid) != p.start {
		return false
	}
	_, ok := p.scanIdx[round-1]
	return ok
}

// CheckParents verifies, after Frozen(round), that every page criu sent as PE_PARENT (parents,
// by page-server dst) is one the trackers allow to come from the parent round.
func (tt *TreeTracker) CheckParents(round int, parents coverage) error {
	keep := tt.keeper(round)
	ps := uint64(os.Getpagesize())
	for dst, spans := range parents {
		pid, ok := pageproto.PidOf(dst)
		if !ok {
			return fmt.Errorf("%w: criu sent %s pages as PE_PARENT", ErrCriuTrack, dstName(dst))
		}
		for _, s := range spans {
			for va := s.start; va < s.end; va += ps {
				if keep(pid, va) {
					return fmt.Errorf("%w: criu sent page %#x of pid %d as unchanged (PE_PARENT), but the trackers saw it written or did not track it across round %d",
						ErrCriuTrack, va, pid, round)
				}
			}
		}
	}
	return nil
}

// Tracked returns the number of processes with a tracker.
func (tt *TreeTracker) Tracked() int {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return len(tt.procs)
}

// Close removes every tracker (unregisters the write-protected ranges). Safe while the tree is
// frozen by criu.
func (tt *TreeTracker) Close() error {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	var errs []string
	for v, p := range tt.procs {
		if err := p.close(); err != nil {
			errs = append(errs, err.Error())
		}
		delete(tt.procs, v)
	}
	if len(errs) > 0 {
		return fmt.Errorf("migrate: remove trackers: %s", strings.Join(errs, "; "))
	}
	return nil
}

func (p *procTrack) close() error {
	if p.t == nil {
		return nil
	}
	err := p.t.Close()
	p.t = nil
	return err
}

var _ = strconv.Itoa
