package tcplab

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/criukit/criukit/soccr"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"
)

// Family selects IPv4 or IPv6.
type Family int

// Families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string { return fmt.Sprintf("v%d", int(f)) }

// Options configure a lab (per case).
type Options struct {
	Family     Family
	Timestamps bool          // net.ipv4.tcp_timestamps=1 (default 0 for determinism)
	NoSack     bool          // net.ipv4.tcp_sack=0
	NoWscale   bool          // net.ipv4.tcp_window_scaling=0
	RTO        time.Duration // rto_min (route + sysctl) and rto_max: every RTO is this (default 1s)
	Buf        int           // SO_SNDBUF/SO_RCVBUF set on every socket (default 65536)
	Quiet      time.Duration // settle quiet period (default 2ms)
	StepQuiet  time.Duration // extra quiet period after each delivered packet (default 0: none)
	Faults     *soccr.Faults // seeded faults applied to every soccr restore
	Pcap       string        // write a pcap to this path
	PeerWindow bool          // soccr.RestoreOptions.PeerWindow (fake packets carry the peer's real window)
	ECN        bool          // net.ipv4.tcp_ecn=1
	// SideBuf overrides Buf for side A ([0]) or B ([1]) when non-zero: asymmetric buffers give
	// asymmetric window scales (a swap of snd/rcv wscale becomes visible).
	SideBuf [2]int
	// NoQuickack leaves the route without "quickack 1": delayed ACKs, so a dump can catch a
	// socket that owes an ACK (rcv_wup != rcv_nxt).
	NoQuickack bool
	// SideMSS sets TCP_MAXSEG on side A's ([0]) or B's ([1]) sockets before the handshake: each
	// side announces its own MSS (asymmetric MSS).
	SideMSS [2]int
	// LibsoccrMSS restores without soccr's TCP_MAXSEG-before-connect fix (libsoccr's order).
	LibsoccrMSS bool
	// Engine saves and restores the sockets: EngineSoccr ("" too) or EngineLibsoccr.
	Engine string
	// RestoreHook marks cases that act inside soccr.Restore (Lab.duringRestore): soccr only.
	RestoreHook bool
	// AutoBuf leaves SO_SNDBUF/SO_RCVBUF alone (autotuned buffers, like a program that never
	// sets them; the C cases' processes): the window oracle's bound is then tcp_rmem[2].
	AutoBuf bool
}

func (o *Options) bufOf(side int) int {
	if o.SideBuf[side] > 0 {
		return o.SideBuf[side]
	}
	return o.Buf
}

func (o *Options) defaults() {
	if o.Family == 0 {
		o.Family = IPv4
	}
	if o.RTO == 0 {
		o.RTO = time.Second
	}
	if o.Buf == 0 {
		o.Buf = 65536
	}
	if o.Quiet == 0 {
		o.Quiet = 2 * time.Millisecond
	}

}

// Lab is the two-namespace topology with the switch. Not safe for concurrent use.
type Lab struct {
	o         Options
	sides     [2]*side
	start     time.Time
	n         int // packets captured
	held      []*Pkt
	hold      func(*Pkt) bool
	lock      [2]bool
	isn       [2]uint32
	isnSet    [2]bool
	wscale    [2]int // rcv wscale announced by each side (-1 unknown)
	redge     [2]uint32
	redgeOK   [2]bool
	lastTS    [2]uint32
	tsOK      [2]bool
	trace     []string
	log       []string // readable trace with times
	viol      []string // oracle violations from packets
	allow     map[string]bool
	socks     []*Sock
	pcapF     *os.File
	pcapW     *pcapgo.Writer
	streams   [2]*stream // [AtoB], [BtoA]
	nstat0    [2]map[string]int64
	Faults    *soccr.Faults
	captured  []*Pkt // every packet, by N-1
	lines     map[*Pkt]string
	retracted [2]bool
	wire      [2]wireSide
	tripped   map[string]int // oracle kind -> violations, allowed ones included
	burst     int            // packets captured in the current Settle
	storm     bool           // an endless exchange was detected: every packet is dropped
	// duringRestore, when set, is called with each step soccr.Restore logs, while it runs
	// (the socket in repair mode, the network locked): a case acts between two steps.
	duringRestore func(step string)
}

