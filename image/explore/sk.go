package explore

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"

	criu_core "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	sk_packet "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-packet"
	tcp_stream "github.com/checkpoint-restore/go-criu/v8/crit/images/tcp-stream"
	"github.com/criukit/criukit/image/critjson"
)

// Socket is one socket descriptor of a task.
type Socket struct {
	Fd      uint32 `json:"fd"`
	ID      uint32 `json:"id"`
	Ino     uint32 `json:"ino,omitempty"`     // inode (unix, inet, netlink); packet sockets have none in the image
	Ifindex uint32 `json:"ifindex,omitempty"` // packet sockets: bound interface
	Kind    string `json:"kind"`              // unix, tcp, udp, tcp6, ..., packet, netlink
	Type    string `json:"type"`              // STREAM, DGRAM, ...
	State   string `json:"state,omitempty"`
	Local   string `json:"local,omitempty"`
	Remote  string `json:"remote,omitempty"`
	Peer    uint32 `json:"peer,omitempty"` // unix peer inode
	// Queued data: sk-queues packets/bytes (unix, packet); tcp-stream in/out queue bytes.
	QueuedPackets int    `json:"queued_packets,omitempty"`
	QueuedBytes   uint64 `json:"queued_bytes,omitempty"`
	InqBytes      uint32 `json:"inq_bytes,omitempty"`
	OutqBytes     uint32 `json:"outq_bytes,omitempty"`
}

// TaskSockets lists the sockets of one task.
type TaskSockets struct {
	Pid     uint32   `json:"pid"`
	Zombie  bool     `json:"zombie,omitempty"`
	Sockets []Socket `json:"sockets"`
}

