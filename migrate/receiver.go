package migrate

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/criukit/criukit/cow"
	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/outfile"
	"github.com/criukit/criukit/netrw"
	"github.com/criukit/criukit/netrw/addrmap"
)

// Wire protocol between `criukit migrate` and the receiver: every connection starts with one JSON
// line (a request) and ends with one JSON line from the receiver (a reply). Between them:
//   - "pages": one criu page-server session (criu/page-xfer.c protocol) for round R, written to
//     DIR/round-R as a parent chain onto round-(R-1); round 0 goes through cow's deduplicating
//     page server unless the receiver runs with NoDedup;
//   - "files": a tar stream of the round's other images (core, mm, files, ...);
//   - "restore": nothing; the receiver rewrites addresses (Map) and runs criu restore.
const wireMagic = "criukit-migrate/1"

type request struct {
	Magic string   `json:"magic"`
	Op    string   `json:"op"` // pages, files, restore
	Round int      `json:"round"`
	Map   []string `json:"map,omitempty"`
	Args  []string `json:"args,omitempty"` // extra criu restore arguments
	Lazy  bool     `json:"lazy,omitempty"` // restore with criu lazy-pages (pages fault in from the local images)
	// Flat (round 0's pages): store round 0 without dedup and keep a rolled-forward flat copy
	// for a lazy restore (see flatImage).
	Flat bool `json:"flat,omitempty"`
	// Container (restore): import the container archive received with op "container" into
	// podman (named Name, "" = the source's name).
	Container bool   `json:"container,omitempty"`
	Name      string `json:"name,omitempty"`
}

type reply struct {
	Error   string  `json:"error,omitempty"`
	Stored  int64   `json:"stored,omitempty"`  // pages written to the round's pages files
	Parent  int64   `json:"parent,omitempty"`  // pages left to the parent round
	Deduped int64   `json:"deduped,omitempty"` // pages deduplicated (round 0)
	Files   int     `json:"files,omitempty"`
	Pid     int     `json:"pid,omitempty"`
	Seconds float64 `json:"seconds,omitempty"` // restore time
	Dir     string  `json:"dir,omitempty"`
	Flat    string  `json:"flat,omitempty"` // restore: "used", or why the flat copy was not used
	Name    string  `json:"name,omitempty"` // restore of a container: its name
}

// Receiver is the receiving side of a migration: it stores each round in Dir/round-N and restores
// the last one with stock criu in its network namespace.
type Receiver struct {
	Dir     string
	Netns   string   // run criu restore through nsenter --net=Netns ("" = here)
	Criu    string   // criu binary ("" = criurun.Find)
	NoDedup bool     // round 0 without cow's dedup
	Restore []string // extra criu restore arguments always used (podman container restore arguments for a container)
	Podman  []string // podman's global flags (container migrations)
	Log     io.Writer
	// OnRestore is called after each restore request (pid, or the error).
	OnRestore func(pid int, err error)

	mu      sync.Mutex
	daemons map[*exec.Cmd]bool // criu lazy-pages daemons still running
	flat    *flatImage
}

// Close kills the lazy-pages daemons that are still serving (their restored trees then fault).
func (rv *Receiver) Close() {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	for c := range rv.daemons {
		_ = c.Process.Kill()
	}
}

// RoundDir is the directory of round r under the receiver's Dir.
func RoundDir(base string, r int) string { return filepath.Join(base, fmt.Sprintf("round-%d", r)) }

// Serve accepts connections on l until ctx ends or l is closed; connections are served one at a
// time (a migration is sequential).
func (rv *Receiver) Serve(ctx context.Context, l net.Listener) error {
	go func() { <-ctx.Done(); l.Close() }()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		_ = rv.ServeConn(ctx, c)
	}
}

// ServeConn serves one connection and closes it.
func (rv *Receiver) ServeConn(ctx context.Context, c net.Conn) error {
	defer c.Close()
	err := rv.handle(ctx, c)
	if err != nil && rv.Log != nil {
		fmt.Fprintf(rv.Log, "migrate receiver: %v\n", err)
	}
	return err
}

