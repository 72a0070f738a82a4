package image

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	ghost_file "github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	"google.golang.org/protobuf/proto"
)

// UnknownDesc is the Desc of files whose name matches no CRIU image (kept as opaque bytes).
var UnknownDesc = &Desc{Name: "UNKNOWN", Kind: KindUnknown}

var order = binary.NativeEndian // CRIU writes sizes and magics in host byte order

// Required proto2 fields are checked both ways, as CRIU (protobuf-c) does: an entry missing one
// could not be restored, and a file of zeros would otherwise read as empty entries.
var unmarshalOpts = proto.UnmarshalOptions{}
var marshalOpts = proto.MarshalOptions{}

// Reader streams the entries of one image file. Extras are never read unless asked for: Next skips
// them (seeking when the source is a file), Extra returns a reader over the current entry's extra.
type Reader struct {
	name   string
	desc   *Desc
	head   []uint32
	closer io.Closer

	br     *bufio.Reader
	under  io.Reader   // what br reads
	seeker io.Seeker   // under, when it can seek
	ra     io.ReaderAt // random access to the image (offset 0 = start of the image), or nil
	size   int64       // image size, -1 if unknown
	pos    int64       // offset of the next byte br returns

	index       int
	empty       int // zero-length entries so far (MaxEmptyEntries)
	ghostChunks bool
	done        bool
	err         error

	scratch  []byte
	hdr      [4]byte // u32 read buffer (a local array would escape to the heap through io.ReadFull)
	extraOff int64
	extraLen int64 // -1: to EOF
	extraMem []byte
	extraRd  *countReader
	inExtra  bool
}

// Open opens an image file for streaming. Close it when done.
// Only regular files are read: a directory, FIFO, device or socket is refused (ErrNotRegular) and a
// FIFO is never opened (opening one blocks until a writer comes).
func Open(path string) (*Reader, error) {
	return OpenAs(path, filepath.Base(path))
}

// OpenAs is Open for a file whose type is given by name (a CRIU base name) rather than its own name.
func OpenAs(path, name string) (*Reader, error) {
	f, st, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	r, err := newReader(io.NewSectionReader(f, 0, st.Size()), filepath.Base(name), st.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	r.closer = f
	return r, nil
}

// openRegular opens path for reading if it is a regular file (non-blocking open, then fstat: a FIFO
// swapped in between is not waited for).
func openRegular(path string) (*os.File, os.FileInfo, error) {
	if st, err := os.Stat(path); err != nil {
		return nil, nil, err
	} else if err := checkRegular(path, st); err != nil {
		return nil, nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err == nil {
		err = checkRegular(path, st)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, st, nil
}

func checkRegular(path string, st os.FileInfo) error {
	m := st.Mode()
	switch {
	case m.IsRegular():
		return nil
	case m.IsDir():
		return fmt.Errorf("%s: %w: it is a directory, not an image file (list a dump with `criukit ls DIR`)", path, ErrNotRegular)
	case m&os.ModeNamedPipe != 0:
		return fmt.Errorf("%s: %w: it is a FIFO (not opened: an open would wait for a writer; to decode a stream, pipe it to stdin)", path, ErrNotRegular)
	case m&os.ModeSocket != 0:
		return fmt.Errorf("%s: %w: it is a socket", path, ErrNotRegular)
	case m&os.ModeDevice != 0:
		return fmt.Errorf("%s: %w: it is a device node", path, ErrNotRegular)
	}
	return fmt.Errorf("%s: %w (%v)", path, ErrNotRegular, m.Type())
}

// NewReader reads the head of the image called name (base name decides the type) from r. When r is
// also an io.ReaderAt and io.Seeker (an *os.File, *bytes.Reader...) extras are skipped by seeking and
// Extra returns *io.SectionReader values.
func NewReader(r io.Reader, name string) (*Reader, error) {
	if ra, ok := r.(io.ReaderAt); ok {
		if s, ok := r.(io.Seeker); ok {
			cur, err1 := s.Seek(0, io.SeekCurrent)
			end, err2 := s.Seek(0, io.SeekEnd)
			if err1 == nil && err2 == nil {
				if _, err := s.Seek(cur, io.SeekStart); err != nil {
					return nil, err
				}
				return newReader(io.NewSectionReader(ra, cur, end-cur), filepath.Base(name), end-cur)
			}
		}
	}
	return newReader(r, filepath.Base(name), -1)
}

func newReader(r io.Reader, name string, size int64) (*Reader, error) {
	rd := &Reader{name: name, size: size, under: r, extraLen: -2}
	bs := 64 << 10
	if size >= 0 && size < int64(bs) {
		bs = int(size) + 16 // small files: don't allocate 64 KiB
	}
	rd.br = bufio.NewReaderSize(r, bs)
	if s, ok := r.(*io.SectionReader); ok {
		rd.seeker = s
		rd.ra = s
	}
	d, err := Classify(name)
	if err != nil {
		d = UnknownDesc
	}
	rd.desc = d
	if d.Kind == KindRaw || d.Kind == KindUnknown {
		return rd, nil
	}
	if err := rd.readHead(); err != nil {
		return nil, err
	}
	return rd, nil
}

func (r *Reader) readHead() error {
	d := r.desc
	a, n, err := r.u32()
	if err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			r.done = true // empty file: no head, no entries
			return nil
		}
		return ferr(r.name, 0, -1, ErrTruncated, "file ends inside the magic")
	}
	switch {
	case d.Head != 0 && (a == MagicImgCommon || a == MagicImgService):
		b, _, err := r.u32()
		if err != nil {
			return ferr(r.name, 4, -1, ErrTruncated, "file ends inside the type magic")
		}
		if b != d.MagicValue {
			return ferr(r.name, 4, -1, ErrBadMagic, "found %#x (%s), %s needs %#x (%s)", b, orUnknown(MagicName(b)), d.Pattern, d.MagicValue, d.Magic)
		}
		r.head = []uint32{a, b}
	case a == d.MagicValue:
		r.head = []uint32{a} // inventory, or images v1 without the common head
	default:
		return ferr(r.name, 0, -1, ErrBadMagic, "found %#x (%s), %s needs %#x (%s)", a, orUnknown(MagicName(a)), d.Pattern, d.MagicValue, d.Magic)
	}
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown magic"
	}
	return s
}

