package cow

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/procfs"
	"golang.org/x/sys/unix"
)

// ErrLeftStock means the dump succeeded but the images were left in the stock layout (always
// valid) because the dedup failed.
var ErrLeftStock = errors.New("dump succeeded but the images were left in the stock layout")

// DumpResult is what DumpDedup did.
type DumpResult struct {
	*Result
	DumpSeconds     float64 `json:"dump_seconds"`     // criu dump wall time (includes the snapshot)
	SnapshotSeconds float64 `json:"snapshot_seconds"` // frame snapshot while the tree was frozen
	DedupSeconds    float64 `json:"dedup_seconds"`    // image rewrite after criu returned
	SnapshotPages   int     `json:"snapshot_pages"`   // anonymous pages seen in the snapshot
	SnapshotError   string  `json:"snapshot_error,omitempty"`
	// SkippedPages (page server) were spliced away, not copied: their frame had been received.
	SkippedPages int64 `json:"skipped_pages,omitempty"`
}

const hookScript = `#!/bin/sh
# criukit cow: snapshot the frozen tree's page frames at post-dump (the tree is still frozen).
[ "$CRTOOLS_SCRIPT_ACTION" = post-dump ] || exit 0
timeout 300 sh -c 'echo "$CRTOOLS_INIT_PID" > "$0/req" && read r < "$0/done"' %q
exit 0
`

// DumpDedup is `criukit dump --cow`: it runs criu dump of the tree rooted at pid (criurun.Dump
// with o; o.ImagesDir is required), snapshots the tree's page frames from /proc/PID/pagemap at
// CRIU's post-dump action-script point while the tree is still frozen, then rewrites the images in
// place into the deduped layout (frame matches first, content matches too, all byte-verified).
// A dump error is returned as is. If the rewrite fails the stock images stay and the error wraps
// ErrLeftStock (the dump itself succeeded).
func DumpDedup(ctx context.Context, pid int, o criurun.Opts, opt Options) (*DumpResult, error) {
	if o.ImagesDir == "" {
		return nil, errors.New("cow dump: no images directory")
	}
	hook, err := os.MkdirTemp("", "criukit-cow-hook-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(hook)
	req, done := filepath.Join(hook, "req"), filepath.Join(hook, "done")
	for _, f := range []string{req, done} {
		if err := unix.Mkfifo(f, 0o600); err != nil {
			return nil, fmt.Errorf("cow dump: mkfifo %s: %w", f, err)
		}
	}
	script := filepath.Join(hook, "post-dump.sh")
	if err := os.WriteFile(script, fmt.Appendf(nil, hookScript, hook), 0o700); err != nil {
		return nil, err
	}
	o.Args = append(append([]string{}, o.Args...), "--action-script", script)

	type snap struct {
		frames map[int][]FramePage
		pages  int
		dur    time.Duration
		err    error
	}
	got := make(chan snap, 1)
	go func() {
		f, err := os.OpenFile(req, os.O_RDONLY, 0)
		if err != nil {
			got <- snap{err: err}
			return
		}
		line, _ := bufio.NewReader(f).ReadString('\n')
		f.Close()
		line = strings.TrimSpace(line)
		if line == "cancel" {
			got <- snap{err: errors.New("post-dump hook did not run")}
			return
		}
		t0 := time.Now()
		s := snap{frames: map[int][]FramePage{}}
		root, err := strconv.Atoi(line)
		if err != nil {
			s.err = fmt.Errorf("post-dump hook: bad CRTOOLS_INIT_PID %q", line)
		} else {
			for _, p := range TreePids(root) {
				fr, err := ScanFrames(p)
				if err != nil {
					s.err = fmt.Errorf("pid %d: %w", p, err)
					break
				}
				s.frames[vpid(p)] = fr
				s.pages += len(fr)
			}
		}
		s.dur = time.Since(t0)
		if w, err := os.OpenFile(done, os.O_WRONLY, 0); err == nil {
			w.WriteString("ok\n")
			w.Close()
		}
		got <- s
	}()
	t0 := time.Now()
	derr := criurun.Dump(ctx, pid, o)
	dumpDur := time.Since(t0)
	var s snap
	select {
	case s = <-got:
	default:
		// The hook never ran (criu failed early): unblock the reader.
		if w, err := os.OpenFile(req, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
			w.WriteString("cancel\n")
			w.Close()
		}
		s = <-got
	}
	if derr != nil {
		return nil, derr
	}
	res := &DumpResult{DumpSeconds: dumpDur.Seconds(), SnapshotSeconds: s.dur.Seconds(), SnapshotPages: s.pages}
	if s.err != nil {
		res.SnapshotError = s.err.Error()
		s.frames = nil // content matching only
	}
	opt.Frames = s.frames
	t1 := time.Now()
	r, err := DedupInPlace(o.ImagesDir, opt)
	res.DedupSeconds = time.Since(t1).Seconds()
	if err != nil {
		return res, fmt.Errorf("%w: %v", ErrLeftStock, err)
	}
	res.Result = r
	return res, nil
}

// vpid returns the pid of a process in its own (innermost) pid namespace: the pid in the images.
func vpid(pid int) int {
	if st, err := procfs.ReadStatus(pid); err == nil {
		if v, ok := st.LastInt("NSpid"); ok {
			return v
		}
	}
	return pid
}
