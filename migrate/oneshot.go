package migrate

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/criukit/criukit/internal/criurun"
)

// OneShot is the stock baseline Migrate is measured against: one `criu dump` (the tree frozen and
// then killed) into WorkDir, every image file (pages included) sent to the receiver, `criu
// restore` there. Options.Rounds, Converge and Pause are ignored. The result has one round.
func OneShot(ctx context.Context, o Options) (*Result, error) {
	if o.Criu == "" {
		p, _, err := criurun.Find()
		if err != nil {
			return nil, err
		}
		o.Criu = p
	}
	work := o.WorkDir
	if work == "" {
		d, err := os.MkdirTemp("", "criukit-oneshot-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		work = d
	}
	dir := filepath.Join(work, "round-0")
	res := &Result{}
	t0 := time.Now()
	if err := criurun.Dump(ctx, o.Pid, criurun.Opts{Criu: o.Criu, ImagesDir: dir, Netns: o.Netns, Args: o.DumpArgs}); err != nil {
		return nil, err
	}
	st := RoundStats{Round: 0, Final: true, DumpSeconds: time.Since(t0).Seconds()}
	res.FrozenDump = st.DumpSeconds
	tw := time.Now()
	if o.AfterDump != nil {
		if err := o.AfterDump(); err != nil {
			return res, err
		}
	}
	res.FrozenWait = time.Since(tw).Seconds()
	ti := time.Now()
	n, rep, err := call(ctx, o, request{Op: "files", Round: 0}, func(c net.Conn) (int64, error) { return sendTar(c, dir) })
	if err != nil {
		return res, fmt.Errorf("oneshot: send the images: %w", err)
	}
	res.FrozenImages = time.Since(ti).Seconds()
	st.WireBytes, st.FilesBytes = n, n
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && len(e.Name()) > 6 && e.Name()[:6] == "pages-" {
				st.Pages += fi.Size() / int64(os.Getpagesize())
			}
		}
	}
	st.Sent, st.Stored = st.Pages, st.Pages
	res.Dir = rep.Dir
	res.Rounds = []RoundStats{st}
	res.WireBytes = n
	if !o.NoRestore {
		tr := time.Now()
		_, rep, err := call(ctx, o, request{Op: "restore", Round: 0, Map: o.Map, Args: o.RestoreArgs, Lazy: o.Lazy}, nil)
		if err != nil {
			return res, fmt.Errorf("oneshot: restore on the receiver: %w", err)
		}
		res.FrozenRestore = time.Since(tr).Seconds()
		res.Pid, res.RestoreSeconds = rep.Pid, rep.Seconds
	}
	res.FrozenSeconds = time.Since(t0).Seconds()
	res.TotalSeconds = res.FrozenSeconds
	return res, nil
}
