package image

import (
	"fmt"
	"io"
	"math"

	ghost_file "github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	"google.golang.org/protobuf/proto"
)

// Writer writes an image entry by entry, streaming extras (for rewriting big ghost files without
// holding them in memory). It applies the same checks as Image.Encode.
type Writer struct {
	w      io.Writer
	name   string
	desc   *Desc
	off    int64
	index  int
	closed bool // an unchunked ghost content was written: nothing may follow
}

// NewWriter writes head (DefaultHead(d) when nil) and returns a Writer for entries of type d. name
// is used in errors.
func NewWriter(w io.Writer, name string, d *Desc, head []uint32) (*Writer, error) {
	if d == nil || d.Kind == KindRaw || d.Kind == KindUnknown {
		return nil, fmt.Errorf("image %s: %w", name, ErrNotStreamable)
	}
	if head == nil {
		head = DefaultHead(d)
	}
	var b [4]byte
	for _, m := range head {
		order.PutUint32(b[:], m)
		if _, err := w.Write(b[:]); err != nil {
			return nil, err
		}
	}
	return &Writer{w: w, name: name, desc: d, off: 4 * int64(len(head))}, nil
}

// Write writes one entry with its extra bytes.
func (w *Writer) Write(msg proto.Message, extra []byte) error {
	if err := w.check(msg); err != nil {
		return err
	}
	if err := checkExtra(w.desc, w.index, msg, extra, true); err != nil {
		return &FormatError{File: w.name, Offset: w.off, Entry: w.index, Err: err}
	}
	return w.write(msg, readerOf(extra), int64(len(extra)))
}

// WriteStream writes one entry whose extra (n bytes) is copied from r. It is not available for
// ipcns-msg images (use Write).
func (w *Writer) WriteStream(msg proto.Message, r io.Reader, n int64) error {
	if err := w.check(msg); err != nil {
		return err
	}
	switch w.desc.Extra {
	case ExtraIPCMsg:
		return fmt.Errorf("image %s: WriteStream cannot check ipc message extras; use Write", w.name)
	case ExtraGhost:
		switch m := msg.(type) {
		case *ghost_file.GhostFileEntry:
			if m.GetChunks() && n != 0 {
				return ferr(w.name, w.off, w.index, ErrExtraMismatch, "chunked ghost file has content after its header")
			}
		case *ghost_file.GhostChunkEntry:
			if m.GetLen() != uint64(n) {
				return ferr(w.name, w.off, w.index, ErrExtraMismatch, "chunk len %d, extra %d bytes", m.GetLen(), n)
			}
		default:
			return ferr(w.name, w.off, w.index, ErrWrongMessage, "%T", msg)
		}
	default:
		want, err := extraLen(w.desc.Extra, msg)
		if err != nil {
			return &FormatError{File: w.name, Offset: w.off, Entry: w.index, Err: err}
		}
		if want != n {
			return ferr(w.name, w.off, w.index, ErrExtraMismatch, "message implies %d extra bytes, have %d", want, n)
		}
	}
	return w.write(msg, r, n)
}

// WriteEncoded writes one entry whose message is already encoded in payload (for hot loops that
// build entries with protowire instead of a message each). payload is not decoded again: it must
// be a valid message of the entry's type. Only for images whose entries carry no extra data, and
// not for the first entry of an image that has a head message (use Write).
func (w *Writer) WriteEncoded(payload []byte) error {
	if w.closed {
		return ferr(w.name, w.off, w.index, ErrExtraMismatch, "unchunked ghost file has entries after its content")
	}
	if w.desc.Extra != ExtraNone {
		return ferr(w.name, w.off, w.index, ErrWrongMessage, "%s entries carry extra data: use Write", w.desc.Pattern)
	}
	if w.index == 0 && w.desc.messageName(0) != w.desc.messageName(1) {
		return ferr(w.name, w.off, w.index, ErrWrongMessage, "the first entry of %s is its head: use Write", w.desc.Pattern)
	}
	if err := w.framed(payload); err != nil {
		return err
	}
	w.off += 4 + int64(len(payload))
	w.index++
	return nil
}

