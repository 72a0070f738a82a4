package migrate

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/internal/pageproto"
	"golang.org/x/sys/unix"
)

// span is a run of pages [start, end) of one pagemap that a round's images cover (stored or
// PE_PARENT).
type span struct{ start, end uint64 }

// coverage is what a round's images hold, per page-server dst_id (pid or shmem id and type).
type coverage map[uint64][]span

func (c coverage) add(dst, start, end uint64) {
	s := c[dst]
	if k := len(s); k > 0 && s[k-1].end == start {
		s[k-1].end = end
	} else {
		s = append(s, span{start, end})
	}
	c[dst] = s
}

// sort orders every list (criu sends a pagemap's entries in address order; shmem too).
func (c coverage) sort() {
	for _, s := range c {
		sort.Slice(s, func(i, j int) bool { return s[i].start < s[j].start })
	}
}

func (c coverage) has(dst, va uint64) bool {
	s := c[dst]
	i := sort.Search(len(s), func(i int) bool { return s[i].end > va })
	return i < len(s) && s[i].start <= va
}

// relayStats counts one round's pages.
type relayStats struct {
	Pages  int64 // pages criu sent with data
	Sent   int64 // of those, sent on (written or new)
	Parent int64 // of those, sent as PE_PARENT (unchanged since the parent round)
	Holes  int64 // entries without data criu sent (lazy/parent), in pages
}