func (rv *Receiver) handle(ctx context.Context, c net.Conn) error {
	br := bufio.NewReaderSize(c, 64<<10)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read request: %w", err)
	}
	var req request
	if err := json.Unmarshal(line, &req); err != nil || req.Magic != wireMagic {
		return fmt.Errorf("not a %s request: %.80q", wireMagic, line)
	}
	rw := struct {
		io.Reader
		io.Writer
	}{br, c}
	rep, err := rv.do(ctx, req, rw)
	if err != nil {
		rep = reply{Error: err.Error()}
	}
	b, _ := json.Marshal(rep)
	_, werr := c.Write(append(b, '\n'))
	if err != nil {
		return fmt.Errorf("%s round %d: %w", req.Op, req.Round, err)
	}
	return werr
}

func (rv *Receiver) do(ctx context.Context, req request, rw io.ReadWriter) (reply, error) {
	if req.Round < 0 || req.Round > 1000 {
		return reply{}, fmt.Errorf("bad round %d", req.Round)
	}
	dir := RoundDir(rv.Dir, req.Round)
	switch req.Op {
	case "pages":
		if _, err := os.Lstat(dir); err == nil {
			return reply{}, fmt.Errorf("%s exists: a receiver directory serves one migration", dir)
		}
		if req.Round == 0 && !rv.NoDedup && !req.Flat {
			ps, err := cow.NewPageServer(dir, nil, cow.Options{NoFrames: true})
			if err != nil {
				return reply{}, err
			}
			if err := ps.Serve(rw); err != nil {
				ps.Abort()
				return reply{}, err
			}
			res, err := ps.Finish()
			if err != nil {
				return reply{}, err
			}
			rep := reply{Dir: dir}
			for _, p := range res.Procs {
				rep.Stored += p.Stored
				rep.Deduped += p.Pages - p.Stored
			}
			return rep, nil
		}
		parent := ""
		if req.Round > 0 {
			parent = filepath.Join("..", filepath.Base(RoundDir(rv.Dir, req.Round-1)))
		}
		w, err := newChainWriter(dir, parent)
		if err != nil {
			return reply{}, err
		}
		if err := w.serve(rw); err != nil {
			return reply{}, err
		}
		_, _ = io.Copy(io.Discard, rw) // until the sender closes its side
		switch {
		case req.Round == 0 && req.Flat:
			rv.flat = startFlat(dir, filepath.Join(rv.Dir, "flat"))
		case req.Round > 0 && rv.flat != nil:
			rv.flat.apply(req.Round, dir)
		}
		return reply{Dir: dir, Stored: w.Stored, Parent: w.Parent}, nil
	case "files":
		n, err := untarFlat(rw, dir)
		return reply{Files: n, Dir: dir}, err
	case "container":
		// the podman checkpoint archive of the last round (no pages: they came as round dir's chain)
		p := filepath.Join(rv.Dir, containerArchive)
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return reply{}, err
		}
		_, err = io.Copy(f, rw)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(p)
		}
		return reply{Files: 1, Dir: dir}, err
	case "restore":
		if req.Container {
			rep, err := rv.restoreContainer(ctx, req.Round, req.Name, req.Args)
			if rv.OnRestore != nil {
				defer rv.OnRestore(rep.Pid, err)
			}
			return rep, err
		}
		if req.Round > 0 {
			if _, err := os.Readlink(filepath.Join(dir, "parent")); err != nil {
				return reply{}, fmt.Errorf("round %d has no parent link: %w", req.Round, err)
			}
		}
		flatNote := ""
		if rv.flat != nil {
			if err := rv.flat.usable(req.Round); err != nil {
				flatNote = err.Error()
			} else if d, err := rv.flat.finish(dir); err != nil {
				flatNote = err.Error()
			} else {
				dir, flatNote = d, "used"
			}
		}
		lazy := false
		if req.Lazy {
			// Lazy only without a chain (or from the flat copy): criu reads PE_PARENT pages eagerly
			// anyway, and was seen to take minutes doing so with the lazy-pages daemon.
			_, perr := os.Lstat(filepath.Join(dir, "parent"))
			switch {
			case flatNote == "used" || perr != nil:
				lazy = true
			case rv.flat == nil:
				flatNote = "no flat copy (round 0 was not sent with Flat); restored eagerly"
			default:
				flatNote += "; restored eagerly"
			}
		}
		if len(req.Map) > 0 {
			m, err := addrmap.Parse(req.Map...)
			if err != nil {
				return reply{}, err
			}
			if _, err := netrw.Rewrite(dir, netrw.RewriteOptions{Map: m, TargetNetns: rv.Netns, Output: netrw.Output{InPlace: true}}); err != nil {
				return reply{}, fmt.Errorf("net rewrite of %s: %w", dir, err)
			}
		}
		t0 := time.Now()
		args := append(append([]string{}, rv.Restore...), req.Args...)
		var daemon *exec.Cmd
		if lazy {
			var err error
			if daemon, err = rv.startLazyPages(dir); err != nil {
				return reply{}, err
			}
			args = append(args, "--lazy-pages")
		}
		pid, err := criurun.Restore(ctx, criurun.Opts{Criu: rv.Criu, ImagesDir: dir, Netns: rv.Netns, Args: args})
		if err != nil && daemon != nil {
			_ = daemon.Process.Kill()
		}
		if rv.OnRestore != nil {
			defer rv.OnRestore(pid, err)
		}
		if err != nil {
			return reply{}, err
		}
		return reply{Pid: pid, Seconds: time.Since(t0).Seconds(), Dir: dir, Flat: flatNote}, nil
	}
	return reply{}, fmt.Errorf("unknown op %q", req.Op)
}

