package soccr

import (
	"errors"
	"fmt"
	"net/netip"
)

// State is a kernel TCP state number (include/net/tcp_states.h).
type State uint8

// TCP states, numbered as in the kernel.
const (
	Established State = 1
	SynSent     State = 2
	SynRecv     State = 3
	FinWait1    State = 4
	FinWait2    State = 5
	TimeWait    State = 6
	Close       State = 7
	CloseWait   State = 8
	LastAck     State = 9
	Listen      State = 10
	Closing     State = 11
)

var stateNames = map[State]string{
	Established: "ESTABLISHED", SynSent: "SYN_SENT", SynRecv: "SYN_RECV", FinWait1: "FIN_WAIT1",
	FinWait2: "FIN_WAIT2", TimeWait: "TIME_WAIT", Close: "CLOSE", CloseWait: "CLOSE_WAIT",
	LastAck: "LAST_ACK", Listen: "LISTEN", Closing: "CLOSING",
}

func (s State) String() string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("STATE(%d)", uint8(s))
}

// ParseState returns the state named like String does (for example "FIN_WAIT1").
func ParseState(name string) (State, error) {
	for s, n := range stateNames {
		if n == name {
			return s, nil
		}
	}
	return 0, fmt.Errorf("soccr: unknown TCP state %q", name)
}

func (s State) mask() uint32 { return 1 << uint32(s) }

// Supported reports whether libsoccr can save and restore a socket in this state.
func (s State) Supported() bool {
	switch s {
	case Established, FinWait1, FinWait2, LastAck, CloseWait, Closing, Close, SynSent:
		return true
	}
	return false
}

// State masks of libsoccr: where FINs sit in the queues for each state.
var (
	sndqFirstFin  = FinWait1.mask() | FinWait2.mask() | Closing.mask() // our FIN restored first
	sndqSecondFin = LastAck.mask() | Close.mask()                      // our FIN after the peer's
	sndqFinAcked  = FinWait2.mask() | Close.mask()
	rcvqFirstFin  = CloseWait.mask() | LastAck.mask() | Close.mask()
	rcvqSecondFin = Closing.mask()
	rcvqFinAcked  = Close.mask()
)

// TCPI_OPT_* bits of tcp_info.tcpi_options, as stored in Data.OptMask.
const (
	OptTimestamps = 1
	OptSack       = 2
	OptWscale     = 4
	OptECN        = 8
)

// Data is libsoccr's struct libsoccr_sk_data (the 17 u32 fields), plus HasWindow for its flags.
type Data struct {
	State     State  `json:"state"`
	InqLen    uint32 `json:"inq_len"`
	InqSeq    uint32 `json:"inq_seq"`
	OutqLen   uint32 `json:"outq_len"`
	OutqSeq   uint32 `json:"outq_seq"`
	UnsqLen   uint32 `json:"unsq_len"`
	OptMask   uint32 `json:"opt_mask"`
	MssClamp  uint32 `json:"mss_clamp"`
	SndWscale uint32 `json:"snd_wscale"`
	RcvWscale uint32 `json:"rcv_wscale"`
	Timestamp uint32 `json:"timestamp"`
	HasWindow bool   `json:"has_window"` // SOCCR_FLAGS_WINDOW
	SndWl1    uint32 `json:"snd_wl1"`
	SndWnd    uint32 `json:"snd_wnd"`
	MaxWindow uint32 `json:"max_window"`
	RcvWnd    uint32 `json:"rcv_wnd"`
	RcvWup    uint32 `json:"rcv_wup"`
}

// Snapshot is everything needed to re-create one TCP socket: the libsoccr data, both queues,
// both addresses and the buffer sizes (which must be set before the queues are restored).
type Snapshot struct {
	Data
	InQ    []byte         `json:"-"`
	OutQ   []byte         `json:"-"`
	Src    netip.AddrPort `json:"src"`
	Dst    netip.AddrPort `json:"dst"`
	SndBuf int            `json:"sndbuf,omitempty"` // SO_SNDBUF as read by getsockopt (0: leave default)
	RcvBuf int            `json:"rcvbuf,omitempty"` // SO_RCVBUF as read by getsockopt (0: leave default)
}

// SndUna is the first unacknowledged sequence number (outq_seq − outq_len, FIN excluded).
func (s *Snapshot) SndUna() uint32 {
	seq := s.OutqSeq
	if s.State.mask()&(sndqFirstFin|sndqSecondFin) != 0 {
		seq--
	}
	return seq - s.OutqLen
}

// Sentinel errors; test with errors.Is.
var (
	ErrUnknownState = errors.New("soccr: TCP state cannot be saved or restored by libsoccr")
	ErrQueueChanged = errors.New("soccr: queue length changed between SIOC*Q and MSG_PEEK (is the network locked?)")
	ErrNoInjector   = errors.New("soccr: this state needs a fake peer packet but no Injector was given")
	ErrBadSnapshot  = errors.New("soccr: inconsistent snapshot")
)

// Error is a failed step of Save or Restore: which operation, which step (the syscall and the
// option), in which TCP state, and the kernel's errno (errors.Is(err, unix.EPERM) works).
type Error struct {
	Op    string // "pause", "save", "restore", "resume"
	Step  string // e.g. "setsockopt(TCP_QUEUE_SEQ, SEND)"
	State State
	Err   error
}

func (e *Error) Error() string {
	st := ""
	if e.State != 0 {
		st = " " + e.State.String()
	}
	return fmt.Sprintf("soccr: %s%s: %s: %v", e.Op, st, e.Step, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Injector sends a crafted IPv4/IPv6 packet to the socket being restored, standing in for the
// peer (libsoccr uses a libnet raw socket with SO_MARK 0xC114 to pass CRIU's network lock).
type Injector interface {
	Inject(pkt []byte) error
}

// Faults seeds known restore bugs (a test hook); the zero value restores faithfully.
type Faults struct {
	NoWindow       bool  // do not restore TCP_REPAIR_WINDOW (as on kernels < 4.8)
	TimestampDelta int32 // added to the restored TCP_TIMESTAMP
	FinSeqDelta    int32 // added to the sequence number of the fake peer FIN
	UnsentDelta    int32 // moves the sent/unsent split of the send queue (+n: n sent bytes treated as unsent)
}

// Any reports whether any fault is set.
func (f *Faults) Any() bool { return f != nil && *f != (Faults{}) }

func (f Faults) String() string {
	return fmt.Sprintf("nowindow=%v ts%+d finseq%+d unsent%+d", f.NoWindow, f.TimestampDelta, f.FinSeqDelta, f.UnsentDelta)
}

// RestoreOptions tune Restore.
type RestoreOptions struct {
	Injector Injector // required for CLOSE_WAIT, LAST_ACK, CLOSING, CLOSE, FIN_WAIT2
	Faults   *Faults  // test hook; nil restores faithfully
	// PeerWindow makes the fake peer packets advertise the peer's real window (snd_wnd >>
	// snd_wscale). libsoccr advertises rcv_wnd instead, which the restored socket reads as the
	// peer's window scaled by snd_wscale: snd_wnd grows beyond what the peer offered.
	PeerWindow bool
	// LibsoccrMSS keeps libsoccr's order exactly: no TCP_MAXSEG before connect(), so the
	// restored socket's mss_cache stays at the connect-time default (536 on IPv4, 1220 on IPv6)
	// instead of the dumped clamp.
	LibsoccrMSS bool
	// Log, when set, receives one line per step (like libsoccr's debug log).
	Log func(format string, args ...any)
}
