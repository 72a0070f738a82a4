package image

import (
	"bytes"
	"fmt"

	bpfmap_data "github.com/checkpoint-restore/go-criu/v8/crit/images/bpfmap-data"
	ghost_file "github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	ipc_msg "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-msg"
	ipc_sem "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-sem"
	ipc_shm "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-shm"
	pipe_data "github.com/checkpoint-restore/go-criu/v8/crit/images/pipe-data"
	sk_packet "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-packet"
	tcp_stream "github.com/checkpoint-restore/go-criu/v8/crit/images/tcp-stream"
	"google.golang.org/protobuf/proto"
)

// extraLen returns the extra length implied by msg for the fixed-layout extras.
func extraLen(x Extra, msg proto.Message) (int64, error) {
	switch x {
	case ExtraNone:
		return 0, nil
	case ExtraPipeData:
		m, ok := msg.(*pipe_data.PipeDataEntry)
		if !ok {
			return 0, fmt.Errorf("%w: want pipe_data_entry", ErrWrongMessage)
		}
		return int64(m.GetBytes()), nil
	case ExtraSkQueue:
		m, ok := msg.(*sk_packet.SkPacketEntry)
		if !ok {
			return 0, fmt.Errorf("%w: want sk_packet_entry", ErrWrongMessage)
		}
		return int64(m.GetLength()), nil
	case ExtraTCPStream:
		m, ok := msg.(*tcp_stream.TcpStreamEntry)
		if !ok {
			return 0, fmt.Errorf("%w: want tcp_stream_entry", ErrWrongMessage)
		}
		return int64(m.GetInqLen()) + int64(m.GetOutqLen()), nil
	case ExtraBPFMap:
		m, ok := msg.(*bpfmap_data.BpfmapDataEntry)
		if !ok {
			return 0, fmt.Errorf("%w: want bpfmap_data_entry", ErrWrongMessage)
		}
		return int64(m.GetKeysBytes()) + int64(m.GetValuesBytes()), nil
	case ExtraIPCSem:
		m, ok := msg.(*ipc_sem.IpcSemEntry)
		if !ok {
			return 0, fmt.Errorf("%w: want ipc_sem_entry", ErrWrongMessage)
		}
		return roundUp(2*int64(m.GetNsems()), 8), nil
	case ExtraIPCShm:
		m, ok := msg.(*ipc_shm.IpcShmEntry)
		if !ok {
			return 0, fmt.Errorf("%w: want ipc_shm_entry", ErrWrongMessage)
		}
		if m.GetInPagemaps() {
			return 0, nil
		}
		return roundUp(int64(m.GetSize()), 4), nil
	}
	return 0, fmt.Errorf("extra %v has no fixed length", x)
}

func ipcQnum(m proto.Message) uint32 {
	if q, ok := m.(*ipc_msg.IpcMsgEntry); ok {
		return q.GetQnum()
	}
	return 0
}

func ipcMsize(payload []byte) (uint32, error) {
	var m ipc_msg.IpcMsg
	if err := unmarshalOpts.Unmarshal(payload, &m); err != nil {
		return 0, err
	}
	return m.GetMsize(), nil
}

// checkExtra verifies that extra has the layout msg implies (entry i of an image of type d).
func checkExtra(d *Desc, i int, msg proto.Message, extra []byte, last bool) error {
	switch d.Extra {
	case ExtraIPCMsg:
		q, ok := msg.(*ipc_msg.IpcMsgEntry)
		if !ok {
			return fmt.Errorf("%w: want ipc_msg_entry", ErrWrongMessage)
		}
		msgs, err := parseIPCMsgs(extra)
		if err != nil {
			return err
		}
		if uint32(len(msgs)) != q.GetQnum() {
			return fmt.Errorf("%w: qnum is %d, extra holds %d messages", ErrExtraMismatch, q.GetQnum(), len(msgs))
		}
		return nil
	case ExtraGhost:
		if i == 0 {
			g, ok := msg.(*ghost_file.GhostFileEntry)
			if !ok {
				return fmt.Errorf("%w: entry 0 of a ghost file must be ghost_file_entry", ErrWrongMessage)
			}
			if g.GetChunks() && len(extra) > 0 {
				return fmt.Errorf("%w: chunked ghost file has content after its header", ErrExtraMismatch)
			}
			if !g.GetChunks() && !last {
				return fmt.Errorf("%w: unchunked ghost file has entries after its content", ErrExtraMismatch)
			}
			return nil
		}
		c, ok := msg.(*ghost_file.GhostChunkEntry)
		if !ok {
			return fmt.Errorf("%w: entry %d of a ghost file must be ghost_chunk_entry", ErrWrongMessage, i)
		}
		if uint64(len(extra)) != c.GetLen() {
			return fmt.Errorf("%w: chunk len %d, extra has %d bytes", ErrExtraMismatch, c.GetLen(), len(extra))
		}
		return nil
	}
	n, err := extraLen(d.Extra, msg)
	if err != nil {
		return err
	}
	if int64(len(extra)) != n {
		return fmt.Errorf("%w: message implies %d extra bytes, have %d", ErrExtraMismatch, n, len(extra))
	}
	return nil
}

