package cow

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/pageproto"
	"github.com/criukit/criukit/internal/procfs"
	"golang.org/x/sys/unix"
)

// ErrProtocol is a page-server protocol violation (or a feature this server does not implement);
// the wire format is internal/pageproto.
var ErrProtocol = errors.New("page-server protocol error")

// PageServer is a CRIU page server that stores each page once as it arrives: a page equal to one
// stored earlier in the dump (dump order is parents first) becomes a PE_PARENT entry of the deduped
// layout, so duplicates are never written (cow.md §6.2). It serves one criu session (Serve) on a
// socket criu got with --page-server --ps-socket FD (or a TCP connection from --address/--port).
type PageServer struct {
	dir   string
	d     *deduper
	ppids map[int]int
	tree  map[int]int // image pid -> real pid, for the frame snapshot (SetTree)
	real  map[int]int // image pid -> real pid, for the MAP_HUGETLB mappings (SetPids)
	recvd int64       // bytes of pages received
	// Skipped counts pages not copied out of the socket (their frame was received before).
	Skipped int64
}

// SetTree gives the server the dumped tree (image pid -> pid in our pid namespace), so that pages
// sharing a frame with a page already received are spliced away instead of copied and compared.
func (s *PageServer) SetTree(tree map[int]int) { s.tree = tree }

// SetPids gives the server the dumped tree's pids (image pid -> pid in our pid namespace) without
// the frame snapshot: the pages of MAP_HUGETLB mappings, read from /proc/PID/smaps, are then never
// deduped (CRIU restores them from the process' own pages file only; see hugetlb.go).
func (s *PageServer) SetPids(tree map[int]int) { s.real = tree }

// NewPageServer writes pagemaps and pages into dir (the dump's images directory). ppids maps image
// pids to their tree parent (optional: same-address matches in the tree parent are tried first).
func NewPageServer(dir string, ppids map[int]int, opt Options) (*PageServer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &PageServer{dir: dir, d: newDeduper(dir, opt), ppids: ppids}, nil
}

// Finish writes the chain links and the marker after a successful session.
func (s *PageServer) Finish() (*Result, error) {
	defer s.d.close()
	return s.d.finish(s.recvd)
}

// Abort releases the server after a failed session.
func (s *PageServer) Abort() { s.d.close() }

// shmemWriter stores a shared memory pagemap as is.
type shmemWriter struct {
	name, pages string
	pagesID     uint32
	f           *os.File
	w           *bufio.Writer
	ents        []pment
}

