package cow

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/internal/pageproto"
	"golang.org/x/sys/unix"
)

// The receiving half of the page server: it reads criu's stream, answers criu, and hands the
// pages to the dedup goroutine in batches (page data in chunks of memory reused round robin).

type psEvKind uint8

const (
	evOpen  psEvKind = iota // PS_IOV_OPEN/OPEN2 of a process or a shmem segment
	evEntry                 // a pagemap entry without page data to store here
	evPage                  // one page, data in a chunk
	evDup                   // one page whose frame was received before (not copied out)
	evClose                 // PS_IOV_CLOSE
)

type psEvent struct {
	kind  psEvKind
	h     pageproto.Header
	va    uint64
	flags uint32
	first bool
	data  []byte
	key   PageKey
}

type psBatch struct {
	evs   []psEvent
	chunk []byte // returned on free once processed
}

const (
	recvChunk  = 1 << 20
	recvChunks = 6
	batchEvs   = 4096
)

type receiver struct {
	s      *PageServer
	rw     io.ReadWriter
	fd     int // socket fd for splice; -1: copy everything
	pr, pw int // pipe for splice (fd >= 0)
	null   int
	out    chan psBatch
	free   chan []byte
	closed chan error // the dedup side is done with PS_IOV_CLOSE
	errc   chan error
	quit   chan struct{}
	stopd  atomic.Bool

	chunk []byte
	made  int // chunks made so far
	used  int
	evs   []psEvent
	recvd int64
	skip  int64

	// frame snapshot: per image pid, and which frames were received in which process
	frames  map[int][]FramePage
	snapped bool
	seen    *frameTable[int32] // process index + 1 of the first process a frame came from
	procIdx int32
	cur     []FramePage
	ccur    int
}

func (s *PageServer) newReceiver(c io.ReadWriter) *receiver {
	r := &receiver{s: s, rw: c, fd: -1, pr: -1, pw: -1, null: -1,
		out: make(chan psBatch, recvChunks), free: make(chan []byte, recvChunks), closed: make(chan error, 1),
		errc: make(chan error, 1), quit: make(chan struct{}), procIdx: -1}
	if f, ok := c.(*os.File); ok && len(s.tree) > 0 {
		p := make([]int, 2)
		if err := unix.Pipe2(p, unix.O_CLOEXEC); err == nil {
			_, _ = unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, 1<<20)
			if n, err := unix.Open("/dev/null", unix.O_WRONLY|unix.O_CLOEXEC, 0); err == nil {
				r.fd, r.pr, r.pw, r.null = int(f.Fd()), p[0], p[1], n
			} else {
				unix.Close(p[0])
				unix.Close(p[1])
			}
		}
	}
	return r
}

// stop ends the receiver (after an error of the dedup side, too) and releases its fds.
func (r *receiver) stop() {
	if r.stopd.Swap(true) {
		return
	}
	close(r.quit)
}

func (r *receiver) closeFDs() {
	for _, fd := range []int{r.pr, r.pw, r.null} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

func (r *receiver) run() {
	err := r.loop()
	r.closeFDs()
	r.errc <- err
	close(r.out)
}

func (r *receiver) readFull(b []byte) error {
	if r.fd < 0 {
		_, err := io.ReadFull(r.rw, b)
		return err
	}
	for got := 0; got < len(b); {
		n, err := unix.Read(r.fd, b[got:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			if got == 0 {
				return io.EOF
			}
			return io.ErrUnexpectedEOF
		}
		got += n
	}
	return nil
}

// discard drops n bytes of the stream: spliced through a pipe to /dev/null, never copied.
func (r *receiver) discard(n int) error {
	for n > 0 {
		k, err := unix.Splice(r.fd, nil, r.pw, nil, min(n, 1<<20), unix.SPLICE_F_MOVE)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("splice from criu's socket: %w", err)
		}
		if k == 0 {
			return io.ErrUnexpectedEOF
		}
		for m := k; m > 0; {
			j, err := unix.Splice(r.pr, nil, r.null, nil, int(m), unix.SPLICE_F_MOVE)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return fmt.Errorf("splice to /dev/null: %w", err)
			}
			m -= j
		}
		n -= int(k)
	}
	return nil
}