// TCPQueues is the extra of a tcp-stream image: receive queue then send queue.
type TCPQueues struct {
	In  []byte // inq_len bytes (receive queue)
	Out []byte // outq_len bytes (send queue; its last unsq_len bytes were not sent yet)
}

// TCPStreamQueues splits the extra of a tcp_stream_entry.
func TCPStreamQueues(m *tcp_stream.TcpStreamEntry, extra []byte) (TCPQueues, error) {
	in, out := int64(m.GetInqLen()), int64(m.GetOutqLen())
	if int64(len(extra)) != in+out {
		return TCPQueues{}, fmt.Errorf("%w: inq_len %d + outq_len %d != %d", ErrExtraMismatch, in, out, len(extra))
	}
	return TCPQueues{In: extra[:in], Out: extra[in:]}, nil
}

// Bytes encodes the queues as an extra (also set inq_len/outq_len in the message to match).
func (q TCPQueues) Bytes() []byte { return append(append([]byte{}, q.In...), q.Out...) }

// SemValues decodes the semaphore values of an ipc_sem_entry's extra (padding dropped).
func SemValues(m *ipc_sem.IpcSemEntry, extra []byte) ([]uint16, error) {
	n := int64(m.GetNsems())
	if int64(len(extra)) != roundUp(2*n, 8) {
		return nil, fmt.Errorf("%w: nsems %d needs %d bytes, have %d", ErrExtraMismatch, n, roundUp(2*n, 8), len(extra))
	}
	v := make([]uint16, n)
	for i := range v {
		v[i] = order.Uint16(extra[2*i:])
	}
	return v, nil
}

// EncodeSemValues builds a sem extra: u16 values padded with zeros to 8 bytes (as CRIU writes it).
func EncodeSemValues(v []uint16) []byte {
	b := make([]byte, roundUp(2*int64(len(v)), 8))
	for i, x := range v {
		order.PutUint16(b[2*i:], x)
	}
	return b
}

// IPCMessage is one queued SysV message of an ipcns-msg extra.
type IPCMessage struct {
	Msg  *ipc_msg.IpcMsg // mtype, msize
	Text []byte          // msize bytes of mtext (padding dropped)
	Pad  []byte          // the padding bytes as found (zeros when CRIU wrote them)
}

// IPCMessages decodes the extra of an ipc_msg_entry.
func IPCMessages(m *ipc_msg.IpcMsgEntry, extra []byte) ([]IPCMessage, error) {
	msgs, err := parseIPCMsgs(extra)
	if err != nil {
		return nil, err
	}
	if uint32(len(msgs)) != m.GetQnum() {
		return nil, fmt.Errorf("%w: qnum is %d, extra holds %d messages", ErrExtraMismatch, m.GetQnum(), len(msgs))
	}
	return msgs, nil
}

func parseIPCMsgs(b []byte) ([]IPCMessage, error) {
	var out []IPCMessage
	off := 0
	for off < len(b) {
		if len(b)-off < 4 {
			return nil, fmt.Errorf("%w: message %d: size cut at extra offset %d", ErrTruncated, len(out), off)
		}
		sz := int(order.Uint32(b[off:]))
		off += 4
		if sz > len(b)-off {
			return nil, fmt.Errorf("%w: message %d: %d-byte ipc_msg at extra offset %d", ErrTruncated, len(out), sz, off)
		}
		var m ipc_msg.IpcMsg
		if err := unmarshalOpts.Unmarshal(b[off:off+sz], &m); err != nil {
			return nil, fmt.Errorf("%w: message %d: %v", ErrBadPayload, len(out), err)
		}
		off += sz
		ms := int64(m.GetMsize())
		tl := roundUp(ms, 8)
		if tl > int64(len(b)-off) {
			return nil, fmt.Errorf("%w: message %d: text of %d bytes at extra offset %d", ErrTruncated, len(out), ms, off)
		}
		out = append(out, IPCMessage{Msg: &m, Text: b[off : off+int(ms)], Pad: b[off+int(ms) : off+int(tl)]})
		off += int(tl)
	}
	return out, nil
}

