package cow

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/internal/criurun"
	"golang.org/x/sys/unix"
)

// CRIU page-server protocol (criu/page-xfer.c): a 32-byte header {u32 cmd; u64 nr_pages; u64 vaddr;
// u64 dst_id} in host byte order and natural alignment, page data after PS_IOV_ADD_F with PE_PRESENT.
const (
	psIovAdd        = 1
	psIovHole       = 2
	psIovOpen       = 3
	psIovOpen2      = 4
	psIovParent     = 5
	psIovAddF       = 6
	psIovGet        = 7
	psIovClose      = 0x1023
	psIovForceClose = 0x1024
	psTypePid       = 1
	psTypeShmem     = 2
	psHeaderSize    = 32
)

// ErrProtocol is a page-server protocol violation (or a feature this server does not implement).
var ErrProtocol = errors.New("page-server protocol error")

// PageServer is a CRIU page server that stores each page once as it arrives: a page equal to one
// stored earlier in the dump (dump order is parents first) becomes a PE_PARENT entry of the deduped
// layout, so duplicates are never written (cow.md §6.2). It serves one criu session (Serve) on a
// socket criu got with --page-server --ps-socket FD (or a TCP connection from --address/--port).
type PageServer struct {
	dir   string
	d     *deduper
	ppids map[int]int
	recvd int64 // bytes of pages received
}

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

type psHeader struct {
	cmd              uint32
	nrPages, vaddr   uint64
	dstID            uint64
	rawCmd, rawFlags uint32
}

// shmemWriter stores a shared memory pagemap as is.
type shmemWriter struct {
	name, pages string
	pagesID     uint32
	f           *os.File
	w           *bufio.Writer
	ents        []pment
}