// send hands the pending events (and the chunk if full or forced) to the dedup side.
func (r *receiver) flush(newChunk bool) error {
	if len(r.evs) == 0 && !newChunk {
		return nil
	}
	b := psBatch{evs: r.evs}
	if newChunk && r.chunk != nil {
		b.chunk = r.chunk
	}
	select {
	case r.out <- b:
	case <-r.quit:
		return errStopped
	}
	r.evs = make([]psEvent, 0, batchEvs)
	if newChunk {
		// chunks are made on demand (a short session needs one), at most recvChunks of them
		select {
		case r.chunk = <-r.free:
		default:
			if r.made < recvChunks {
				r.made++
				r.chunk = make([]byte, recvChunk)
			} else {
				select {
				case r.chunk = <-r.free:
				case <-r.quit:
					return errStopped
				}
			}
		}
		r.used = 0
	}
	return nil
}

var errStopped = errors.New("page server stopped")

func (r *receiver) emit(ev psEvent) error {
	r.evs = append(r.evs, ev)
	if len(r.evs) >= batchEvs {
		// Only events: the chunk stays ours until it is full, and goes with the batch that holds
		// its last events (the dedup side returns chunks, so it is not reused before that).
		return r.flush(false)
	}
	return nil
}

func (r *receiver) reply(b []byte) error { _, err := r.rw.Write(b); return err }

// frameAt returns the snapshot's frame of the current process at va.
func (r *receiver) frameAt(va uint64) (PageKey, bool) {
	fr := r.cur
	if i, ok := seekVaddr(len(fr), func(k int) uint64 { return fr[k].Vaddr }, &r.ccur, va); ok {
		return fr[i].Key, true
	}
	return 0, false
}

// dupAt returns the frame of the current process' page at va if an earlier process sent it.
func (r *receiver) dupAt(va uint64) (PageKey, bool) {
	key, ok := r.frameAt(va)
	if !ok {
		return 0, false
	}
	p, seen := r.seen.get(key)
	return key, seen && p != r.procIdx+1
}

func (r *receiver) snapshot() {
	if r.fd < 0 || r.snapped {
		return
	}
	r.snapped = true // once, at the first process: a failed snapshot means content matching only
	first := map[int][]FramePage{}
	for ipid, pid := range r.s.tree {
		fr, err := ScanFrames(pid)
		if err != nil {
			return // content matching only
		}
		first[ipid] = fr
	}
	r.frames = map[int][]FramePage{}
	for ipid, pid := range r.s.tree {
		fr, err := ScanFrames(pid)
		if err != nil {
			r.frames = nil
			return
		}
		a := first[ipid]
		keep := fr[:0]
		for i, j := 0, 0; i < len(fr); i++ { // both sorted by address
			for j < len(a) && a[j].Vaddr < fr[i].Vaddr {
				j++
			}
			if j < len(a) && a[j] == fr[i] {
				keep = append(keep, fr[i])
			}
		}
		r.frames[ipid] = keep
	}
	r.seen = &frameTable[int32]{}
	r.s.d.opt.Frames = r.frames // begin() of every process reads it (after this, via the channel)
}

