package critjson

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	ipc_msg "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-msg"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-sem"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-shm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/tcp-stream"
	"github.com/criukit/criukit/image"
	"google.golang.org/protobuf/proto"
)

// Keys criukit adds to crit's JSON so that nothing is lost. crit's encoder ignores them.
const (
	// ExtraRawKey holds the exact extra bytes (base64) when the crit-style "extra" view cannot
	// reproduce them (non-zero padding, lengths that disagree with the message).
	ExtraRawKey = "_extra_raw"
	// HeadKey holds the head magics (numbers) when they differ from what the magic implies.
	HeadKey = "_head"
	// FileKey and RawKey describe raw (magic-less) images: {"magic": "RAW", "file": name, "raw": base64}.
	FileKey = "file"
	RawKey  = "raw"
	// RawMagic is the "magic" of raw images in criukit JSON (crit cannot decode raw images at all).
	RawMagic = "RAW"
)

// Errors.
var (
	// ErrPages: pages-*.img holds memory pages; it is never converted to JSON (use `criukit pages`).
	ErrPages = errors.New("pages images hold raw memory and are not converted to JSON (use `criukit pages DIR --pid P --addr V --len N` to read memory)")
	// ErrFormat: the JSON is valid but does not describe a CRIU image.
	ErrFormat = errors.New("not a criukit/crit image JSON")
)

// Options select the JSON flavour.
type Options struct {
	Pretty    bool // crit --pretty / show: 4-space indentation, hex/flags/dev/ip/dict forms
	NoPayload bool // crit show --nopl: extras shown as "... <size>" (not encodable back)
}

// Marshal returns the crit JSON of img, without a trailing newline (crit adds one only on stdout).
func Marshal(img *image.Image, o Options) ([]byte, error) {
	bp := bufPool.Get().(*[]byte)
	w := &writer{pretty: o.Pretty, buf: (*bp)[:0]}
	err := marshalTo(w, img, o)
	if err == nil && cap(w.buf) > 64<<10 {
		return w.buf, nil // big document: hand the buffer over rather than copy it (and don't pool it)
	}
	var out []byte
	if err == nil {
		out = append([]byte(nil), w.buf...) // exact size: the scratch buffer goes back to the pool
	}
	*bp = w.buf[:0]
	bufPool.Put(bp)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// bufPool holds Marshal's scratch buffers: most documents are small, and a fresh buffer each call
// (zeroed, grown, collected) costs more than the copy of the result.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func marshalTo(w *writer, img *image.Image, o Options) error {
	d := img.Desc
	if d == nil {
		return fmt.Errorf("%s: %w: unknown image type", img.Name, ErrFormat)
	}
	if d.Kind == image.KindUnknown {
		return fmt.Errorf("%s: %w: the name matches no CRIU image (unknown files are not converted)", img.Name, ErrFormat)
	}
	w.open('{')
	if d.Kind == image.KindRaw {
		if d.Raw == image.RawPages {
			return fmt.Errorf("%s: %w", img.Name, ErrPages)
		}
		w.key(0, "magic")
		w.str(RawMagic)
		w.key(1, FileKey)
		w.str(filepath.Base(img.Name))
		w.key(2, RawKey)
		encodeBytes(w, img.Raw)
		w.close('}', false)
		return nil
	}
	w.key(0, "magic")
	w.str(d.Magic)
	n := 1
	if !sameHead(img.Head, defaultHead(d)) {
		w.key(n, HeadKey)
		n++
		w.open('[')
		for i, h := range img.Head {
			w.sep(i)
			w.uint(uint64(h))
		}
		w.close(']', len(img.Head) == 0)
	}
	w.key(n, "entries")
	w.open('[')
	for i, e := range img.Entries {
		w.sep(i)
		if e == nil || e.Msg == nil {
			return fmt.Errorf("%s: entry %d has no message", img.Name, i)
		}
		var xerr error
		w.message(e.Msg.ProtoReflect(), false, func(w *writer, k int) int {
			k, xerr = writeExtra(w, k, d, i, e, o)
			return k
		})
		if xerr != nil {
			return fmt.Errorf("%s: entry %d: %w", img.Name, i, xerr)
		}
	}
	w.close(']', len(img.Entries) == 0)
	w.close('}', false)
	return nil
}

func defaultHead(d *image.Desc) []uint32 {
	if d.Head == 0 {
		return []uint32{d.MagicValue}
	}
	return []uint32{d.Head, d.MagicValue}
}