// framed writes an entry's u32 length and its encoded message.
func (w *Writer) framed(p []byte) error {
	if len(p) > math.MaxUint32 {
		return ferr(w.name, w.off, w.index, ErrTooLarge, "%d bytes", len(p))
	}
	var b [4]byte
	order.PutUint32(b[:], uint32(len(p)))
	if _, err := w.w.Write(b[:]); err != nil {
		return err
	}
	_, err := w.w.Write(p)
	return err
}

func (w *Writer) check(msg proto.Message) error {
	if w.closed {
		return ferr(w.name, w.off, w.index, ErrExtraMismatch, "unchunked ghost file has entries after its content")
	}
	want := w.desc.messageName(w.index)
	if msg == nil || msg.ProtoReflect().Descriptor().FullName() != want {
		return ferr(w.name, w.off, w.index, ErrWrongMessage, "%s needs %s", w.desc.Pattern, want)
	}
	return nil
}

func (w *Writer) write(msg proto.Message, r io.Reader, n int64) error {
	p, err := marshalOpts.Marshal(msg)
	if err != nil {
		return ferr(w.name, w.off, w.index, ErrBadPayload, "%v", err)
	}
	if err := w.framed(p); err != nil {
		return err
	}
	if n > 0 {
		m, err := io.CopyN(w.w, r, n)
		if err != nil {
			return ferr(w.name, w.off, w.index, ErrTruncated, "extra: copied %d of %d bytes: %v", m, n, err)
		}
	}
	if g, ok := msg.(*ghost_file.GhostFileEntry); ok && w.index == 0 && !g.GetChunks() {
		w.closed = true
	}
	w.off += 4 + int64(len(p)) + n
	w.index++
	return nil
}

type byteReader struct{ b []byte }

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func readerOf(b []byte) io.Reader { return &byteReader{b} }

// CopyGhostContent streams the content of a ghost file image (raw or chunked, holes left as they
// are in w) into w and returns the file size from the header (or the raw content length).
func CopyGhostContent(path string, w io.WriterAt) (int64, error) {
	r, err := Open(path)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	if r.Desc().Kind != KindGhost {
		return 0, fmt.Errorf("%s: %w: not a ghost file", path, ErrWrongMessage)
	}
	e, err := r.Next()
	if err != nil {
		if err == io.EOF {
			err = ferr(r.Name(), r.pos, 0, ErrTruncated, "no ghost_file_entry")
		}
		return 0, err
	}
	g, ok := e.Msg.(*ghost_file.GhostFileEntry)
	if !ok {
		return 0, ferr(r.Name(), e.Offset, 0, ErrWrongMessage, "entry 0 is not ghost_file_entry")
	}
	if !g.GetChunks() {
		n, err := io.Copy(io.NewOffsetWriter(w, 0), r.Extra())
		if err != nil {
			return n, err
		}
		return n, nil
	}
	for {
		e, err := r.Next()
		if err == io.EOF {
			return int64(g.GetSize()), nil
		}
		if err != nil {
			return 0, err
		}
		c, ok := e.Msg.(*ghost_file.GhostChunkEntry)
		if !ok {
			return 0, ferr(r.Name(), e.Offset, r.index-1, ErrWrongMessage, "not ghost_chunk_entry")
		}
		if c.GetOff() > math.MaxInt64-c.GetLen() {
			return 0, ferr(r.Name(), e.Offset, r.index-1, ErrBadPayload, "chunk offset %d overflows", c.GetOff())
		}
		if _, err := io.Copy(io.NewOffsetWriter(w, int64(c.GetOff())), r.Extra()); err != nil {
			return 0, err
		}
	}
}
