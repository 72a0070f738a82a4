package tcplab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/criukit/criukit/soccr"
	"golang.org/x/sys/unix"
)

// Case is one scenario of the matrix.
type Case struct {
	ID     string // e.g. "E03"
	Title  string
	Expect string // expected outcome (tcp.md section 5)
	// KernelDependent cases record what they saw (Result.Observed) and are marked so.
	KernelDependent bool
	// TraceVaries marks cases whose packet trace depends on real time, not only on the packet
	// order: bulk transfers (softirq bursts versus window updates), RACK reordering marks (RACK
	// cannot be turned off on 6.18), two timers racing (SYN and SYN-ACK retransmissions), sleeps.
	// --repeat compares their results, not their hashes.
	TraceVaries bool
	V4Only      bool
	V6Only      bool
	Opts        Options // base options (Family is set by the runner)
	Run         func(c *C)
}

// Family letter of the case ("E", "H", ...).
func (cs *Case) Family() string { return cs.ID[:1] }

// Result of one case run.
type Result struct {
	Name            string              `json:"name"` // ID/v4
	ID              string              `json:"id"`
	Family          string              `json:"family"`
	IP              string              `json:"ip"`
	Title           string              `json:"title"`
	Expect          string              `json:"expect"`
	Status          string              `json:"status"` // pass, fail, observed, skip
	KernelDependent bool                `json:"kernel_dependent,omitempty"`
	TraceVaries     bool                `json:"trace_varies,omitempty"`
	Duration        time.Duration       `json:"duration_ns"`
	Hash            string              `json:"hash"`
	Errors          []string            `json:"errors,omitempty"`
	Observed        []string            `json:"observed,omitempty"`
	Netstat         [2]map[string]int64 `json:"netstat"`
	Trace           []string            `json:"-"`
	Log             []string            `json:"-"`
}

// C is the context a case runs in: the lab plus failure reporting.
type C struct {
	*Lab
	A, B     *Sock
	errs     []string
	observed []string
}

type abort struct{}

// Errorf records a failure and continues.
func (c *C) Errorf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Sprintf(format, args...))
}

// Fatalf records a failure and ends the case.
func (c *C) Fatalf(format string, args ...any) {
	c.Errorf(format, args...)
	panic(abort{})
}

// Must ends the case if err is not nil.
func (c *C) Must(err error, what string) {
	if err != nil {
		c.Fatalf("%s: %v", what, err)
	}
}

// Observe records an outcome (hashed in the trace) for kernel-dependent cases.
func (c *C) Observe(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	c.observed = append(c.observed, s)
	c.Event("observed: %s", s)
}

// Handshake connects A and B through the switch.
func (c *C) Handshake() {
	a, b, err := c.Lab.Handshake()
	c.Must(err, "handshake")
	c.A, c.B = a, b
}

// Construct builds A and B with the repair constructor.
func (c *C) Construct(t Template) {
	a, b, err := c.Lab.Construct(t)
	c.Must(err, "construct")
	c.A, c.B = a, b
}

// Checkpoint dumps s (silent close); the case fails on error, as a refusal ("[refused]"): the
// dump of a socket the kernel let us dump failed (with CRIU: `criu dump` exits 1, the task
// keeps running).
func (c *C) Checkpoint(s *Sock) *soccr.Snapshot {
	snap, err := c.Lab.Checkpoint(s)
	if err != nil {
		c.Fatalf("[refused] checkpoint %s: %v", s.name(), err)
	}
	return snap
}

// Restore restores s from snap; the case fails on error, as a refusal ("[refused]"): with
// CRIU a failed restore leaves no task (the dump killed it) and the connection is lost.
func (c *C) Restore(s *Sock, snap *soccr.Snapshot) {
	if err := c.Lab.Restore(s, snap); err != nil {
		c.Fatalf("[refused] restore %s: %v", s.name(), err)
	}
}

// Snapf records a failed check on dumped data ("[snapshot]": the scenario did not reach the
// state it means to test, or Save read it wrong) and lets the case go on: what the restored
// socket then does on the wire and for the application is what judges a bug; a check on the
// dump alone is not a behavioural oracle.
func (c *C) Snapf(format string, args ...any) {
	c.Errorf("[snapshot] "+format, args...)
}

// Write writes all of data (failing if the socket refuses part of it).
func (c *C) Write(s *Sock, data string) {
	n, err := s.Write([]byte(data))
	if err != nil || n != len(data) {
		c.Fatalf("%s write %d bytes: wrote %d: %v", s.name(), len(data), n, err)
	}
}

// ExpectRead reads what is available and requires exactly want.
func (c *C) ExpectRead(s *Sock, want string) {
	got, _, err := s.Read()
	if err != nil || string(got) != want {
		c.Fatalf("%s read: got %q (err %v), want %q", s.name(), abbrev(got), err, abbrev([]byte(want)))
	}
}

