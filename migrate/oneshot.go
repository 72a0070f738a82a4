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
	work, cleanup, err := o.setup("criukit-oneshot-")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	dir := filepath.Join(work, "round-0")
	res := &Result{}
	t0 := time.Now()
	if err := criurun.Dump(ctx, o.Pid, criurun.Opts{Criu: o.Criu, ImagesDir: dir, Netns: o.Netns, Args: o.DumpArgs}); err != nil {
		return nil, err
	}
	st := RoundStats{Round: 0, Final: true, DumpSeconds: time.Since(t0).Seconds()}
	res.FrozenDump = st.DumpSeconds
	if err := o.afterDump(res); err != nil {
		return res, err
	}
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
		if _, err := restoreOn(ctx, o, 0, res); err != nil {
			return res, fmt.Errorf("oneshot: restore on the receiver: %w", err)
		}
	}
	res.FrozenSeconds = time.Since(t0).Seconds()
	res.TotalSeconds = res.FrozenSeconds
	return res, nil
}
