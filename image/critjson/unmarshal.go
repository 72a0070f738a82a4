package critjson

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	ipc_msg "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-msg"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-sem"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-shm"
	"github.com/criukit/criukit/image"
	"google.golang.org/protobuf/proto"
)

// Unmarshal parses crit (or criukit) JSON back into an image. name is the file name the image
// will get (may be ""); it picks the image type when several share a magic (PAGEMAP is used by
// pagemap-* and pagemap-shmem-*) and is required for nothing else.
func Unmarshal(data []byte, name string) (*image.Image, error) {
	img, err := unmarshalStream(data, name)
	if err == errNotStreamable {
		img, err = unmarshalTree(data, name)
	}
	if err != nil {
		return nil, err
	}
	return splitShm(img)
}

// splitShm turns back into entries what crit 3.17 decodes as the "extra" of an in_pagemaps SysV shm
// segment: crit reads the rest of ipcns-shm.img (the following segments' entries) as that extra, so
// its JSON of three segments has one entry whose extra holds the other two. Dropping that extra
// would lose the segments; the bytes are parsed as the entries they are, or refused.
func splitShm(img *image.Image) (*image.Image, error) {
	if img.Desc == nil || img.Desc.Extra != image.ExtraIPCShm {
		return img, nil
	}
	var out []*image.Entry
	for i, e := range img.Entries {
		out = append(out, e)
		s, ok := e.Msg.(*ipc_shm.IpcShmEntry)
		if !ok || !s.GetInPagemaps() || len(e.Extra) == 0 {
			continue
		}
		var head []byte
		for _, m := range image.DefaultHead(img.Desc) {
			head = binary.NativeEndian.AppendUint32(head, m)
		}
		sub, err := image.Decode(bytes.NewReader(append(head, e.Extra...)), "ipcns-shm-0.img")
		if err != nil {
			return nil, fmt.Errorf("entries[%d].extra: the segment's pages are in pagemaps (in_pagemaps), so its extra can only be the following entries (as crit 3.17 decodes them), and it is not: %w", i, err)
		}
		e.Extra = nil
		out = append(out, sub.Entries...)
	}
	img.Entries = out
	return img, nil
}

// parseHead reads the "_head" array of u32 numbers.
func parseHead(h any) ([]uint32, error) {
	arr, ok := h.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: %q must be an array of numbers", ErrFormat, HeadKey)
	}
	out := []uint32{}
	for _, x := range arr {
		n, ok := numText(x)
		u, err := strconv.ParseUint(n, 10, 32)
		if !ok || err != nil {
			return nil, fmt.Errorf("%w: %q must be an array of u32 numbers", ErrFormat, HeadKey)
		}
		out = append(out, uint32(u))
	}
	return out, nil
}

// unmarshalTree decodes any key order through a generic JSON tree.
func unmarshalTree(data []byte, name string) (*image.Image, error) {
	v, err := parseJSON(data)
	if err != nil {
		return nil, err
	}
	top, ok := v.(object)
	if !ok {
		return nil, fmt.Errorf("%w: top level is %s, want an object with \"magic\" and \"entries\"", ErrFormat, typeName(v))
	}
	magic, ok := top["magic"].(string)
	if !ok {
		return nil, fmt.Errorf("%w: no \"magic\" string", ErrFormat)
	}
	if magic == RawMagic {
		return unmarshalRaw(top, name)
	}
	d, err := descFor(magic, name)
	if err != nil {
		return nil, err
	}
	img := &image.Image{Name: name, Desc: d, Head: defaultHead(d)}
	if h, ok := top[HeadKey]; ok {
		if img.Head, err = parseHead(h); err != nil {
			return nil, err
		}
	}
	ents, ok := top["entries"].([]any)
	if !ok {
		return nil, fmt.Errorf("%w: no \"entries\" array", ErrFormat)
	}
	for i, ev := range ents {
		obj, ok := ev.(object)
		if !ok {
			return nil, fmt.Errorf("entries[%d]: want an object, got %s", i, typeName(ev))
		}
		msg := d.MessageFor(i)
		path := "entries[" + strconv.Itoa(i) + "]"
		if err := fillMessage(msg.ProtoReflect(), obj, path, "extra", ExtraRawKey); err != nil {
			return nil, err
		}
		e := &image.Entry{Msg: msg}
		if err := readExtra(d, i, e, obj, path); err != nil {
			return nil, err
		}
		img.Entries = append(img.Entries, e)
	}
	return img, nil
}

func descFor(magic, name string) (*image.Desc, error) {
	if name != "" {
		if d, err := image.Classify(name); err == nil && d != nil && d.Magic == magic {
			return d, nil
		}
	}
	for _, d := range image.DescsByMagic(magic) {
		if magic != "" && d.Kind != image.KindRaw && d.Kind != image.KindUnknown {
			return d, nil
		}
	}
	return nil, fmt.Errorf("%w: unknown magic %q", ErrFormat, magic)
}