// Tripped returns how often an oracle fired in this case so far (allowed or not): a case that
// seeds a fault asserts that the oracle meant to catch it did.
func (l *Lab) Tripped(kind string) int { return l.tripped[kind] }

func (l *Lab) lineOf(p *Pkt) string { return l.lines[p] }

// Side names.
const (
	A = 0
	B = 1
)

var sideName = [2]string{"A", "B"}

// Addr returns the address of side s.
func (l *Lab) Addr(s int) netip.Addr { return l.sides[s].addr }

// New builds the topology. Close it when done (also on failure).
func New(o Options) (*Lab, error) {
	o.defaults()
	l := &Lab{o: o, start: time.Now(), allow: map[string]bool{}, wscale: [2]int{-1, -1}, Faults: o.Faults}
	l.streams = [2]*stream{{}, {}}
	addrs := [2]netip.Addr{netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("10.77.0.2")}
	if o.Family == IPv6 {
		addrs = [2]netip.Addr{netip.MustParseAddr("fd77::1"), netip.MustParseAddr("fd77::2")}
	}
	var errs [2]error
	done := make(chan int, 2)
	for i := range l.sides { // both namespaces are built at the same time
		go func(i int) {
			l.sides[i], errs[i] = newSide(addrs[i], &l.o)
			done <- i
		}(i)
	}
	<-done
	<-done
	for i, err := range errs {
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("tcplab: set up side %s: %w", sideName[i], err)
		}
	}
	if o.Pcap != "" {
		f, err := os.Create(o.Pcap)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("tcplab: %w", err)
		}
		l.pcapF, l.pcapW = f, pcapgo.NewWriter(f)
		if err := l.pcapW.WriteFileHeader(65536, layers.LinkTypeRaw); err != nil {
			l.Close()
			return nil, fmt.Errorf("tcplab: pcap header: %w", err)
		}
	}
	for i := range l.sides {
		l.nstat0[i], _ = l.sides[i].readNetstat()
		l.wire[i].maxBuf = o.bufOf(i)
		if o.AutoBuf {
			l.wire[i].maxBuf = l.sides[i].rmemMax() / 2
		}
	}
	return l, nil
}

// ReplaceSide destroys side s's namespace (and every socket left in it) and creates a fresh one
// with the same address: restoring there is a container migration (P09).
func (l *Lab) ReplaceSide(s int) error {
	ns, err := newSide(l.sides[s].addr, &l.o)
	if err != nil {
		return err
	}
	for _, k := range l.socks {
		if k.Side == s {
			k.close()
		}
	}
	l.sides[s].close()
	l.sides[s] = ns
	l.nstat0[s], _ = ns.readNetstat()
	l.Event("side %s replaced by a fresh namespace", sideName[s])
	return nil
}

// Close releases every socket, TUN and namespace of the lab.
func (l *Lab) Close() {
	for _, s := range l.socks {
		s.close()
	}
	l.socks = nil
	// Closing a TUN fd unregisters the device (RCU barriers): close both sides at once.
	done := make(chan struct{}, 2)
	for _, s := range l.sides {
		go func(s *side) {
			if s != nil {
				s.close()
			}
			done <- struct{}{}
		}(s)
	}
	<-done
	<-done
	if l.pcapF != nil {
		l.pcapF.Close()
		l.pcapF = nil
	}
}

// Event appends a line to the canonical trace (part of the hash).
func (l *Lab) Event(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	l.trace = append(l.trace, "* "+s)
	l.log = append(l.log, fmt.Sprintf("%8.3f  * %s", time.Since(l.start).Seconds()*1000, s))
}

// Note appends a line to the readable trace only (not hashed): timing-dependent facts.
func (l *Lab) Note(format string, args ...any) {
	l.log = append(l.log, fmt.Sprintf("%8.3f  # %s", time.Since(l.start).Seconds()*1000, fmt.Sprintf(format, args...)))
}

// Trace returns the canonical trace lines.
func (l *Lab) Trace() []string { return l.trace }

// Log returns the readable trace lines (ms since start).
func (l *Lab) Log() []string { return l.log }