// Serve runs one criu page-server session on c until PS_IOV_CLOSE (and criu's end of file).
func (s *PageServer) Serve(c io.ReadWriter) error {
	r := newChunkReader(c, 8, 512<<10)
	defer r.close()
	ps := pageSize()
	desc, err := image.Classify("pagemap-1.img")
	if err != nil {
		return err
	}
	like := &image.Image{Desc: desc, Head: image.DefaultHead(desc)}
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
	reply := func(b []byte) error { _, err := c.Write(b); return err }
	for {
		hdr, err := r.next(psHeaderSize)
		if err != nil {
			if err == io.EOF {
				return fmt.Errorf("%w: criu closed the connection without PS_IOV_CLOSE", ErrProtocol)
			}
			return err
		}
		o := binary.NativeEndian
		h := psHeader{rawCmd: o.Uint32(hdr[0:]), nrPages: o.Uint64(hdr[8:]), vaddr: o.Uint64(hdr[16:]), dstID: o.Uint64(hdr[24:])}
		h.cmd, h.rawFlags = h.rawCmd&0xffff, h.rawCmd>>16
		switch h.cmd {
		case psIovOpen, psIovOpen2:
			if err := finishCur(); err != nil {
				return err
			}
			typ, id := h.dstID&0xff, h.dstID>>8
			switch typ {
			case psTypePid:
				curPid = int(id)
				if cur, err = s.d.begin(curPid, s.ppids[curPid], nextID, like, true); err != nil {
					return err
				}
			case psTypeShmem:
				f, err := os.OpenFile(filepath.Join(s.dir, pagesName(nextID)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					return err
				}
				sh = &shmemWriter{name: fmt.Sprintf("pagemap-shmem-%d.img", id), pagesID: nextID, f: f, w: bufio.NewWriterSize(f, 1<<20)}
			default:
				return fmt.Errorf("%w: unknown pagemap type %d (dst_id %#x)", ErrProtocol, typ, h.dstID)
			}
			nextID++
			if h.cmd == psIovOpen2 {
				if err := reply([]byte{0}); err != nil { // no parent images
					return err
				}
			}
		case psIovParent:
			if err := reply(make([]byte, 4)); err != nil { // int32 0: no parent
				return err
			}
		case psIovAdd, psIovAddF, psIovHole:
			flags := h.rawFlags
			switch h.cmd {
			case psIovAdd:
				flags = image.PEPresent
			case psIovHole:
				flags = image.PEParent
			}
			if flags&image.PEParent != 0 {
				return fmt.Errorf("%w: PE_PARENT pages (incremental dump) are not supported by the dedup page server", ErrIncremental)
			}
			if cur == nil && sh == nil {
				return fmt.Errorf("%w: pages before PS_IOV_OPEN2", ErrProtocol)
			}
			if h.nrPages > 1<<40 {
				return fmt.Errorf("%w: %d pages in one iov", ErrProtocol, h.nrPages)
			}
			if flags&image.PEPresent == 0 {
				e := newEntry(h.vaddr, h.nrPages, flags, true)
				if cur != nil {
					cur.other(e)
				} else {
					sh.ents = append(sh.ents, e)
				}
				continue
			}
			if sh != nil {
				sh.ents = append(sh.ents, newEntry(h.vaddr, h.nrPages, flags, true))
				for j := uint64(0); j < h.nrPages; j++ {
					pg, err := r.next(int(ps))
					if err != nil {
						return fmt.Errorf("shmem %s: page data at %#x: %w", sh.name, h.vaddr+j*uint64(ps), err)
					}
					if _, err := sh.w.Write(pg); err != nil {
						return err
					}
				}
				s.recvd += int64(h.nrPages) * ps
				continue
			}
			for j := uint64(0); j < h.nrPages; j++ {
				pg, err := r.next(int(ps)) // usually no copy: the page is used in the reader's chunk
				if err != nil {
					return fmt.Errorf("pid %d: page data at %#x: %w", curPid, h.vaddr+j*uint64(ps), err)
				}
				if err := cur.page(h.vaddr+j*uint64(ps), flags, j == 0, pg); err != nil {
					return err
				}
			}
			s.recvd += int64(h.nrPages) * ps
		case psIovClose, psIovForceClose:
			if err := finishCur(); err != nil {
				return err
			}
			if err := reply(make([]byte, 4)); err != nil {
				return err
			}
			r.drain() // criu closes its side
			return nil
		case psIovGet:
			return fmt.Errorf("%w: PS_IOV_GET (lazy pages) is not supported", ErrProtocol)
		default:
			return fmt.Errorf("%w: unknown command %#x", ErrProtocol, h.rawCmd)
		}
	}
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
	dir, err := filepath.Abs(o.ImagesDir)
	if err != nil {
		return nil, err
	}
	log := o.LogFile
	if log == "" {
		log = filepath.Join(dir, "dump.log")
	} else if log, err = filepath.Abs(log); err != nil {
		return nil, err
	}
	criu := o.Criu
	if criu == "" {
		if criu, _, err = criurun.Find(); err != nil {
			return nil, err
		}
	}
	ppids := map[int]int{}
	for _, p := range TreePids(pid) {
		ppids[vpid(p)] = vpid(ppidOf(p))
	}
	s, err := NewPageServer(dir, ppids, opt)
	if err != nil {
		return nil, err
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
	v := o.Verbosity
	if v == 0 {
		v = 4
	}
	args := []string{"dump", "-t", strconv.Itoa(pid), "-D", dir, "-v" + strconv.Itoa(v), "-o", log}
	if !slices.ContainsFunc(o.Args, func(a string) bool { return a == "--network-lock" || strings.HasPrefix(a, "--network-lock=") }) {
		args = append(args, "--network-lock", "nftables")
	}
	args = append(append(args, o.Args...), "--page-server", "--ps-socket", "3")
	var cmd *exec.Cmd
	if o.Netns != "" {
		cmd = exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + o.Netns, "--", criu}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, criu, args...)
	}
	cmd.Env = append(os.Environ(), o.Env...)
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
	go func() { served <- s.Serve(ours) }()
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
	res := &DumpResult{DumpSeconds: dumpDur.Seconds()}
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

func ppidOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "PPid:"); ok {
			v, _ := strconv.Atoi(strings.TrimSpace(rest))
			return v
		}
	}
	return 0
}