// EncodeIPCMessages builds an ipcns-msg extra (set qnum to len(msgs) and msize to len(Text)). Pad is
// used when it has the right length, zeros otherwise.
func EncodeIPCMessages(msgs []IPCMessage) ([]byte, error) {
	var buf bytes.Buffer
	for i, m := range msgs {
		if m.Msg == nil {
			return nil, fmt.Errorf("message %d has no ipc_msg", i)
		}
		if int(m.Msg.GetMsize()) != len(m.Text) {
			return nil, fmt.Errorf("%w: message %d: msize %d, text %d bytes", ErrExtraMismatch, i, m.Msg.GetMsize(), len(m.Text))
		}
		p, err := marshalOpts.Marshal(m.Msg)
		if err != nil {
			return nil, err
		}
		var sb [4]byte
		order.PutUint32(sb[:], uint32(len(p)))
		buf.Write(sb[:])
		buf.Write(p)
		buf.Write(m.Text)
		pad := int(roundUp(int64(len(m.Text)), 8)) - len(m.Text)
		if len(m.Pad) == pad {
			buf.Write(m.Pad)
		} else {
			buf.Write(make([]byte, pad))
		}
	}
	return buf.Bytes(), nil
}

// ShmData returns the inline segment bytes of a legacy ipc_shm_entry (nil when in_pagemaps: current
// CRIU stores the segment in pagemap-shmem-<shmid>.img + pages).
func ShmData(m *ipc_shm.IpcShmEntry, extra []byte) ([]byte, error) {
	if m.GetInPagemaps() {
		if len(extra) != 0 {
			return nil, fmt.Errorf("%w: in_pagemaps entry with %d extra bytes", ErrExtraMismatch, len(extra))
		}
		return nil, nil
	}
	n := int64(m.GetSize())
	if int64(len(extra)) != roundUp(n, 4) {
		return nil, fmt.Errorf("%w: size %d needs %d bytes, have %d", ErrExtraMismatch, n, roundUp(n, 4), len(extra))
	}
	return extra[:n], nil
}

// EncodeShmData builds a legacy inline shm extra (padded with zeros to 4 bytes).
func EncodeShmData(data []byte) []byte {
	b := make([]byte, roundUp(int64(len(data)), 4))
	copy(b, data)
	return b
}

// BPFMapData is the extra of a bpfmap_data_entry: count keys, then count values.
type BPFMapData struct {
	Keys, Values []byte // all keys (keys_bytes), all values (values_bytes)
}

// BPFMap splits a bpfmap-data extra.
func BPFMap(m *bpfmap_data.BpfmapDataEntry, extra []byte) (BPFMapData, error) {
	k, v := int64(m.GetKeysBytes()), int64(m.GetValuesBytes())
	if int64(len(extra)) != k+v {
		return BPFMapData{}, fmt.Errorf("%w: keys_bytes %d + values_bytes %d != %d", ErrExtraMismatch, k, v, len(extra))
	}
	return BPFMapData{Keys: extra[:k], Values: extra[k:]}, nil
}

// Pairs returns the count key/value pairs (nil when the byte counts are not multiples of count).
func (b BPFMapData) Pairs(count uint32) (keys, values [][]byte) {
	if count == 0 || uint64(count) > uint64(len(b.Keys)+len(b.Values)) || len(b.Keys)%int(count) != 0 || len(b.Values)%int(count) != 0 {
		return nil, nil
	}
	ks, vs := len(b.Keys)/int(count), len(b.Values)/int(count)
	for i := 0; i < int(count); i++ {
		keys = append(keys, b.Keys[i*ks:(i+1)*ks])
		values = append(values, b.Values[i*vs:(i+1)*vs])
	}
	return keys, values
}

// Bytes encodes the map data as an extra.
func (b BPFMapData) Bytes() []byte { return append(append([]byte{}, b.Keys...), b.Values...) }

// GhostChunk is one chunk of a chunked ghost file: Len bytes at file offset Off (holes are skipped).
type GhostChunk struct {
	Off, Len uint64
	Data     []byte
}

// GhostChunks returns the header and chunks of a decoded ghost file. For an unchunked ghost file it
// returns one chunk at offset 0 with the whole content.
func GhostChunks(img *Image) (*ghost_file.GhostFileEntry, []GhostChunk, error) {
	if img.Desc == nil || img.Desc.Kind != KindGhost || len(img.Entries) == 0 {
		return nil, nil, fmt.Errorf("%w: %s is not a ghost file", ErrWrongMessage, img.Name)
	}
	g, ok := img.Entries[0].Msg.(*ghost_file.GhostFileEntry)
	if !ok {
		return nil, nil, fmt.Errorf("%w: entry 0 is not ghost_file_entry", ErrWrongMessage)
	}
	if !g.GetChunks() {
		return g, []GhostChunk{{Off: 0, Len: uint64(len(img.Entries[0].Extra)), Data: img.Entries[0].Extra}}, nil
	}
	var cs []GhostChunk
	for i, e := range img.Entries[1:] {
		c, ok := e.Msg.(*ghost_file.GhostChunkEntry)
		if !ok {
			return nil, nil, fmt.Errorf("%w: entry %d is not ghost_chunk_entry", ErrWrongMessage, i+1)
		}
		cs = append(cs, GhostChunk{Off: c.GetOff(), Len: c.GetLen(), Data: e.Extra})
	}
	return g, cs, nil
}