func sameHead(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// hasExtra tells whether entry i of an image of type d carries an "extra" key in crit's JSON.
func hasExtra(d *image.Desc, i int, e *image.Entry) bool {
	switch d.Extra {
	case image.ExtraNone:
		return false
	case image.ExtraGhost:
		if i == 0 {
			g, ok := e.Msg.(*ghost_file.GhostFileEntry)
			return ok && !g.GetChunks()
		}
		return true
	}
	return true
}

func humanSize(n int) string {
	f := float64(n)
	for _, u := range []string{"", "K", "M", "G", "T", "P", "E", "Z"} {
		if f < 1024 {
			if f == float64(int64(f)) {
				return fmt.Sprintf("%d%sB", int64(f), u)
			}
			return fmt.Sprintf("%.1f%sB", f, u)
		}
		f /= 1024
	}
	return fmt.Sprintf("%.1fYB", f)
}

func writeExtra(w *writer, k int, d *image.Desc, i int, e *image.Entry, o Options) (int, error) {
	if !hasExtra(d, i, e) {
		if len(e.Extra) > 0 {
			w.key(k, ExtraRawKey)
			encodeBytes(w, e.Extra)
			k++
		}
		return k, nil
	}
	if o.NoPayload {
		if d.Extra == image.ExtraGhost {
			return k, nil // crit's ghost handler prints no extra with --nopl
		}
		w.key(k, "extra")
		w.str("... <" + humanSize(payloadSize(d, e)) + ">")
		return k + 1, nil
	}
	w.key(k, "extra")
	k++
	canon, err := writeExtraView(w, d, e)
	if err != nil || !bytes.Equal(canon, e.Extra) {
		w.key(k, ExtraRawKey)
		encodeBytes(w, e.Extra)
		k++
	}
	return k, nil
}

// payloadSize is what crit's extra handlers' skip() report for --nopl.
func payloadSize(d *image.Desc, e *image.Entry) int {
	switch d.Extra {
	case image.ExtraIPCSem:
		if s, ok := e.Msg.(*ipc_sem.IpcSemEntry); ok {
			return 2 * int(s.GetNsems())
		}
	case image.ExtraIPCShm:
		if s, ok := e.Msg.(*ipc_shm.IpcShmEntry); ok {
			return int(s.GetSize())
		}
	case image.ExtraIPCMsg:
		msgs, _, err := splitMsgs(e)
		if err == nil {
			n := 0
			for _, m := range msgs {
				n += m.size + len(m.text)
			}
			return n
		}
	}
	return len(e.Extra)
}

type ipcMsg struct {
	size int // payload size of the ipc_msg
	msg  *ipc_msg.IpcMsg
	text []byte
}

func roundUp(n, a int) int { return (n + a - 1) / a * a }

// splitMsgs parses an ipcns-msg extra: qnum x (u32 size, ipc_msg, mtext padded to 8).
func splitMsgs(e *image.Entry) ([]ipcMsg, []byte, error) {
	q, ok := e.Msg.(*ipc_msg.IpcMsgEntry)
	if !ok {
		return nil, nil, fmt.Errorf("not an ipc_msg_entry")
	}
	b := e.Extra
	var out []ipcMsg
	for j := 0; j < int(q.GetQnum()); j++ {
		if len(b) < 4 {
			return nil, nil, fmt.Errorf("message %d: truncated size", j)
		}
		n := int(binary.LittleEndian.Uint32(b))
		b = b[4:]
		if n > len(b) {
			return nil, nil, fmt.Errorf("message %d: truncated header", j)
		}
		m := &ipc_msg.IpcMsg{}
		if err := proto.Unmarshal(b[:n], m); err != nil {
			return nil, nil, fmt.Errorf("message %d: %v", j, err)
		}
		b = b[n:]
		sz := int(m.GetMsize())
		if roundUp(sz, 8) > len(b) {
			return nil, nil, fmt.Errorf("message %d: truncated text", j)
		}
		out = append(out, ipcMsg{size: n, msg: m, text: b[:sz]})
		b = b[roundUp(sz, 8):]
	}
	return out, b, nil
}

// writeExtraView writes crit's representation of e's extra and returns the bytes that
// representation encodes back to (compared with e.Extra to decide on _extra_raw).
func writeExtraView(w *writer, d *image.Desc, e *image.Entry) ([]byte, error) {
	x := e.Extra
	switch d.Extra {
	case image.ExtraTCPStream:
		t, _ := e.Msg.(*tcp_stream.TcpStreamEntry)
		in := min(int(t.GetInqLen()), len(x))
		w.open('{')
		w.key(0, "inq")
		encodeBytes(w, x[:in])
		w.key(1, "outq")
		encodeBytes(w, x[in:])
		w.close('}', false)
		return x, nil
	case image.ExtraIPCSem:
		s, _ := e.Msg.(*ipc_sem.IpcSemEntry)
		n := int(s.GetNsems())
		if 2*n > len(x) {
			w.open('[')
			w.close(']', true)
			return nil, fmt.Errorf("sem extra shorter than nsems")
		}
		w.open('[')
		for j := 0; j < n; j++ {
			w.sep(j)
			w.uint(uint64(binary.LittleEndian.Uint16(x[2*j:])))
		}
		w.close(']', n == 0)
		return semBytes(x[:2*n]), nil
	case image.ExtraIPCMsg:
		msgs, rest, err := splitMsgs(e)
		w.open('[')
		if err != nil {
			w.close(']', true)
			return nil, err
		}
		for j, m := range msgs {
			w.sep(2 * j)
			w.message(m.msg.ProtoReflect(), false, nil)
			w.sep(2*j + 1)
			encodeBytes(w, m.text)
		}
		w.close(']', len(msgs) == 0)
		if len(rest) > 0 {
			return nil, fmt.Errorf("trailing bytes")
		}
		return msgBytes(msgs), nil
	case image.ExtraIPCShm:
		s, _ := e.Msg.(*ipc_shm.IpcShmEntry)
		if s.GetInPagemaps() {
			w.str("")
			return nil, nil
		}
		n := min(int(s.GetSize()), len(x))
		encodeBytes(w, x[:n])
		return shmBytes(x[:n], int(s.GetSize())), nil
	default: // pipe data, sk queues, bpf maps, ghost contents
		encodeBytes(w, x)
		return x, nil
	}
}

func semBytes(vals []byte) []byte {
	out := make([]byte, roundUp(len(vals), 8))
	copy(out, vals)
	return out
}

func shmBytes(data []byte, size int) []byte {
	out := make([]byte, roundUp(size, 4))
	copy(out, data)
	return out
}

func msgBytes(msgs []ipcMsg) []byte {
	var out []byte
	for _, m := range msgs {
		pl, _ := proto.Marshal(m.msg)
		out = binary.LittleEndian.AppendUint32(out, uint32(len(pl)))
		out = append(out, pl...)
		t := make([]byte, roundUp(int(m.msg.GetMsize()), 8))
		copy(t, m.text)
		out = append(out, t...)
	}
	return out
}