// Serve runs one criu page-server session on c until PS_IOV_CLOSE (and criu's end of file).
//
// A receiving goroutine speaks the protocol and copies page data out of the socket; this one
// dedups and writes. When c is a socket (*os.File) and the tree's pids are known (SetTree), the
// receiver snapshots the tree's page frames when criu opens the first process (the whole tree is
// frozen by then), twice, and keeps a frame only where both snapshots agree. A page whose frame was
// already received from an earlier process is then not copied out of the socket at all but
// spliced to /dev/null: it is the same physical page, so its bytes are those stored earlier.
func (s *PageServer) Serve(c io.ReadWriter) error {
	desc, err := image.Classify("pagemap-1.img")
	if err != nil {
		return err
	}
	like := &image.Image{Desc: desc, Head: image.DefaultHead(desc)}
	rc := s.newReceiver(c)
	defer rc.stop()
	go rc.run()

	var nextID uint32 = 1
	var cur *procWriter
	var sh *shmemWriter
	var curPid int
	finishCur := func() error {
		if cur != nil {
			w := cur
			cur = nil
			if err := w.finish(""); err != nil {
				return fmt.Errorf("pid %d: %w", curPid, err)
			}
		}
		if sh != nil {
			w := sh
			sh = nil
			if err := w.w.Flush(); err != nil {
				return err
			}
			if err := w.f.Close(); err != nil {
				return err
			}
			return writePagemap(filepath.Join(s.dir, w.name), like, w.pagesID, w.ents)
		}
		return nil
	}
	defer func() {
		if cur != nil {
			cur.abort()
		}
		if sh != nil {
			sh.f.Close()
		}
	}()
	process := func(ev *psEvent) error {
		switch ev.kind {
		case evOpen:
			if err := finishCur(); err != nil {
				return err
			}
			typ, id := ev.h.Type(), ev.h.ID()
			switch typ {
			case pageproto.TypePid:
				curPid = int(id)
				if cur, err = s.d.begin(curPid, s.ppids[curPid], nextID, like, true); err != nil {
					return err
				}
				if rp, ok := s.real[curPid]; ok {
					if cur.huge, err = hugetlbFromProc(rp); err != nil {
						return err
					}
				}
			case pageproto.TypeShmem:
				f, err := os.OpenFile(filepath.Join(s.dir, pagesName(nextID)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					return err
				}
				sh = &shmemWriter{name: fmt.Sprintf("pagemap-shmem-%d.img", id), pagesID: nextID, f: f, w: bufio.NewWriterSize(f, 1<<20)}
			}
			nextID++
		case evEntry: // a pagemap entry without data here (a hole), or a shmem entry
			e := newEntry(ev.h.Vaddr, ev.h.Nr, ev.flags, true)
			if cur != nil {
				cur.other(e)
			} else {
				sh.ents = append(sh.ents, e)
			}
		case evPage:
			if sh != nil {
				_, err := sh.w.Write(ev.data)
				return err
			}
			return cur.page(ev.va, ev.flags, ev.first, ev.data, nil)
		case evDup:
			return cur.dupPage(ev.va, ev.flags, ev.first, ev.key)
		case evClose:
			return finishCur()
		}
		return nil
	}
	for b := range rc.out {
		var perr error
		for i := range b.evs {
			if perr = process(&b.evs[i]); perr != nil {
				break
			}
		}
		if b.chunk != nil {
			rc.free <- b.chunk
		}
		if perr != nil {
			return perr
		}
		if n := len(b.evs); n > 0 && b.evs[n-1].kind == evClose {
			s.recvd, s.Skipped = rc.recvd, rc.skip
			rc.closed <- nil // the receiver answers criu and drains its end
			return <-rc.errc
		}
	}
	return <-rc.errc
}

// DumpDedupPageServer is `criukit dump --cow`: criu dump sends the pages over a socketpair
// (criu --page-server --ps-socket 3) to a page server in this process, which stores every page once
// as it arrives; the duplicates are never written. o is used like criurun.Dump (log default
// ImagesDir/dump.log, --network-lock nftables unless in o.Args, o.Netns through nsenter). If the
// page server fails, criu dump fails and the tree is resumed, not killed.
func DumpDedupPageServer(ctx context.Context, pid int, o criurun.Opts, opt Options) (*DumpResult, error) {
	if o.ImagesDir == "" {
		return nil, errors.New("cow dump: no images directory")
	}
	ro, err := o.Resolved("dump.log") // -o relative to the images (work) dir, as criu reads it
	if err != nil {
		return nil, err
	}
	dir, log := ro.ImagesDir, ro.LogFile
	criu := o.Criu
	if criu == "" {
		if criu, _, err = criurun.Find(); err != nil {
			return nil, err
		}
	}
	ppids, tree := map[int]int{}, map[int]int{}
	inImages := map[int]int{}         // our pid -> pid in the images
	for i, p := range TreePids(pid) { // parents first
		v := vpid(p)
		inImages[p] = v
		tree[v] = p
		if i == 0 {
			continue // the root's parent is outside the dump (pstree.img says 0)
		}
		if st, err := procfs.ReadStatus(p); err == nil {
			if pp, ok := st.LastInt("PPid"); ok {
				ppids[v] = inImages[pp]
			}
		}
	}
	s, err := NewPageServer(dir, ppids, opt)
	if err != nil {
		return nil, err
	}
	s.SetPids(tree)
	if !opt.NoFrames {
		s.SetTree(tree)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		s.Abort()
		return nil, err
	}
	for _, fd := range fds { // fewer wakeups per MiB spliced
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 8<<20) != nil { // root: above wmem_max
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<20)
		}
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "page-server"), os.NewFile(uintptr(fds[1]), "criu-ps-socket")
	// criurun's command line (-D, -v4 -o, --network-lock nftables unless given, o.Args), plus
	// the page server on fd 3.
	po := o
	po.Criu, po.ImagesDir, po.LogFile = criu, dir, log
	cmd, err := po.Command(ctx, "dump", "-t", strconv.Itoa(pid), "--page-server", "--ps-socket", "3")
	if err != nil {
		ours.Close()
		theirs.Close()
		s.Abort()
		return nil, err
	}
	cmd.ExtraFiles = []*os.File{theirs}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		ours.Close()
		theirs.Close()
		s.Abort()
		return nil, err
	}
	theirs.Close()
	served := make(chan error, 1)
	go func() {
		err := s.Serve(ours)
		if err != nil {
			// criu may be writing pages or waiting for an answer: make that fail now
			_ = unix.Shutdown(int(ours.Fd()), unix.SHUT_RDWR)
		}
		served <- err
	}()
	werr := cmd.Wait()
	dumpDur := time.Since(t0)
	ours.Close() // unblocks Serve if criu died mid-session
	serr := <-served
	if werr != nil {
		s.Abort()
		e := &criurun.Error{Op: "dump", Log: log, Lines: criurun.LastErrors(log, 5), Output: strings.TrimSpace(out.String()), Err: werr}
		if serr != nil {
			return nil, fmt.Errorf("%w (page server: %v)", e, serr)
		}
		return nil, e
	}
	if serr != nil {
		s.Abort()
		return nil, fmt.Errorf("cow dump: criu succeeded but the page server failed (images incomplete): %w", serr)
	}
	res := &DumpResult{DumpSeconds: dumpDur.Seconds(), SkippedPages: s.Skipped}
	t1 := time.Now()
	r, err := s.Finish()
	res.DedupSeconds = time.Since(t1).Seconds()
	if err != nil {
		return res, fmt.Errorf("cow dump: finish the deduped layout: %w", err)
	}
	res.Result = r
	res.Dir = dir
	return res, nil
}