func unmarshalRaw(top object, name string) (*image.Image, error) {
	file, _ := top[FileKey].(string)
	if name == "" {
		name = file
	}
	if name == "" {
		return nil, fmt.Errorf("%w: raw image without %q name", ErrFormat, FileKey)
	}
	d, err := image.Classify(name)
	if err != nil {
		return nil, err
	}
	if d.Kind != image.KindRaw && d.Kind != image.KindUnknown {
		return nil, fmt.Errorf("%w: %s is not a raw image name", ErrFormat, name)
	}
	if d.Raw == image.RawPages {
		return nil, fmt.Errorf("%s: %w", name, ErrPages)
	}
	s, ok := top[RawKey].(string)
	if !ok {
		return nil, fmt.Errorf("%w: raw image without %q base64 string", ErrFormat, RawKey)
	}
	b, err := decodeBytes(s)
	if err != nil {
		return nil, fmt.Errorf("%q: %v", RawKey, err)
	}
	return &image.Image{Name: name, Desc: d, Raw: b}, nil
}

func b64Field(obj object, key, path string) ([]byte, bool, error) {
	v, ok := obj[key]
	if !ok {
		return nil, false, nil
	}
	s, ok := v.(string)
	if !ok {
		return nil, true, fmt.Errorf("%s.%s: want a base64 string, got %s", path, key, typeName(v))
	}
	b, err := decodeBytes(s)
	if err != nil {
		return nil, true, fmt.Errorf("%s.%s: %v", path, key, err)
	}
	return b, true, nil
}

// readExtra sets e.Extra from "_extra_raw" or from crit's "extra" view.
func readExtra(d *image.Desc, i int, e *image.Entry, obj object, path string) error {
	if raw, ok, err := b64Field(obj, ExtraRawKey, path); ok || err != nil {
		e.Extra = raw
		return err
	}
	xv, ok := obj["extra"]
	if !ok || !hasExtra(d, i, e) {
		return nil
	}
	xp := path + ".extra"
	switch d.Extra {
	case image.ExtraTCPStream:
		o, ok := xv.(object)
		if !ok {
			return fmt.Errorf("%s: want {\"inq\": ..., \"outq\": ...}", xp)
		}
		in, _, err := b64Field(o, "inq", xp)
		if err != nil {
			return err
		}
		out, _, err := b64Field(o, "outq", xp)
		if err != nil {
			return err
		}
		e.Extra = append(in, out...)
	case image.ExtraIPCSem:
		arr, ok := xv.([]any)
		if !ok {
			return fmt.Errorf("%s: want an array of semaphore values", xp)
		}
		s := e.Msg.(*ipc_sem.IpcSemEntry)
		if len(arr) != int(s.GetNsems()) {
			return fmt.Errorf("%s: %d values for nsems %d", xp, len(arr), s.GetNsems())
		}
		var vals []byte
		for j, x := range arr {
			n, ok := numText(x)
			u, err := strconv.ParseUint(n, 10, 16)
			if !ok || err != nil {
				return fmt.Errorf("%s[%d]: want a u16 number", xp, j)
			}
			vals = binary.LittleEndian.AppendUint16(vals, uint16(u))
		}
		e.Extra = semBytes(vals)
	case image.ExtraIPCMsg:
		arr, ok := xv.([]any)
		if !ok || len(arr)%2 != 0 {
			return fmt.Errorf("%s: want an array of (message object, base64 text) pairs", xp)
		}
		var msgs []ipcMsg
		for j := 0; j < len(arr); j += 2 {
			o, ok := arr[j].(object)
			if !ok {
				return fmt.Errorf("%s[%d]: want an ipc_msg object", xp, j)
			}
			m := &ipc_msg.IpcMsg{}
			if err := fillMessage(m.ProtoReflect(), o, fmt.Sprintf("%s[%d]", xp, j)); err != nil {
				return err
			}
			s, ok := arr[j+1].(string)
			if !ok {
				return fmt.Errorf("%s[%d]: want a base64 string", xp, j+1)
			}
			t, err := decodeBytes(s)
			if err != nil {
				return fmt.Errorf("%s[%d]: %v", xp, j+1, err)
			}
			if len(t) > int(m.GetMsize()) {
				t = t[:m.GetMsize()] // crit writes data[:msize]
			}
			msgs = append(msgs, ipcMsg{msg: m, text: t})
		}
		e.Extra = msgBytes(msgs)
	case image.ExtraIPCShm:
		s := e.Msg.(*ipc_shm.IpcShmEntry)
		if s.GetInPagemaps() {
			// No data of its own; crit 3.17 puts the following entries here (see splitShm).
			if str, ok := xv.(string); ok && str != "" {
				b, err := decodeBytes(str)
				if err != nil {
					return fmt.Errorf("%s: %v", xp, err)
				}
				e.Extra = b
			}
			return nil
		}
		str, ok := xv.(string)
		if !ok {
			return fmt.Errorf("%s: want a base64 string", xp)
		}
		b, err := decodeBytes(str)
		if err != nil {
			return fmt.Errorf("%s: %v", xp, err)
		}
		if len(b) > int(s.GetSize()) {
			b = b[:s.GetSize()]
		}
		e.Extra = shmBytes(b, int(s.GetSize()))
	default:
		str, ok := xv.(string)
		if !ok {
			return fmt.Errorf("%s: want a base64 string", xp)
		}
		b, err := decodeBytes(str)
		if err != nil {
			return fmt.Errorf("%s: %v", xp, err)
		}
		e.Extra = b
	}
	return nil
}

var (
	_ = proto.Marshal
	_ = ghost_file.GhostFileEntry{}
)
