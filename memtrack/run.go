package memtrack

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"sort"
	"time"
)

// RunOptions configure Run.
type RunOptions struct {
	Interval  time.Duration   // time between scans; 0 means 1s
	Duration  time.Duration   // total tracking time; 0 means until ctx is done
	Ranges    bool            // keep the written page ranges of every interval in the report
	FollowNew bool            // arm VMAs that appear while tracking (Options.FollowNew)
	Progress  func(*Interval) // called after every scan (optional)
	OnAttach  func(*Tracker)  // called once tracking has started (optional)
}

// RegionSummary is what one region saw over the whole run.
type RegionSummary struct {
	Region
	Written int `json:"written_pages"` // sum over intervals
	Unique  int `json:"unique_pages"`  // pages written at least once
	Peak    int `json:"peak_pages"`    // most pages written in one interval
}

// SkipSummary counts skipped VMAs by reason.
type SkipSummary struct {
	Reason string `json:"reason"`
	VMAs   int    `json:"vmas"`
	Bytes  uint64 `json:"bytes"`
}

// Report is the result of Run.
type Report struct {
	Pid        int             `json:"pid"`
	PageSize   int             `json:"page_size"`
	IntervalNs time.Duration   `json:"interval_ns"`
	Start      time.Time       `json:"start"`
	End        time.Time       `json:"end"`
	Regions    []RegionSummary `json:"regions"`
	Skipped    []SkipSummary   `json:"skipped"`
	Intervals  []*Interval     `json:"intervals"`
	Written    int             `json:"written_pages"` // sum over intervals and regions
	Unique     int             `json:"unique_pages"`  // pages written at least once (working set)
	MeanRate   float64         `json:"mean_rate_bps"`
	PeakRate   float64         `json:"peak_rate_bps"`
	MeanScan   time.Duration   `json:"mean_scan_ns"`
	Released   bool            `json:"released"`        // tracker closed and no uffd left in the target
	Exited     bool            `json:"target_exited"`   // the target ended while tracked
	UffdLeft   []int           `json:"uffd_fds_left"`   // uffd fds found in the target after release
	Err        string          `json:"error,omitempty"` // why tracking stopped early
}

// Run tracks pid for opts.Duration (or until ctx is done), scanning every opts.Interval, then
// releases the target and checks that it holds no uffd. A target that exits ends the run early
// without an error (Report.Exited).
func Run(ctx context.Context, pid int, opts RunOptions) (*Report, error) {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	tr, err := Attach(pid, Options{FollowNew: opts.FollowNew})
	if err != nil {
		return nil, err
	}
	if opts.OnAttach != nil {
		opts.OnAttach(tr)
	}
	rep := &Report{Pid: pid, PageSize: int(pageSize), IntervalNs: opts.Interval, Start: time.Now(), UffdLeft: []int{}}
	seen := map[int][]uint64{} // region ID -> bitmap of written pages
	sums := map[int]*RegionSummary{}
	var deadline time.Time
	if opts.Duration > 0 {
		deadline = rep.Start.Add(opts.Duration)
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(opts.Interval/2))
		defer cancel()
	}
	tick := time.NewTicker(opts.Interval)
	defer tick.Stop()
	var runErr error
loop:
	for {
		last := false
		select {
		case <-ctx.Done():
			last = true // one final scan covers the partial interval
		case now := <-tick.C:
			// The tick that reaches the duration (give or take a quarter interval) is the last.
			last = !deadline.IsZero() && !now.Before(deadline.Add(-opts.Interval/4))
		}
		iv, err := tr.Scan(true)
		if err != nil {
			if !processAlive(pid) {
				rep.Exited = true
			} else {
				runErr = err
				rep.Err = err.Error()
			}
			break loop
		}
		account(tr, iv, seen, sums)
		if !opts.Ranges {
			for i := range iv.Regions {
				iv.Regions[i].Ranges = nil
			}
		}
		rep.Intervals = append(rep.Intervals, iv)
		if opts.Progress != nil {
			opts.Progress(iv)
		}
		if last {
			break
		}
	}
	rep.End = time.Now()
	cerr := tr.Close()
	if !rep.Exited && processAlive(pid) {
		left, err := UffdFDs(pid)
		if left != nil {
			rep.UffdLeft = left
		}
		rep.Released = cerr == nil && err == nil && len(left) == 0
		if len(left) > 0 {
			cerr = errors.Join(cerr, fmt.Errorf("memtrack: pid %d still holds uffd fds %v after release", pid, left))
		}
	} else {
		rep.Released = true
	}
	summarize(rep, tr, sums)
	return rep, errors.Join(runErr, cerr)
}

func account(tr *Tracker, iv *Interval, seen map[int][]uint64, sums map[int]*RegionSummary) {
	regions := map[int]Region{}
	for _, r := range tr.AllRegions() {
		regions[r.ID] = r
	}
	for _, rw := range iv.Regions {
		r := regions[rw.Region]
		s := sums[r.ID]
		if s == nil {
			s = &RegionSummary{Region: r}
			sums[r.ID] = s
		}
		s.Written += rw.Pages
		s.Peak = max(s.Peak, rw.Pages)
		bm := seen[r.ID]
		if bm == nil {
			bm = make([]uint64, (r.Pages()+63)/64)
			seen[r.ID] = bm
		}
		for _, rg := range rw.Ranges {
			for a := max(rg.Start, r.Start); a < min(rg.End, r.End); a += pageSize {
				i := (a - r.Start) / pageSize
				bm[i/64] |= 1 << (i % 64)
			}
		}
	}
	for id, bm := range seen {
		n := 0
		for _, w := range bm {
			n += bits.OnesCount64(w)
		}
		if s := sums[id]; s != nil {
			s.Unique = n
		}
	}
}

func summarize(rep *Report, tr *Tracker, sums map[int]*RegionSummary) {
	for _, r := range tr.AllRegions() {
		s := sums[r.ID]
		if s == nil {
			s = &RegionSummary{}
		}
		s.Region = r // the latest view (retired or not)
		rep.Regions = append(rep.Regions, *s)
		rep.Written += s.Written
		rep.Unique += s.Unique
	}
	by := map[string]*SkipSummary{}
	for _, s := range tr.Skipped() {
		x := by[s.Reason]
		if x == nil {
			x = &SkipSummary{Reason: s.Reason}
			by[s.Reason] = x
		}
		x.VMAs++
		x.Bytes += s.Len()
	}
	for _, x := range by {
		rep.Skipped = append(rep.Skipped, *x)
	}
	sort.Slice(rep.Skipped, func(i, j int) bool { return rep.Skipped[i].Reason < rep.Skipped[j].Reason })
	var scan time.Duration
	for _, iv := range rep.Intervals {
		rep.PeakRate = max(rep.PeakRate, iv.Rate)
		scan += iv.ScanTime
	}
	if n := len(rep.Intervals); n > 0 {
		rep.MeanScan = scan / time.Duration(n)
		if d := rep.Intervals[n-1].End.Sub(rep.Intervals[0].Start).Seconds(); d > 0 {
			rep.MeanRate = float64(uint64(rep.Written)*pageSize) / d
		}
	}
}