func (r *receiver) loop() error {
	var hdr [pageproto.HeaderSize]byte
	ps := int(pageSize())
	open := false
	isShmem := false
	for {
		if err := r.readFull(hdr[:]); err != nil {
			if err == io.EOF {
				return fmt.Errorf("%w: criu closed the connection without PS_IOV_CLOSE", ErrProtocol)
			}
			return err
		}
		h := pageproto.Parse(hdr[:])
		switch h.Cmd {
		case pageproto.IovOpen, pageproto.IovOpen2:
			typ := h.Type()
			switch typ {
			case pageproto.TypePid:
				r.snapshot()
				r.procIdx++
				r.cur, r.ccur = r.frames[int(h.ID())], 0
				isShmem = false
			case pageproto.TypeShmem:
				r.cur, r.ccur = nil, 0
				isShmem = true
			default:
				return fmt.Errorf("%w: unknown pagemap type %d (dst_id %#x)", ErrProtocol, typ, h.DstID)
			}
			open = true
			if err := r.emit(psEvent{kind: evOpen, h: h}); err != nil {
				return err
			}
			if h.Cmd == pageproto.IovOpen2 {
				if err := r.reply([]byte{0}); err != nil { // no parent images
					return err
				}
			}
		case pageproto.IovParent:
			if err := r.reply(make([]byte, 4)); err != nil { // int32 0: no parent
				return err
			}
		case pageproto.IovAdd, pageproto.IovAddF, pageproto.IovHole:
			flags := h.EffFlags()
			if flags&image.PEParent != 0 {
				return fmt.Errorf("%w: PE_PARENT pages (incremental dump) are not supported by the dedup page server", ErrIncremental)
			}
			if !open {
				return fmt.Errorf("%w: pages before PS_IOV_OPEN2", ErrProtocol)
			}
			if h.Nr > 1<<40 {
				return fmt.Errorf("%w: %d pages in one iov", ErrProtocol, h.Nr)
			}
			if flags&image.PEPresent == 0 {
				if err := r.emit(psEvent{kind: evEntry, h: h, flags: flags}); err != nil {
					return err
				}
				continue
			}
			if isShmem {
				if err := r.emit(psEvent{kind: evEntry, h: h, flags: flags}); err != nil {
					return err
				}
			}
			if err := r.pages(h, flags, ps, isShmem); err != nil {
				return err
			}
		case pageproto.IovClose, pageproto.IovForceClose:
			if err := r.emit(psEvent{kind: evClose}); err != nil {
				return err
			}
			if err := r.flush(r.used > 0); err != nil {
				return err
			}
			var err error
			select {
			case err = <-r.closed:
			case <-r.quit:
				return errStopped
			}
			if err != nil {
				return err
			}
			if err := r.reply(make([]byte, 4)); err != nil {
				return err
			}
			var b [4096]byte
			for r.readFull(b[:]) == nil { // until criu closes its side
			}
			return nil
		case pageproto.IovGet:
			return fmt.Errorf("%w: PS_IOV_GET (lazy pages) is not supported", ErrProtocol)
		default:
			return fmt.Errorf("%w: unknown command %#x", ErrProtocol, h.RawCmd())
		}
	}
}

// pages receives the data of one iov: runs of pages whose frame came before are discarded,
// the others are read into the chunk.
func (r *receiver) pages(h pageproto.Header, flags uint32, ps int, shmem bool) error {
	n := int(h.Nr)
	for j := 0; j < n; {
		va := h.Vaddr + uint64(j*ps)
		if !shmem && r.seen != nil {
			// a run of pages already received from an earlier process
			k := 0
			for j+k < n {
				key, dup := r.dupAt(va + uint64(k*ps))
				if !dup {
					break
				}
				if err := r.emit(psEvent{kind: evDup, va: va + uint64(k*ps), flags: flags, first: j+k == 0, key: key}); err != nil {
					return err
				}
				k++
			}
			if k > 0 {
				if err := r.discard(k * ps); err != nil {
					return fmt.Errorf("pid page data at %#x: %w", va, err)
				}
				r.recvd += int64(k * ps)
				r.skip += int64(k)
				j += k
				continue
			}
		}
		// a run of pages to copy, as far as the chunk holds and up to the next known duplicate
		k := 1
		for j+k < n && (r.used+(k+1)*ps) <= len(r.chunk) {
			if !shmem && r.seen != nil {
				if _, dup := r.dupAt(va + uint64(k*ps)); dup {
					break
				}
			}
			k++
		}
		if r.used+k*ps > len(r.chunk) {
			if err := r.flush(true); err != nil {
				return err
			}
			continue
		}
		buf := r.chunk[r.used : r.used+k*ps]
		if err := r.readFull(buf); err != nil {
			return fmt.Errorf("page data at %#x: %w", va, err)
		}
		r.used += k * ps
		r.recvd += int64(k * ps)
		for i := range k {
			pva := va + uint64(i*ps)
			if !shmem && r.seen != nil {
				if key, ok := r.frameAt(pva); ok {
					if _, seen := r.seen.get(key); !seen {
						r.seen.set(key, r.procIdx+1)
					}
				}
			}
			if err := r.emit(psEvent{kind: evPage, va: pva, flags: flags, first: j+i == 0, data: buf[i*ps : (i+1)*ps : (i+1)*ps]}); err != nil {
				return err
			}
		}
		j += k
	}
	return nil
}