// ExpectEOF requires an end of stream on s.
func (c *C) ExpectEOF(s *Sock) {
	if s.in.eof {
		return
	}
	got, eof, err := s.Read()
	if !eof {
		c.Fatalf("%s: want EOF, got %d bytes, err %v", s.name(), len(got), err)
	}
}

// ReadAll reads from s until n more bytes came or the timeout. It is lock-step: read (which
// settles), and only when nothing is readable wait for the next packet (a timer: RTO, probe).
func (c *C) ReadAll(s *Sock, n int, timeout time.Duration) []byte {
	var out []byte
	end := time.Now().Add(timeout)
	for len(out) < n {
		b, eof, err := s.Read()
		if err != nil {
			c.Fatalf("%s read: %v", s.name(), err)
		}
		out = append(out, b...)
		if len(b) > 0 {
			continue
		}
		left := time.Until(end)
		if eof || left <= 0 {
			break
		}
		c.WaitFor(left, func(*Pkt) bool { return true })
	}
	if len(out) != n {
		c.Fatalf("%s: read %d bytes of %d within %v", s.name(), len(out), n, timeout)
	}
	return out
}

// ExpectState requires s to be in st.
func (c *C) ExpectState(s *Sock, st soccr.State) {
	if got := s.State(); got != st {
		c.Fatalf("%s state %v, want %v", s.name(), got, st)
	}
}

// HoldDir holds every packet in direction d (and, if data is true, only packets with payload).
func (c *C) HoldDir(d Dir) { c.Hold(func(p *Pkt) bool { return p.Dir == d }) }

// HoldAll holds every packet.
func (c *C) HoldAll() { c.Hold(func(*Pkt) bool { return true }) }

// HeldIn returns the held packets of direction d.
func (c *C) HeldIn(d Dir) []*Pkt {
	var out []*Pkt
	for _, p := range c.Held() {
		if p.Dir == d {
			out = append(out, p)
		}
	}
	return out
}

// NeedHeld fails unless exactly n packets of direction d are held, and returns them.
func (c *C) NeedHeld(d Dir, n int) []*Pkt {
	ps := c.HeldIn(d)
	if len(ps) != n {
		c.Fatalf("want %d held %v packets, have %d", n, d, len(ps))
	}
	return ps
}

// WaitPkt waits for a packet in direction d matching pred, failing after timeout.
func (c *C) WaitPkt(d Dir, timeout time.Duration, what string, pred func(*Pkt) bool) *Pkt {
	t0 := time.Now()
	p := c.WaitFor(timeout, func(p *Pkt) bool { return p.Dir == d && (pred == nil || pred(p)) })
	if p == nil {
		c.Fatalf("no %s %v within %v", what, d, timeout)
	}
	c.Note("%s after %v", what, time.Since(t0).Round(time.Millisecond))
	return p
}

func abbrev(b []byte) string {
	if len(b) > 40 {
		return fmt.Sprintf("%s...(%d bytes)", b[:40], len(b))
	}
	return string(b)
}

// RunOptions configure a run of cases.
type RunOptions struct {
	PcapDir string        // write <name>.pcap and <name>.txt here
	Faults  *soccr.Faults // seeded faults for every restore
	Engine  string        // EngineSoccr (default) or EngineLibsoccr
}

// Name of a case run.
func Name(cs *Case, f Family) string { return cs.ID + "/" + f.String() }

// RunCase runs one case in a fresh lab and checks the oracles.
func RunCase(cs *Case, f Family, ro RunOptions) (res Result) {
	t0 := time.Now()
	res = Result{Name: Name(cs, f), ID: cs.ID, Family: cs.Family(), IP: f.String(), Title: cs.Title,
		Expect: cs.Expect, KernelDependent: cs.KernelDependent, TraceVaries: cs.TraceVaries}
	o := cs.Opts
	o.Family = f
	if ro.Faults != nil {
		o.Faults = ro.Faults
	}
	if ro.Engine != "" {
		o.Engine = ro.Engine
	}
	if o.Engine == EngineLibsoccr && (o.Faults.Any() || o.LibsoccrMSS || o.PeerWindow || o.RestoreHook) {
		// Seeded faults and soccr's options are hooks of the Go port: nothing to compare.
		res.Status, res.Observed = "skip", []string{"soccr-only hook (Faults, LibsoccrMSS, PeerWindow, RestoreHook)"}
		return res
	}
	if o.Engine == EngineLibsoccr && cs.Family() == "C" {
		res.Status, res.Observed = "skip", []string{"CRIU in the loop: CRIU's own libsoccr saves and restores, whatever the engine"}
		return res
	}
	if ro.PcapDir != "" {
		o.Pcap = filepath.Join(ro.PcapDir, strings.ReplaceAll(res.Name, "/", "-")+".pcap")
	}
	l, err := New(o)
	if err != nil {
		res.Status, res.Errors = "fail", []string{err.Error()}
		res.Duration = time.Since(t0)
		return res
	}
	c := &C{Lab: l}
	defer func() {
		res.Trace, res.Log = l.Trace(), l.Log()
		res.Hash = l.Hash()
		l.Close()
		res.Duration = time.Since(t0)
		if ro.PcapDir != "" {
			txt := filepath.Join(ro.PcapDir, strings.ReplaceAll(res.Name, "/", "-")+".txt")
			_ = os.WriteFile(txt, []byte(strings.Join(append([]string{res.Name + " " + res.Title, "hash " + res.Hash}, res.Log...), "\n")+"\n"), 0o644)
		}
	}()
	func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(abort); !ok {
					c.errs = append(c.errs, fmt.Sprintf("panic: %v\n%s", r, debug.Stack()))
				}
			}
		}()
		cs.Run(c)
		c.finalOracles()
	}()
	for s := range 2 {
		res.Netstat[s] = l.Netstat(s)
	}
	res.Errors = append(c.errs, l.Violations()...)
	res.Observed = c.observed
	switch {
	case len(res.Errors) > 0:
		res.Status = "fail"
	case cs.KernelDependent:
		res.Status = "observed"
	default:
		res.Status = "pass"
	}
	return res
}