var skTypes = map[uint32]string{1: "STREAM", 2: "DGRAM", 3: "RAW", 5: "SEQPACKET", 10: "PACKET"}
var skStates = map[uint32]string{1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
	6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN"}
var skProtos = map[uint32]string{0: "ip", 6: "tcp", 17: "udp", 136: "udplite"}

func name(m map[uint32]string, v uint32) string {
	if s, ok := m[v]; ok {
		return s
	}
	return fmt.Sprint(v)
}

func ipString(words []uint32, port uint32) string {
	var b [16]byte
	for i, w := range words {
		if i < 4 {
			binary.LittleEndian.PutUint32(b[4*i:], w)
		}
	}
	var a netip.Addr
	switch len(words) {
	case 1:
		a = netip.AddrFrom4([4]byte(b[:4]))
	case 4:
		a = netip.AddrFrom16(b)
	default:
		return fmt.Sprintf("?:%d", port)
	}
	return netip.AddrPortFrom(a, uint16(port)).String()
}

// SkQueues counts the packets and bytes queued on each socket (sk-queues.img), by socket id.
func (d *Dir) SkQueues() (pkts map[uint32]int, bytes map[uint32]uint64, err error) {
	pkts, bytes = map[uint32]int{}, map[uint32]uint64{}
	if !d.Exists("sk-queues.img") {
		return pkts, bytes, nil
	}
	ms, err := d.Load("sk-queues.img")
	if err != nil {
		return nil, nil, err
	}
	for _, m := range ms {
		if p, ok := m.(*sk_packet.SkPacketEntry); ok {
			pkts[p.GetIdFor()]++
			bytes[p.GetIdFor()] += uint64(p.GetLength())
		}
	}
	return pkts, bytes, nil
}

// Sk returns the sockets of every task with their addresses, states and queued data.
func (d *Dir) Sk() ([]TaskSockets, error) {
	pst, err := d.pstree()
	if err != nil {
		return nil, err
	}
	qPk, qBy, err := d.SkQueues()
	if err != nil {
		return nil, err
	}
	var out []TaskSockets
	for _, p := range pst {
		if d.zombie(p.GetPid()) {
			out = append(out, TaskSockets{Pid: p.GetPid(), Zombie: true})
			continue
		}
		t := TaskSockets{Pid: p.GetPid(), Sockets: []Socket{}}
		tf, err := d.taskFdinfo(p.GetPid())
		if err != nil {
			return nil, err
		}
		for _, fe := range tf {
			f := d.file(fe.GetId())
			if f == nil {
				continue
			}
			s := Socket{Fd: fe.GetFd(), ID: fe.GetId()}
			switch {
			case f.GetUsk() != nil:
				u := f.GetUsk()
				s.Kind, s.Ino, s.Type, s.State, s.Peer = "unix", u.GetIno(), name(skTypes, u.GetType()), name(skStates, u.GetState()), u.GetPeer()
				if len(u.GetName()) > 0 {
					s.Local = unixName(u.GetName())
				}
			case f.GetIsk() != nil:
				k := f.GetIsk()
				s.Kind = name(skProtos, k.GetProto())
				if k.GetFamily() == 10 {
					s.Kind += "6"
				}
				s.Ino, s.Type, s.State = k.GetIno(), name(skTypes, k.GetType()), name(skStates, k.GetState())
				s.Local = ipString(k.GetSrcAddr(), k.GetSrcPort())
				if k.GetState() != 10 && len(k.GetDstAddr()) > 0 {
					s.Remote = ipString(k.GetDstAddr(), k.GetDstPort())
				}
				if ts, err := d.tcpStream(k.GetIno()); err == nil && ts != nil {
					s.InqBytes, s.OutqBytes = ts.GetInqLen(), ts.GetOutqLen()
				}
			case f.GetPsk() != nil:
				s.Kind, s.Type, s.Ifindex = "packet", name(skTypes, f.GetPsk().GetType()), f.GetPsk().GetIfindex()
			case f.GetNlsk() != nil:
				s.Kind, s.Ino, s.Type = "netlink", f.GetNlsk().GetIno(), fmt.Sprintf("proto %d", f.GetNlsk().GetProtocol())
			default:
				continue
			}
			s.QueuedPackets, s.QueuedBytes = qPk[s.ID], qBy[s.ID]
			t.Sockets = append(t.Sockets, s)
		}
		out = append(out, t)
	}
	return out, nil
}

func (d *Dir) taskFdinfo(pid uint32) ([]*fdinfo.FdinfoEntry, error) {
	ids, err := first[*criu_core.TaskKobjIdsEntry](d, fmt.Sprintf("ids-%d.img", pid))
	if err != nil {
		return nil, err
	}
	ms, err := d.loadOptional(fmt.Sprintf("fdinfo-%d.img", ids.GetFilesId()))
	if err != nil {
		return nil, err
	}
	var out []*fdinfo.FdinfoEntry
	for _, m := range ms {
		if fe, ok := m.(*fdinfo.FdinfoEntry); ok {
			out = append(out, fe)
		}
	}
	return out, nil
}

func (d *Dir) tcpStream(ino uint32) (*tcp_stream.TcpStreamEntry, error) {
	n := fmt.Sprintf("tcp-stream-%x.img", ino)
	if !d.Exists(n) {
		return nil, nil
	}
	return first[*tcp_stream.TcpStreamEntry](d, n)
}

// WriteSk prints one line per socket, grouped by task.
func WriteSk(w io.Writer, tasks []TaskSockets) {
	for _, t := range tasks {
		zombieLine(w, t.Pid, t.Zombie)
		for _, s := range t.Sockets {
			id := fmt.Sprintf("ino %d", s.Ino)
			if s.Kind == "packet" {
				id = fmt.Sprintf("ifindex %d", s.Ifindex)
			}
			line := fmt.Sprintf("\t%7d: %-7s %-9s %-11s %s", s.Fd, s.Kind, s.Type, s.State, id)
			if s.Local != "" {
				line += " " + s.Local
			}
			if s.Remote != "" {
				line += " -> " + s.Remote
			}
			if s.Kind == "unix" && s.Peer != 0 {
				line += fmt.Sprintf(" peer %d", s.Peer)
			}
			if s.QueuedPackets > 0 {
				line += fmt.Sprintf(" [queued %d pkt, %d B]", s.QueuedPackets, s.QueuedBytes)
			}
			if s.InqBytes > 0 || s.OutqBytes > 0 {
				line += fmt.Sprintf(" [inq %d B, outq %d B]", s.InqBytes, s.OutqBytes)
			}
			fmt.Fprintln(w, line)
		}
	}
}

func unixName(b []byte) string { return critjson.QuotedPrintable(b) }