// Hash is the first 16 hex digits of the SHA-256 of the canonical trace, in which the packets
// between two case events ("*" lines: deliver, drop, checkpoint, ...) are grouped per
// direction. The kernel may emit a burst from a softirq while the peer answers the previous
// packet, so the interleaving of the two directions is not reproducible under load; the order
// within each direction and relative to the case's actions is.
func (l *Lab) Hash() string { return hashLines(CanonicalTrace(l.trace)) }

func (l *Lab) dirOf(p *Pkt) (Dir, bool) {
	for _, a := range []netip.Addr{l.sides[A].addr, l.sides[A].ll} {
		switch {
		case !a.IsValid():
		case p.Src.Addr().Unmap() == a:
			return AtoB, true
		case p.Dst.Addr().Unmap() == a:
			return BtoA, true
		}
	}
	return 0, false
}

// SetISN fixes the ISN used to render side s's sequence numbers (constructor mode).
func (l *Lab) SetISN(s int, isn uint32, wscale int) {
	l.isn[s], l.isnSet[s] = isn, true
	l.wire[s].sndMax, l.wire[s].sndOK = isn+1, true
	l.wscale[s] = wscale
}

// observe records a captured packet: ISNs, windows, oracles, trace.
func (l *Lab) observe(p *Pkt, how string) {
	me := int(p.Dir)
	l.captured = append(l.captured, p)
	if p.Flags&SYN != 0 {
		l.isn[me], l.isnSet[me] = p.Seq, true
		l.wscale[me] = max(p.Wscale, 0)
		if p.Wscale < 0 {
			l.wscale[me] = 0
		}
	}
	if !l.isnSet[me] {
		l.isn[me], l.isnSet[me] = p.Seq-1, true
	}
	line, hashed := p.canon(l.isn, false), p.canon(l.isn, true)
	if how != "" {
		line, hashed = how+" "+line, how+" "+hashed
	}
	l.wireOracles(p, how, line)
	l.trace = append(l.trace, hashed)
	if l.lines == nil {
		l.lines = map[*Pkt]string{}
	}
	l.lines[p] = line
	l.log = append(l.log, fmt.Sprintf("%8.3f #%-3d %s", time.Since(l.start).Seconds()*1000, p.N, line))
	if l.pcapW != nil {
		_ = l.pcapW.WritePacket(gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Raw), Length: len(p.Raw)}, p.Raw)
	}
	// Oracles on the wire.
	if p.Flags&RST != 0 {
		l.violation("rst", "#%d %s: RST", p.N, line)
	}
	peer := 1 - me
	if p.Flags&SYN == 0 && p.Flags&ACK != 0 && l.wscale[me] >= 0 && how != "inject" && how != "lockdrop" {
		edge := p.Ack + uint32(p.Win)<<uint(l.wscale[me])
		if l.redgeOK[me] && int32(edge-l.redge[me]) < 0 && p.Flags&RST == 0 {
			// Recorded, not an error: 6.17+ kernels retract under buffer pressure even without
			// C/R (tcp.md section 6); cases that care observe Retracted.
			l.retracted[me] = true
			l.Note("right edge of %s retracted by %d bytes", sideName[me], int32(l.redge[me]-edge))
		}
		if !l.redgeOK[me] || int32(edge-l.redge[me]) > 0 {
			l.redge[me], l.redgeOK[me] = edge, true
		}
	}
	if p.Len > 0 && l.redgeOK[peer] && int32(p.Seq+uint32(p.Len)-l.redge[peer]) > 0 {
		l.violation("window", "#%d %s: data ends %d bytes beyond the peer's advertised window",
			p.N, line, int32(p.Seq+uint32(p.Len)-l.redge[peer]))
	}
	if p.HasTS {
		if l.tsOK[me] && int32(p.TSval-l.lastTS[me]) < -1 {
			l.violation("ts", "#%d %s: TSval went back by %d", p.N, line, int32(l.lastTS[me]-p.TSval))
		}
		if !l.tsOK[me] || int32(p.TSval-l.lastTS[me]) > 0 {
			l.lastTS[me], l.tsOK[me] = p.TSval, true
		}
	}
}