// Name returns the base name of the image.
func (r *Reader) Name() string { return r.name }

// Desc returns the image type (UnknownDesc for unknown names).
func (r *Reader) Desc() *Desc { return r.desc }

// Head returns the magics at the start of the file (empty for raw files).
func (r *Reader) Head() []uint32 { return r.head }

// Size returns the image size in bytes, or -1 when the source is a plain stream.
func (r *Reader) Size() int64 { return r.size }

// Close closes the file opened by Open (no-op for NewReader).
func (r *Reader) Close() error {
	if r.closer != nil {
		return r.closer.Close()
	}
	return nil
}

func (r *Reader) u32() (uint32, int, error) {
	n, err := io.ReadFull(r.br, r.hdr[:])
	r.pos += int64(n)
	if err != nil {
		return 0, n, err
	}
	return order.Uint32(r.hdr[:]), n, nil
}

// readN reads n bytes from br, growing the buffer only as data arrives.
func (r *Reader) readN(n int64) ([]byte, error) {
	b, err := readFullN(r.br, n)
	r.pos += int64(len(b))
	return b, err
}

// readPayload reads a protobuf payload into a reused buffer (Unmarshal copies what it keeps).
func (r *Reader) readPayload(sz uint32) ([]byte, error) {
	if sz > 1<<20 {
		return r.readN(int64(sz))
	}
	if cap(r.scratch) < int(sz) {
		r.scratch = make([]byte, sz, max(sz, 512))
	}
	b := r.scratch[:sz]
	n, err := io.ReadFull(r.br, b)
	r.pos += int64(n)
	if err == io.EOF && sz > 0 {
		err = io.ErrUnexpectedEOF
	}
	return b[:n], err
}

func readFullN(rd io.Reader, n int64) ([]byte, error) {
	if n <= 1<<20 {
		b := make([]byte, n)
		m, err := io.ReadFull(rd, b)
		if err == io.EOF && n > 0 {
			err = io.ErrUnexpectedEOF
		}
		return b[:m], err
	}
	var buf bytes.Buffer
	m, err := io.CopyN(&buf, rd, n)
	if err == io.EOF && m < n {
		err = io.ErrUnexpectedEOF
	}
	return buf.Bytes(), err
}

