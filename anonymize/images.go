package anonymize

import (
	"fmt"
	"net"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	ipc_msg "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-msg"
	netdev "github.com/checkpoint-restore/go-criu/v8/crit/images/netdev"
	pipe_data "github.com/checkpoint-restore/go-criu/v8/crit/images/pipe-data"
	sk_packet "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-packet"
	tcp_stream "github.com/checkpoint-restore/go-criu/v8/crit/images/tcp-stream"
	"github.com/criukit/criukit/image"
)

func parseMAC(s string) ([]byte, error) {
	hw, err := net.ParseMAC(s)
	return []byte(hw), err
}

// collectMACs records the dump's MACs before they are rewritten (for EUI-64 link-locals).
func (r *run) collectMACs() {
	for _, img := range r.imgs {
		if img.Desc.Name != "NETDEV" {
			continue
		}
		for _, e := range img.Entries {
			if nd, ok := e.Msg.(*netdev.NetDeviceEntry); ok && len(nd.GetAddress()) == 6 {
				r.macs = append(r.macs, append([]byte(nil), nd.GetAddress()...))
			}
		}
	}
}

// sample keeps distinctive pieces of a payload for the content-level leak scan.
func (r *run) sample(b []byte) {
	const n = 48
	for _, p := range [][]byte{b[:min(n, len(b))], b[max(0, len(b)-n):]} {
		nz := 0
		for _, c := range p {
			if c != 0 && c != p[0] {
				nz++
			}
		}
		if nz >= 4 && len(r.payloads) < 4096 {
			r.payloads = append(r.payloads, append([]byte(nil), p...))
		}
	}
}

// transformImage rewrites one decoded image in place and says what it did.
func (r *run) transformImage(img *image.Image) ([]string, error) {
	var tr []string
	if r.lvl >= Identity {
		tr = append(tr, "fields pseudonymized")
	}
	if img.Desc.Name == "CORE" && r.lvl >= Structure {
		tr = append(tr, "registers zeroed except segment selectors and mode")
	}
	for _, e := range img.Entries {
		r.transformMsg(e.Msg.ProtoReflect())
	}
	x := img.Desc.Extra
	if x == image.ExtraNone || x == image.ExtraIPCSem || r.lvl < Content {
		if img.Desc.Name == "TTY_DATA" && r.lvl >= Content {
			tr = append(tr, "tty data filled")
		}
		return tr, nil
	}
	var bytesFilled int
	for i, e := range img.Entries {
		if len(e.Extra) == 0 {
			continue
		}
		switch x {
		case image.ExtraIPCMsg:
			m, ok := e.Msg.(*ipc_msg.IpcMsgEntry)
			if !ok {
				return nil, fmt.Errorf("entry %d is not ipc_msg_entry", i)
			}
			msgs, err := image.IPCMessages(m, e.Extra)
			if err != nil {
				return nil, fmt.Errorf("ipc messages of entry %d: %v", i, err)
			}
			for j := range msgs {
				r.sample(msgs[j].Text)
				bytesFilled += len(msgs[j].Text)
				fillInPlace(msgs[j].Text)
			}
			b, err := image.EncodeIPCMessages(msgs)
			if err != nil {
				return nil, err
			}
			e.Extra = b
		default:
			r.sample(e.Extra)
			bytesFilled += len(e.Extra)
			if r.lvl >= Paranoid && r.dropPayload(img, i, e) {
				continue
			}
			fillInPlace(e.Extra)
		}
	}
	if r.lvl >= Paranoid && (x == image.ExtraGhost) {
		if g, ok := img.Entries[0].Msg.(*ghost_file.GhostFileEntry); ok && g.GetChunks() {
			img.Entries = img.Entries[:1]
		}
	}
	r.count("payload-bytes", bytesFilled)
	if r.lvl >= Paranoid {
		tr = append(tr, fmt.Sprintf("payloads dropped (%d bytes)", bytesFilled))
	} else {
		tr = append(tr, fmt.Sprintf("payloads filled (%d bytes)", bytesFilled))
	}
	return tr, nil
}

// dropPayload empties an extra and fixes its length field (paranoid). It returns false when the
// kind's length cannot be fixed (then the payload is filled instead).
func (r *run) dropPayload(img *image.Image, i int, e *image.Entry) bool {
	switch m := e.Msg.(type) {
	case *pipe_data.PipeDataEntry:
		m.Bytes = new(uint32)
	case *sk_packet.SkPacketEntry:
		m.Length = new(uint32)
	case *tcp_stream.TcpStreamEntry:
		m.InqLen, m.OutqLen = new(uint32), new(uint32)
	case *ghost_file.GhostFileEntry:
		if m.GetChunks() {
			return false
		}
	default:
		return false
	}
	e.Extra = nil
	e.ExtraLen = 0
	return true
}