// relay passes one criu page-server session from criu (the socket criu got as --ps-socket) to
// the receiver (out), replacing pages that keep(dst, va) rejects and the parent round covers by
// PE_PARENT entries. onFreeze runs when criu opens the first process' pages (the whole tree is
// seized by then), before any page is read.
//
// With criu tracking (criu --track-mem-uffd, see relayCriuTrack) criu itself sends unwritten pages
// as PE_PARENT without reading them: ct answers PS_IOV_OPEN2 (whether criu may use the parent for
// that process) and checks at PS_IOV_FLUSH_N_CLOSE, still inside the freeze, every PE_PARENT range
// criu sent against the trackers (an error fails the dump: nothing is restored from a wrong chain).
func relay(criu *os.File, conn io.ReadWriter, parent coverage, keep func(dst, va uint64) bool, onFreeze func() error, ct *relayCriuTrack) (coverage, relayStats, error) {
	// Buffered towards the receiver (criu sends one message per run of pages: with scattered
	// writes tens of thousands of small ones), flushed before every answer is read.
	out := &flushingRW{r: conn, w: bufio.NewWriterSize(conn, 1<<20)}
	var st relayStats
	cov := coverage{}
	var hb [pageproto.HeaderSize]byte
	buf := make([]byte, 1<<20)
	ps := uint64(os.Getpagesize())
	frozen := false
	var dis *discarder
	defer func() {
		if dis != nil {
			dis.close()
		}
	}()
	fwdReply := func(n int) error {
		b := make([]byte, n)
		if _, err := io.ReadFull(out, b); err != nil {
			return fmt.Errorf("receiver's answer: %w", err)
		}
		_, err := criu.Write(b)
		return err
	}
	for {
		h, err := pageproto.Read(criu, &hb)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, st, fmt.Errorf("%w: criu closed the connection without PS_IOV_CLOSE", ErrProtocol)
			}
			return nil, st, fmt.Errorf("read from criu: %w", err)
		}
		switch h.Cmd {
		case pageproto.IovOpen, pageproto.IovOpen2:
			if h.Type() == pageproto.TypePid && !frozen {
				frozen = true
				if onFreeze != nil {
					if err := onFreeze(); err != nil {
						return nil, st, err
					}
				}
			}
			if _, err := out.Write(h.Bytes()); err != nil {
				return nil, st, fmt.Errorf("send to receiver: %w", err)
			}
			if h.Cmd == pageproto.IovOpen2 {
				if ct != nil {
					b := make([]byte, 1)
					if _, err := io.ReadFull(out, b); err != nil {
						return nil, st, fmt.Errorf("receiver's answer: %w", err)
					}
					if parent != nil && len(parent[h.DstID]) > 0 && ct.hasParent(h.DstID) {
						b[0] = 1
					} else {
						b[0] = 0
					}
					if _, err := criu.Write(b); err != nil {
						return nil, st, err
					}
				} else if err := fwdReply(1); err != nil {
					return nil, st, err
				}
			}
		case pageproto.IovParent:
			if _, err := out.Write(h.Bytes()); err != nil {
				return nil, st, err
			}
			if err := fwdReply(4); err != nil {
				return nil, st, err
			}
		case pageproto.IovAdd, pageproto.IovAddF, pageproto.IovHole:
			flags := h.EffFlags()
			if h.Nr > 1<<36 {
				return nil, st, fmt.Errorf("%w: %d pages in one iov at %#x", ErrProtocol, h.Nr, h.Vaddr)
			}
			cov.add(h.DstID, h.Vaddr, h.Vaddr+h.Nr*ps)
			if flags&image.PEPresent == 0 {
				if ct != nil && flags&image.PEParent != 0 {
					// criu's own decision (criu tracking): the parent round must have the pages
					for i := uint64(0); i < h.Nr; i++ {
						if !parent.has(h.DstID, h.Vaddr+i*ps) {
							return nil, st, fmt.Errorf("%w: criu sent %#x (%s) as PE_PARENT but the parent round has no page there", ErrCriuTrack, h.Vaddr+i*ps, dstName(h.DstID))
						}
					}
					ct.parents.add(h.DstID, h.Vaddr, h.Vaddr+h.Nr*ps)
					st.Parent += int64(h.Nr)
					if _, err := out.Write(h.Bytes()); err != nil {
						return nil, st, err
					}
					continue
				}
				st.Holes += int64(h.Nr)
				if _, err := out.Write(h.Bytes()); err != nil {
					return nil, st, err
				}
				continue
			}
			st.Pages += int64(h.Nr)
			// runs of pages to send and pages the parent round has
			for i := uint64(0); i < h.Nr; {
				va := h.Vaddr + i*ps
				send := parent == nil || !parent.has(h.DstID, va) || keep(h.DstID, va)
				j := i + 1
				for j < h.Nr {
					v := h.Vaddr + j*ps
					s := parent == nil || !parent.has(h.DstID, v) || keep(h.DstID, v)
					if s != send {
						break
					}
					j++
				}
				n := j - i
				if send {
					oh := pageproto.Header{Cmd: pageproto.IovAddF, Flags: flags, Nr: n, Vaddr: va, DstID: h.DstID}
					if _, err := out.Write(oh.Bytes()); err != nil {
						return nil, st, err
					}
					for left := n * ps; left > 0; {
						k := min(left, uint64(len(buf)))
						if _, err := io.ReadFull(criu, buf[:k]); err != nil {
							return nil, st, fmt.Errorf("page data at %#x from criu: %w", va, err)
						}
						if _, err := out.Write(buf[:k]); err != nil {
							return nil, st, fmt.Errorf("send pages to receiver: %w", err)
						}
						left -= k
					}
					st.Sent += int64(n)
				} else {
					// PE_PARENT without PE_LAZY, as criu writes parent holes: criu 4.2's lazy-pages
					// daemon spins forever on PE_PARENT|PE_LAZY entries (tried: the restored task
					// waits in handle_userfault), so a lazy restore reads parent pages eagerly.
					oh := pageproto.Header{Cmd: pageproto.IovAddF, Flags: image.PEParent, Nr: n, Vaddr: va, DstID: h.DstID}
					if _, err := out.Write(oh.Bytes()); err != nil {
						return nil, st, err
					}
					if dis == nil {
						dis = newDiscarder(criu, buf)
					}
					if err := dis.drop(int(n * ps)); err != nil {
						return nil, st, fmt.Errorf("page data at %#x from criu: %w", va, err)
					}
					st.Parent += int64(n)
				}
				i = j
			}
		case pageproto.IovClose, pageproto.IovForceClose:
			if ct != nil && ct.onFlush != nil {
				if err := ct.onFlush(ct.parents); err != nil {
					return nil, st, err
				}
			}
			if _, err := out.Write(h.Bytes()); err != nil {
				return nil, st, err
			}
			if err := fwdReply(4); err != nil {
				return nil, st, err
			}
			cov.sort()
			return cov, st, nil
		case pageproto.IovGet:
			return nil, st, fmt.Errorf("%w: PS_IOV_GET (lazy pages) is not supported by migrate", ErrProtocol)
		default:
			return nil, st, fmt.Errorf("%w: unknown command (%s)", ErrProtocol, h)
		}
	}
}

// flushingRW writes through a buffer and flushes it before each read (a request's answer).
type flushingRW struct {
	r io.Reader
	w *bufio.Writer
}

func (f *flushingRW) Write(b []byte) (int, error) { return f.w.Write(b) }

func (f *flushingRW) Read(b []byte) (int, error) {
	if err := f.w.Flush(); err != nil {
		return 0, err
	}
	return f.r.Read(b)
}

// ErrCriuTrack: criu's own tracking (--track-mem-uffd) disagreed with criukit's trackers.
var ErrCriuTrack = errors.New("criu tracking check failed")

// relayCriuTrack is the relay's part when criu skips unwritten pages itself.
type relayCriuTrack struct {
	hasParent func(dst uint64) bool // PS_IOV_OPEN2: may criu take unwritten pages of dst from the parent?
	onFlush   func(parents coverage) error
	parents   coverage // PE_PARENT ranges criu sent
}

func dstName(dst uint64) string {
	if pid, ok := pageproto.PidOf(dst); ok {
		return fmt.Sprintf("pid %d", pid)
	}
	return fmt.Sprintf("dst %#x", dst)
}

// discarder drops bytes of criu's stream without copying them: spliced through a pipe to
// /dev/null (read into buf when splice is not possible).
type discarder struct {
	f      *os.File
	buf    []byte
	pr, pw int
	null   int
}

func newDiscarder(f *os.File, buf []byte) *discarder {
	d := &discarder{f: f, buf: buf, pr: -1, pw: -1, null: -1}
	p := make([]int, 2)
	if unix.Pipe2(p, unix.O_CLOEXEC) != nil {
		return d
	}
	_, _ = unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, 1<<20)
	n, err := unix.Open("/dev/null", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return d
	}
	d.pr, d.pw, d.null = p[0], p[1], n
	return d
}

func (d *discarder) drop(n int) error {
	if d.pr < 0 {
		_, err := io.CopyN(io.Discard, d.f, int64(n))
		return err
	}
	sc, err := d.f.SyscallConn()
	if err != nil {
		_, err := io.CopyN(io.Discard, d.f, int64(n))
		return err
	}
	var serr error
	cerr := sc.Read(func(fd uintptr) bool {
		for n > 0 {
			k, err := unix.Splice(int(fd), nil, d.pw, nil, min(n, 1<<20), unix.SPLICE_F_MOVE)
			if err == unix.EINTR {
				continue
			}
			if err == unix.EAGAIN {
				return false // wait until readable
			}
			if err != nil {
				serr = err
				return true
			}
			if k == 0 {
				serr = io.ErrUnexpectedEOF
				return true
			}
			for m := k; m > 0; {
				j, err := unix.Splice(d.pr, nil, d.null, nil, int(m), unix.SPLICE_F_MOVE)
				if err == unix.EINTR {
					continue
				}
				if err != nil {
					serr = err
					return true
				}
				m -= j
			}
			n -= int(k)
		}
		return true
	})
	if cerr != nil {
		return cerr
	}
	return serr
}

func (d *discarder) close() {
	for _, fd := range []int{d.pr, d.pw, d.null} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}