func (r *Reader) skip(n int64) error {
	if n <= 0 {
		return nil
	}
	if b := int64(r.br.Buffered()); n > b && r.seeker != nil {
		if r.size >= 0 && r.pos+n > r.size {
			return io.ErrUnexpectedEOF
		}
		if _, err := r.seeker.Seek(r.pos+n, io.SeekStart); err != nil {
			return err
		}
		r.br.Reset(r.under)
		r.pos += n
		return nil
	}
	m, err := io.CopyN(io.Discard, r.br, n)
	r.pos += m
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// countReader reads the current extra from the shared buffered reader and counts what was consumed.
type countReader struct {
	r     *Reader
	left  int64 // -1: to EOF
	stale bool
}

func (c *countReader) Read(p []byte) (int, error) {
	if c.stale {
		return 0, errors.New("image: extra reader used after Next")
	}
	if c.left == 0 {
		return 0, io.EOF
	}
	if c.left > 0 && int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.br.Read(p)
	c.r.pos += int64(n)
	if c.left > 0 {
		c.left -= int64(n)
		if err == io.EOF && c.left > 0 {
			err = ferr(c.r.name, c.r.pos, c.r.index-1, ErrTruncated, "extra ends %d bytes early", c.left)
		}
	}
	return n, err
}

// finishExtra skips what the caller did not read of the previous entry's extra.
func (r *Reader) finishExtra() error {
	if !r.inExtra {
		return nil
	}
	r.inExtra = false
	var err error
	switch {
	case r.extraMem != nil:
		// already consumed from br
	case r.extraRd != nil:
		r.extraRd.stale = true
		if r.extraRd.left < 0 {
			_, err = io.Copy(io.Discard, r.br)
			r.done = true
		} else {
			err = r.skip(r.extraRd.left)
		}
	default:
		if r.extraLen < 0 {
			r.done = true
			return nil
		}
		err = r.skip(r.extraLen)
	}
	r.extraRd, r.extraMem = nil, nil
	if err != nil {
		return ferr(r.name, r.pos, r.index-1, ErrTruncated, "extra of %d bytes: %v", r.extraLen, err)
	}
	return nil
}

// Next returns the next entry, without its extra (Entry.Extra is nil, Entry.ExtraLen is set; read the
// extra with Extra before calling Next again). It returns io.EOF after the last entry, and at once for
// raw and unknown files. Errors are *FormatError values.
func (r *Reader) Next() (*Entry, error) {
	return r.nextEntry(false)
}

// Skip moves past the next entry walking the framing only: payloads of images without extras are
// neither read into memory nor parsed (Entry.Msg is nil then; Offset and ExtraLen are set). It returns
// io.EOF after the last entry. Counting entries with Skip costs no memory whatever the file holds.
func (r *Reader) Skip() (*Entry, error) {
	return r.nextEntry(true)
}

func (r *Reader) nextEntry(skip bool) (*Entry, error) {
	if r.err != nil {
		return nil, r.err
	}
	e, err := r.next(skip)
	if err != nil {
		r.err = err
		return nil, err
	}
	return e, nil
}

func (r *Reader) next(skip bool) (*Entry, error) {
	if r.desc.Kind == KindRaw || r.desc.Kind == KindUnknown {
		return nil, io.EOF
	}
	if err := r.finishExtra(); err != nil {
		return nil, err
	}
	r.extraMem, r.extraRd = nil, nil
	if r.done {
		return nil, io.EOF
	}
	off := r.pos
	idx := r.index
	sz, n, err := r.u32()
	if err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			r.done = true
			return nil, io.EOF
		}
		return nil, ferr(r.name, off, idx, ErrTruncated, "file ends inside the size of entry %d (%d of 4 bytes)", idx, n)
	}
	if sz > MaxEntrySize {
		return nil, ferr(r.name, off, idx, ErrTooLarge, "size %d is above the %d bytes limit (garbage or wrong file?)", sz, MaxEntrySize)
	}
	if r.size >= 0 && r.pos+int64(sz) > r.size {
		return nil, ferr(r.name, off, idx, ErrTruncated, "entry needs %d bytes, only %d left in the file", sz, r.size-r.pos)
	}
	if sz == 0 {
		if r.empty++; r.empty > MaxEmptyEntries {
			return nil, ferr(r.name, off, idx, ErrBadPayload, "more than %d empty entries: the rest of the file is zeros, not CRIU entries", MaxEmptyEntries)
		}
	}
	if skip && r.desc.Extra == ExtraNone {
		if err := r.skip(int64(sz)); err != nil {
			return nil, ferr(r.name, off, idx, ErrTruncated, "entry needs %d bytes: %v", sz, err)
		}
		r.index++
		r.extraLen, r.inExtra = 0, false
		return &Entry{Offset: off}, nil
	}
	payload, err := r.readPayload(sz)
	if err != nil {
		return nil, ferr(r.name, off, idx, ErrTruncated, "entry needs %d bytes, got %d", sz, len(payload))
	}
	msg := r.desc.MessageFor(idx)
	if err := unmarshalOpts.Unmarshal(payload, msg); err != nil {
		return nil, ferr(r.name, off, idx, ErrBadPayload, "%s: %v", msg.ProtoReflect().Descriptor().FullName(), err)
	}
	r.index++
	e := &Entry{Offset: off, Msg: msg}

	// Work out the extra.
	var xlen int64
	switch r.desc.Extra {
	case ExtraIPCMsg:
		mem, err := r.readIPCMsgs(msg)
		if err != nil {
			return nil, err
		}
		r.extraMem = mem
		xlen = int64(len(mem))
	case ExtraGhost:
		if g, ok := msg.(*ghost_file.GhostFileEntry); ok {
			if g.GetChunks() {
				r.ghostChunks = true
				xlen = 0
			} else if r.size >= 0 {
				xlen = r.size - r.pos
			} else {
				xlen = -1
			}
		} else if c, ok := msg.(*ghost_file.GhostChunkEntry); ok {
			xlen = int64(c.GetLen())
			if xlen < 0 {
				return nil, ferr(r.name, off, idx, ErrTooLarge, "chunk len %d", c.GetLen())
			}
		}
	default:
		xlen, err = extraLen(r.desc.Extra, msg)
		if err != nil {
			return nil, ferr(r.name, off, idx, ErrExtraMismatch, "%v", err)
		}
	}
	if r.size >= 0 && xlen > 0 && r.extraMem == nil && xlen > r.size-r.pos {
		return nil, ferr(r.name, r.pos, idx, ErrTruncated, "extra needs %d bytes, only %d left in the file", xlen, r.size-r.pos)
	}
	r.extraOff = r.pos
	if r.extraMem != nil {
		r.extraOff = r.pos - xlen
	}
	r.extraLen = xlen
	r.inExtra = xlen != 0
	e.ExtraLen = xlen
	return e, nil
}