// finalOracles: streams are intact (and complete unless allowed), nstat sanity.
func (c *C) finalOracles() {
	c.Settle()
	for _, s := range []*Sock{c.A, c.B} {
		if s != nil && s.fd >= 0 {
			if _, _, err := s.Read(); err != nil && !errors.Is(err, unix.ENOTCONN) && !errors.Is(err, unix.ECONNRESET) && !errors.Is(err, unix.EPIPE) {
				c.Note("final read %s: %v", s.name(), err)
			}
		}
	}
	for d, st := range c.streams {
		if err := st.check(); err != nil {
			c.violation("stream", "%v stream corrupt: %v", Dir(d), err)
			continue
		}
		recv := []*Sock{c.B, c.A}[d]
		if recv != nil && !recv.Closed && len(st.read) != len(st.written) && !c.allow["incomplete"] {
			c.violation("stream", "%v stream incomplete: %d of %d bytes read", Dir(d), len(st.read), len(st.written))
		}
	}
	for s := range 2 {
		ns := c.Netstat(s)
		if ns["TcpExtPAWSEstab"] > 0 {
			c.violation("paws", "%s dropped %d segments by PAWS", sideName[s], ns["TcpExtPAWSEstab"])
		}
		// In-window data the receiver had room for when it advertised the window: a receiver
		// that drops it (receive queue full, pruned, zero window) broke its promise and the peer
		// must retransmit. A restored socket with a smaller receive buffer than dumped does this.
		// (Collapsing skbs, PruneCalled, is the kernel making room, not a drop.)
		drop := []string{"TcpExtTCPRcvQDrop", "TcpExtTCPZeroWindowDrop", "TcpExtTCPOFODrop", "TcpExtRcvPruned", "TcpExtOfoPruned"}
		n, what := int64(0), ""
		for _, k := range drop {
			if ns[k] > 0 {
				n += ns[k]
				what += fmt.Sprintf(" %s=%d", strings.TrimPrefix(k, "TcpExt"), ns[k])
			}
		}
		if n > 0 {
			c.violation("drop", "%s dropped data the peer sent inside its advertised window:%s", sideName[s], what)
		}
	}
}

// Select returns the runs (case × family) whose name matches re (nil: all).
func Select(cases []*Case, re *regexp.Regexp) []struct {
	Case   *Case
	Family Family
} {
	var out []struct {
		Case   *Case
		Family Family
	}
	for _, cs := range cases {
		for _, f := range []Family{IPv4, IPv6} {
			if (f == IPv6 && cs.V4Only) || (f == IPv4 && cs.V6Only) {
				continue
			}
			if re == nil || re.MatchString(Name(cs, f)) || re.MatchString(cs.Title) {
				out = append(out, struct {
					Case   *Case
					Family Family
				}{cs, f})
			}
		}
	}
	return out
}

// Summary counts results per family letter and status.
func Summary(rs []Result) string {
	m := map[string]map[string]int{}
	for _, r := range rs {
		if m[r.Family] == nil {
			m[r.Family] = map[string]int{}
		}
		m[r.Family][r.Status]++
	}
	var fams []string
	for f := range m {
		fams = append(fams, f)
	}
	sort.Strings(fams)
	var b bytes.Buffer
	for _, f := range fams {
		fmt.Fprintf(&b, "%s: pass %d observed %d fail %d\n", f, m[f]["pass"], m[f]["observed"], m[f]["fail"])
	}
	return b.String()
}