// startLazyPages starts `criu lazy-pages` on dir (it serves the restored tree's page faults from
// the images, parent chain included, and exits when every page is in) and waits for its socket.
func (rv *Receiver) startLazyPages(dir string) (*exec.Cmd, error) {
	criu := rv.Criu
	if criu == "" {
		p, _, err := criurun.Find()
		if err != nil {
			return nil, err
		}
		criu = p
	}
	sock := filepath.Join(dir, "lazy-pages.socket")
	_ = os.Remove(sock)
	log := filepath.Join(dir, "lazy-pages.log")
	cmd := exec.Command(criu, "lazy-pages", "-D", dir, "-v4", "-o", log)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	rv.mu.Lock()
	if rv.daemons == nil {
		rv.daemons = map[*exec.Cmd]bool{}
	}
	rv.daemons[cmd] = true
	rv.mu.Unlock()
	go func() { // reaped when it has served every page
		err := cmd.Wait()
		rv.mu.Lock()
		delete(rv.daemons, cmd)
		rv.mu.Unlock()
		exited <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if _, err := os.Stat(sock); err == nil {
			return cmd, nil
		}
		select {
		case err := <-exited:
			return nil, &criurun.Error{Op: "lazy-pages", Log: log, Lines: criurun.LastErrors(log, 5), Err: fmt.Errorf("exited before it was ready: %v", err)}
		case <-time.After(5 * time.Millisecond):
		}
	}
	_ = cmd.Process.Kill()
	return nil, fmt.Errorf("criu lazy-pages: no socket %s after 10s (log %s)", sock, log)
}

// untarFlat extracts regular files (flat names only) into dir: each written to a temp name and
// renamed; existing files are never replaced.
func untarFlat(r io.Reader, dir string) (int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	tr := tar.NewReader(r)
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("image stream: %w", err)
		}
		name := h.Name
		if h.Typeflag != tar.TypeReg || name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." || strings.HasPrefix(name, ".") {
			return n, fmt.Errorf("image stream: refusing entry %q (type %c): only flat regular files", name, h.Typeflag)
		}
		final := filepath.Join(dir, name)
		if _, err := os.Lstat(final); err == nil {
			return n, fmt.Errorf("image stream: %s exists", final)
		}
		if err := outfile.WriteMode(final, 0o600, func(w io.Writer) error {
			_, err := io.Copy(w, tr)
			return err
		}); err != nil {
			return n, fmt.Errorf("image stream: %s: %w", name, err)
		}
		n++
	}
}

// sendTar streams the regular files of dir (not the logs' temp files) as tar.
func sendTar(w io.Writer, dir string) (int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	cw := &countWriter{w: w}
	tw := tar.NewWriter(cw)
	for _, e := range ents {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return cw.n, err
		}
		fi, err := f.Stat()
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Name: e.Name(), Mode: 0o600, Size: fi.Size(), Typeflag: tar.TypeReg, ModTime: fi.ModTime()})
		}
		if err == nil {
			_, err = io.CopyN(tw, f, fi.Size())
		}
		f.Close()
		if err != nil {
			return cw.n, fmt.Errorf("send %s: %w", e.Name(), err)
		}
	}
	err = tw.Close()
	return cw.n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}