// Extra returns a reader over the extra bytes of the entry last returned by Next (empty when it has
// none). For files (Open, or NewReader over an io.ReaderAt+io.Seeker) it is an *io.SectionReader that
// stays valid after Next; otherwise it must be read before the next call to Next.
func (r *Reader) Extra() io.Reader {
	if !r.inExtra && r.extraMem == nil {
		return bytes.NewReader(nil)
	}
	if r.extraMem != nil {
		return bytes.NewReader(r.extraMem)
	}
	if r.ra != nil {
		n := r.extraLen
		if n < 0 {
			n = r.size - r.extraOff
		}
		return io.NewSectionReader(r.ra, r.extraOff, n)
	}
	if r.extraRd == nil {
		r.extraRd = &countReader{r: r, left: r.extraLen}
	}
	return r.extraRd
}

// Raw returns the content of a raw or unknown file (the whole file). For files it is an
// *io.SectionReader.
func (r *Reader) Raw() io.Reader {
	if r.ra != nil {
		return io.NewSectionReader(r.ra, 0, r.size)
	}
	return r.br
}

// readIPCMsgs reads the qnum messages following an ipc_msg_entry, returning their exact bytes.
func (r *Reader) readIPCMsgs(m proto.Message) ([]byte, error) {
	qnum := ipcQnum(m)
	var buf bytes.Buffer
	for i := uint32(0); i < qnum; i++ {
		off := r.pos
		sz, _, err := r.u32()
		if err != nil {
			return nil, ferr(r.name, off, r.index-1, ErrTruncated, "message %d of %d: file ends inside its size", i, qnum)
		}
		if sz > MaxEntrySize {
			return nil, ferr(r.name, off, r.index-1, ErrTooLarge, "message %d of %d: size %d", i, qnum, sz)
		}
		if r.size >= 0 && r.pos+int64(sz) > r.size {
			return nil, ferr(r.name, off, r.index-1, ErrTruncated, "message %d of %d: size %d, %d bytes left", i, qnum, sz, r.size-r.pos)
		}
		p, err := r.readN(int64(sz))
		if err != nil {
			return nil, ferr(r.name, off, r.index-1, ErrTruncated, "message %d of %d", i, qnum)
		}
		msize, err := ipcMsize(p)
		if err != nil {
			return nil, ferr(r.name, off, r.index-1, ErrBadPayload, "message %d of %d: %v", i, qnum, err)
		}
		tl := roundUp(int64(msize), 8)
		if tl > int64(MaxEntrySize) || (r.size >= 0 && r.pos+tl > r.size) {
			return nil, ferr(r.name, r.pos, r.index-1, ErrTruncated, "message %d of %d: text of %d bytes", i, qnum, msize)
		}
		t, err := r.readN(tl)
		if err != nil {
			return nil, ferr(r.name, r.pos, r.index-1, ErrTruncated, "message %d of %d: text of %d bytes", i, qnum, msize)
		}
		var sb [4]byte
		order.PutUint32(sb[:], sz)
		buf.Write(sb[:])
		buf.Write(p)
		buf.Write(t)
	}
	if buf.Len() == 0 {
		return nil, nil
	}
	return buf.Bytes(), nil
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }
