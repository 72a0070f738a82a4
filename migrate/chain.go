package migrate

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	pagemap "github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/internal/pageproto"
	"google.golang.org/protobuf/proto"
)

// chainWriter is the receiving page server of a round: it stores the pages that arrive with data
// in pages-<id>.img, writes every entry (stored or PE_PARENT) to pagemap-<pid>.img (or
// pagemap-shmem-<id>.img) as criu's own page server does, and links `parent` to the previous
// round's directory. Files appear under temporary names and are renamed at PS_IOV_CLOSE.
type chainWriter struct {
	dir    string
	parent string // relative path of the parent round ("" for none)
	nextID uint32
	cur    *pmWriter
	done   []string // temp -> final renames
	Stored int64    // pages stored
	Parent int64    // pages as PE_PARENT
	Bytes  int64    // protocol bytes received
}

type pmWriter struct {
	name    string
	pagesID uint32
	pages   *os.File
	bw      *bufio.Writer
	ents    []*pagemap.PagemapEntry
}

func newChainWriter(dir, parent string) (*chainWriter, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &chainWriter{dir: dir, parent: parent, nextID: 1}, nil
}

type countReader struct {
	r io.Reader
	n *int64
}

func (c countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	*c.n += int64(n)
	return n, err
}

// serve runs one page-server session on c (until PS_IOV_CLOSE has been answered).
func (w *chainWriter) serve(c io.ReadWriter) (err error) {
	r := countReader{c, &w.Bytes}
	defer func() {
		if err != nil {
			w.abort()
		}
	}()
	var hb [pageproto.HeaderSize]byte
	ps := uint64(os.Getpagesize())
	for {
		h, err := pageproto.Read(r, &hb)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%w: connection closed without PS_IOV_CLOSE", ErrProtocol)
			}
			return err
		}
		switch h.Cmd {
		case pageproto.IovOpen, pageproto.IovOpen2:
			if err := w.finishCur(); err != nil {
				return err
			}
			var name string
			switch h.Type() {
			case pageproto.TypePid:
				name = fmt.Sprintf("pagemap-%d.img", h.ID())
			case pageproto.TypeShmem:
				name = fmt.Sprintf("pagemap-shmem-%d.img", h.ID())
			default:
				return fmt.Errorf("%w: unknown pagemap type in dst_id %#x", ErrProtocol, h.DstID)
			}
			id := w.nextID
			w.nextID++
			f, err := os.OpenFile(filepath.Join(w.dir, fmt.Sprintf("pages-%d.img", id)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			w.cur = &pmWriter{name: name, pagesID: id, pages: f, bw: bufio.NewWriterSize(f, 1<<20)}
			if h.Cmd == pageproto.IovOpen2 {
				if _, err := c.Write([]byte{0}); err != nil { // criu must not skip pages itself
					return err
				}
			}
		case pageproto.IovParent:
			if _, err := c.Write(make([]byte, 4)); err != nil {
				return err
			}
		case pageproto.IovAdd, pageproto.IovAddF, pageproto.IovHole:
			if w.cur == nil {
				return fmt.Errorf("%w: pages before PS_IOV_OPEN2 (%s)", ErrProtocol, h)
			}
			if h.Nr == 0 || h.Nr > 1<<36 {
				return fmt.Errorf("%w: bad page count (%s)", ErrProtocol, h)
			}
			flags := h.EffFlags()
			e := &pagemap.PagemapEntry{Vaddr: proto.Uint64(h.Vaddr), CompatNrPages: proto.Uint32(uint32(min(h.Nr, 0xffffffff))),
				Flags: proto.Uint32(flags), NrPages: proto.Uint64(h.Nr)}
			if flags&image.PEParent != 0 {
				if w.parent == "" {
					return fmt.Errorf("%w: PE_PARENT pages at %#x in a round without parent", ErrProtocol, h.Vaddr)
				}
				e.InParent = proto.Bool(true)
				w.Parent += int64(h.Nr)
			}
			w.cur.add(e)
			if flags&image.PEPresent != 0 {
				if _, err := io.CopyN(w.cur.bw, r, int64(h.Nr*ps)); err != nil {
					return fmt.Errorf("page data at %#x: %w", h.Vaddr, err)
				}
				w.Stored += int64(h.Nr)
			}
		case pageproto.IovClose, pageproto.IovForceClose:
			if err := w.finishCur(); err != nil {
				return err
			}
			if w.parent != "" {
				tmp := filepath.Join(w.dir, ".parent.tmp")
				os.Remove(tmp)
				if err := os.Symlink(w.parent, tmp); err != nil {
					return err
				}
				w.done = append(w.done, tmp)
			}
			for _, t := range w.done {
				final := filepath.Join(filepath.Dir(t), finalName(filepath.Base(t)))
				if err := os.Rename(t, final); err != nil {
					return err
				}
			}
			w.done = nil
			if _, err := c.Write(make([]byte, 4)); err != nil {
				return err
			}
			return nil
		case pageproto.IovGet:
			return fmt.Errorf("%w: PS_IOV_GET (lazy pages) is not supported", ErrProtocol)
		default:
			return fmt.Errorf("%w: unknown command (%s)", ErrProtocol, h)
		}
	}
}

// finalName maps ".NAME.tmp" to NAME.
func finalName(tmp string) string {
	if len(tmp) > 5 && tmp[0] == '.' && tmp[len(tmp)-4:] == ".tmp" {
		return tmp[1 : len(tmp)-4]
	}
	return tmp
}

// add appends e, merging it with the previous entry when contiguous with the same flags.
func (p *pmWriter) add(e *pagemap.PagemapEntry) {
	if k := len(p.ents); k > 0 {
		l := p.ents[k-1]
		ln := l.GetNrPages()
		if l.GetFlags() == e.GetFlags() && l.GetVaddr()+ln*uint64(os.Getpagesize()) == e.GetVaddr() && ln+e.GetNrPages() <= 0xffffffff {
			n := ln + e.GetNrPages()
			l.NrPages, l.CompatNrPages = proto.Uint64(n), proto.Uint32(uint32(n))
			return
		}
	}
	p.ents = append(p.ents, e)
}

func (w *chainWriter) finishCur() error {
	p := w.cur
	if p == nil {
		return nil
	}
	w.cur = nil
	if err := p.bw.Flush(); err != nil {
		p.pages.Close()
		return err
	}
	if err := p.pages.Close(); err != nil {
		return err
	}
	tmp := filepath.Join(w.dir, "."+p.name+".tmp")
	if err := writePagemap(tmp, p.name, p.pagesID, p.ents); err != nil {
		return fmt.Errorf("write %s: %w", p.name, err)
	}
	w.done = append(w.done, tmp)
	return nil
}

func (w *chainWriter) abort() {
	if w.cur != nil {
		w.cur.pages.Close()
		w.cur = nil
	}
	for _, t := range w.done {
		os.Remove(t)
	}
	w.done = nil
}