// Allow marks an oracle as expected to trigger in this case ("rst", "window", "ts", "stream",
// "redump", "paws").
func (l *Lab) Allow(oracles ...string) {
	for _, o := range oracles {
		l.allow[o] = true
	}
}

func (l *Lab) violation(kind, format string, args ...any) {
	msg := fmt.Sprintf("[%s] ", kind) + fmt.Sprintf(format, args...)
	if l.tripped == nil {
		l.tripped = map[string]int{}
	}
	l.tripped[kind]++
	if l.allow[kind] {
		l.Note("expected: %s", msg)
		return
	}
	l.viol = append(l.viol, msg)
}

// Violations returns the oracle failures so far.
func (l *Lab) Violations() []string { return l.viol }

// readTun reads every queued packet of side s (non-blocking).
func (l *Lab) readTun(s int) []*Pkt {
	var out []*Pkt
	for {
		buf := make([]byte, 65536)
		n, err := unix.Read(l.sides[s].tun, buf)
		if err != nil || n <= 0 {
			return out
		}
		p, ok := parsePkt(buf[:n])
		if !ok {
			continue // RS, MLD, ICMP: not part of the experiment
		}
		d, ok := l.dirOf(p)
		if !ok {
			continue
		}
		l.n++
		p.N, p.Dir, p.Time = l.n, d, time.Now()
		out = append(out, p)
	}
}

// capture processes newly captured packets in FIFO order: each is held, dropped by the lock,
// or delivered; after a delivery the reactions are read before the next packet goes (lock-step).
func (l *Lab) capture() bool {
	got := false
	var fifo []*Pkt
	read := func() {
		for s := range 2 {
			fifo = append(fifo, l.readTun(s)...)
		}
	}
	read()
	for len(fifo) > 0 {
		p := fifo[0]
		fifo = fifo[1:]
		got = true
		if l.storm {
			continue // the link is cut
		}
		if l.burst++; l.burst > stormPackets {
			// Two sockets that disagree about sequence numbers can ACK each other forever
			// (each finds the other's segment out of window and answers with a dup ACK).
			l.storm = true
			l.violation("storm", "%d packets without a quiet period (ACK war?): the switch now drops everything", l.burst)
			continue
		}
		src, dst := int(p.Dir), 1-int(p.Dir)
		switch {
		case l.lock[src] || l.lock[dst]:
			l.observe(p, "lockdrop")
		case l.hold != nil && l.hold(p):
			l.observe(p, "hold")
			l.held = append(l.held, p)
		default:
			l.observe(p, "")
			l.delivered(p)
			l.write(dst, p.Raw)
			// The receive path may run in ksoftirqd (asynchronously) under load: wait for a
			// quiet step before the next packet goes.
			for {
				n := len(fifo)
				read()
				if len(fifo) > n {
					continue
				}
				if l.o.StepQuiet == 0 || !l.pollTuns(l.o.StepQuiet) {
					break
				}
			}
		}
	}
	return got
}

func (l *Lab) write(s int, raw []byte) {
	if _, err := unix.Write(l.sides[s].tun, raw); err != nil {
		l.Note("write to tun %s: %v", sideName[s], err)
	}
}

func (l *Lab) pollTuns(d time.Duration) bool {
	fds := []unix.PollFd{{Fd: int32(l.sides[A].tun), Events: unix.POLLIN}, {Fd: int32(l.sides[B].tun), Events: unix.POLLIN}}
	ms := int(d.Milliseconds())
	if ms < 1 {
		ms = 1
	}
	n, err := unix.Poll(fds, ms)
	return err == nil && n > 0
}

// Settle processes packets until nothing arrives for the quiet period.
func (l *Lab) Settle() {
	l.burst = 0
	for {
		l.capture()
		if !l.pollTuns(l.o.Quiet) {
			return
		}
	}
}

// stormPackets bounds one Settle: the largest cases (E14, 2 MiB each way) stay far below.
const stormPackets = 20000

// Run keeps the switch running for d (timers fire: retransmissions, probes).
func (l *Lab) Run(d time.Duration) {
	end := time.Now().Add(d)
	for {
		l.capture()
		left := time.Until(end)
		if left <= 0 {
			return
		}
		l.pollTuns(min(left, 50*time.Millisecond))
	}
}

// WaitFor runs the switch until a captured packet satisfies pred (it is checked against
// packets captured after the call), or the timeout; it returns the packet or nil.
func (l *Lab) WaitFor(timeout time.Duration, pred func(*Pkt) bool) *Pkt {
	start := l.n
	end := time.Now().Add(timeout)
	var found *Pkt
	old := l.hold
	// Look at every packet as it is captured by wrapping the hold filter.
	l.hold = func(p *Pkt) bool {
		if found == nil && p.N > start && pred(p) {
			found = p
		}
		return old != nil && old(p)
	}
	defer func() { l.hold = old }()
	for found == nil {
		l.capture()
		left := time.Until(end)
		if found != nil || left <= 0 {
			break
		}
		l.pollTuns(min(left, 50*time.Millisecond))
	}
	if found != nil {
		l.Note("waited %v for #%d", time.Since(found.Time.Add(-time.Since(found.Time))).Round(time.Millisecond), found.N)
		l.Settle()
	}
	return found
}

// Hold makes the switch keep packets for which f returns true (nil: deliver everything).
func (l *Lab) Hold(f func(*Pkt) bool) {
	l.hold = f
	if f == nil {
		l.Event("hold none")
	}
}

// Held returns the packets held so far, in capture order.
func (l *Lab) Held() []*Pkt { return append([]*Pkt(nil), l.held...) }

func (l *Lab) unhold(p *Pkt) bool {
	for i, q := range l.held {
		if q == p {
			l.held = append(l.held[:i], l.held[i+1:]...)
			return true
		}
	}
	return false
}

// Deliver sends held packets to their destination, one at a time in lock-step, in the given order.
func (l *Lab) Deliver(ps ...*Pkt) {
	for _, p := range ps {
		l.unhold(p)
		l.Event("deliver #%d", p.N)
		l.delivered(p)
		l.write(1-int(p.Dir), p.Raw)
		l.Settle()
	}
}

// Drop forgets held packets (lost on the wire).
func (l *Lab) Drop(ps ...*Pkt) {
	for _, p := range ps {
		l.unhold(p)
		l.Event("drop #%d", p.N)
	}
}

// Duplicate delivers a copy of p (held or already delivered) without releasing it.
func (l *Lab) Duplicate(p *Pkt) {
	l.Event("duplicate #%d", p.N)
	l.delivered(p)
	l.write(1-int(p.Dir), append([]byte(nil), p.Raw...))
	l.Settle()
}

// Inject writes a raw IP packet into side s's namespace as if it came from the wire.
func (l *Lab) Inject(s int, raw []byte) error {
	p, ok := parsePkt(raw)
	if !ok {
		// A malformed packet still goes onto the wire, as a raw socket would send it: what
		// the kernel then does with it (drop it) is the behaviour to judge.
		l.Event("inject a malformed packet (%d bytes) into %s", len(raw), sideName[s])
		_, err := unix.Write(l.sides[s].tun, raw)
		return err
	}
	p.Dir = Dir(1 - s)
	l.n++
	p.N, p.Time = l.n, time.Now()
	l.observe(p, "inject")
	l.delivered(p)
	_, err := unix.Write(l.sides[s].tun, raw)
	return err
}

// injector adapts the switch to soccr.Injector for side s.
type injector struct {
	l *Lab
	s int
}

func (i injector) Inject(pkt []byte) error { return i.l.Inject(i.s, pkt) }

// Netstat returns the counters of side s that changed since the lab was created.
func (l *Lab) Netstat(s int) map[string]int64 {
	now, err := l.sides[s].readNetstat()
	if err != nil {
		return nil
	}
	out := map[string]int64{}
	for k, v := range now {
		if d := v - l.nstat0[s][k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// stream is one direction's application data: what was written and what was read.
type stream struct {
	written, read []byte
	eof           bool
}

func (s *stream) check() error {
	if len(s.read) > len(s.written) || !bytes.Equal(s.read, s.written[:len(s.read)]) {
		return fmt.Errorf("read %d bytes that are not a prefix of the %d written", len(s.read), len(s.written))
	}
	return nil
}
