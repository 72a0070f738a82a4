package tcplab

import (
	"bytes"
	"fmt"
	"strings"
	"time"
)

// Behavioural oracles on the wire. The switch sees every packet either socket emits, so each
// packet of a restored socket can be judged against what the peer saw before the dump and what
// the application wrote, without trusting soccr.Save (a bug in Save would otherwise be checked
// against itself by the re-dump). Every check is per direction and uses the negotiated options
// of the connection (windows are scaled by the sender's own rcv_wscale, announced in its SYN).
//
//   payload  the bytes at a sequence number are the bytes the application wrote at that offset
//   fin      a FIN sits right after the last byte written (our FIN seq = ISN+1+written)
//   ack      a side never acknowledges what the peer never sent, and never takes an ACK back
//   acked    a side never resends a byte the peer acknowledged to it before (snd_una, snd_nxt restored)
//   opts     TS on every segment iff negotiated; SACK blocks only if negotiated; no segment
//            larger than the MSS the peer announced
//   ts       TSval never goes back, and advances at most at the 1 kHz TCP clock (+ slack): a
//            jump of ~1e9 or a usec clock after restore is flagged
//   window   the advertised window never exceeds the receive buffer; data never beyond the
//            peer's advertised right edge (in lab.go)
//   storm    no endless exchange (an ACK war between sockets that disagree on seq numbers)
//   retract  the first window a restored socket advertises does not retract the right edge it
//            advertised before the dump (the dumped rcv_wup+rcv_wnd must survive)

type wireSide struct {
	sndMax, ackMax, ackIn      uint32
	sndOK, ackOK, ackInOK      bool
	syn                        bool // its SYN (or the constructor's template) was seen
	ts, sack                   bool // announced in its SYN
	mss                        int  // announced in its SYN (0: unknown)
	tsTime                     time.Time
	checkEdge                  bool   // restored: compare its next window with preEdge
	preEdge                    uint32 // right edge it advertised before the dump
	preEdgeOK                  bool
	restoredAt                 int // packet counter at restore (0: never restored)
	maxBuf                     int // largest SO_RCVBUF given to this side's sockets (bytes, before doubling)
	lastTSvalBeforeRestoreTime time.Time
}

func after(a, b uint32) bool { return int32(a-b) > 0 }

// wireOracles runs the per-packet behavioural checks (see the comment at the top of the file).
// how is "", "hold", "lockdrop" or "inject".
func (l *Lab) wireOracles(p *Pkt, how, line string) {
	me, peer := int(p.Dir), 1-int(p.Dir)
	w, pw := &l.wire[me], &l.wire[peer]
	if p.Flags&SYN != 0 {
		w.syn, w.ts, w.sack, w.mss = true, p.HasTS, p.SackOK, p.MSS
	}
	if how == "inject" { // fake peer packets: judged by what the restored socket does with them
		return
	}
	if p.Flags&RST != 0 {
		return
	}
	neg := w.syn && pw.syn
	// payload and FIN against the application's stream
	if l.isnSet[me] {
		start := p.Seq - l.isn[me] - 1
		if p.Flags&SYN != 0 {
			start = 0
		}
		written := l.streams[me].written
		if p.Len > 0 {
			end := uint64(start) + uint64(p.Len)
			switch {
			case int32(start) < 0 || end > uint64(len(written)):
				l.violation("payload", "#%d %s: carries stream bytes %d..%d, but %s wrote only %d", p.N, line, int32(start), end, sideName[me], len(written))
			case !bytes.Equal(p.Payload, written[start:end]):
				l.violation("payload", "#%d %s: payload differs from the bytes %s wrote at offset %d", p.N, line, sideName[me], start)
			}
		}
		if p.Flags&FIN != 0 {
			if fin := start + uint32(p.Len); p.Flags&SYN == 0 && int(fin) != len(written) {
				l.violation("fin", "#%d %s: FIN at stream offset %d, but %s wrote %d bytes", p.N, line, int32(fin), sideName[me], len(written))
			}
		}
		if !w.sndOK || after(p.SeqEnd(), w.sndMax) {
			w.sndMax, w.sndOK = p.SeqEnd(), true
		}
	}
	// data the peer acknowledged before must not be sent again, not even one byte of it (a
	// sender trims the acknowledged head of a segment before retransmitting it): a sender that
	// found an acceptable ACK unacceptable (its snd_nxt restored too low) does
	if p.Len > 0 && w.ackInOK && after(w.ackIn, p.Seq) && p.Flags&SYN == 0 {
		l.violation("acked", "#%d %s: resends %d bytes the peer acknowledged (ack %d delivered to %s)", p.N, line,
			min(int32(w.ackIn-p.Seq), int32(p.Len)), w.ackIn-l.isn[me], sideName[me])
	}
	if p.Flags&ACK != 0 && how != "lockdrop" { // the lock's victims never reach the peer (Q08: an in-repair ACK from the queue's start)
		if pw.sndOK && after(p.Ack, pw.sndMax) {
			l.violation("ack", "#%d %s: acknowledges %d bytes %s never sent", p.N, line, int32(p.Ack-pw.sndMax), sideName[peer])
		}
		if w.ackOK && after(w.ackMax, p.Ack) {
			l.violation("ack", "#%d %s: ACK went back by %d (a byte acknowledged before is not any more)", p.N, line, int32(w.ackMax-p.Ack))
		}
		if !w.ackOK || after(p.Ack, w.ackMax) {
			w.ackMax, w.ackOK = p.Ack, true
		}
	}
	// options as negotiated
	if neg && p.Flags&SYN == 0 {
		if want := w.ts && pw.ts; p.HasTS != want {
			l.violation("opts", "#%d %s: timestamps negotiated %v but TS option present %v", p.N, line, want, p.HasTS)
		}
		if len(p.Sack) > 0 && !(w.sack && pw.sack) {
			l.violation("opts", "#%d %s: SACK blocks on a connection without SACK", p.N, line)
		}
		if pw.mss > 0 && p.Len > pw.mss {
			l.violation("opts", "#%d %s: segment of %d bytes, the peer announced MSS %d", p.N, line, p.Len, pw.mss)
		}
	}
	// TS clock rate (1 kHz): a jump forward larger than the time elapsed
	if p.HasTS && l.tsOK[me] && after(p.TSval, l.lastTS[me]) {
		el := p.Time.Sub(w.tsTime)
		if d := p.TSval - l.lastTS[me]; float64(d) > el.Seconds()*1000*1.1+100 {
			l.violation("ts", "#%d %s: TSval jumped by %d ticks in %v (the TCP clock ticks 1/ms)", p.N, line, d, el.Round(time.Millisecond))
		}
	}
	if p.HasTS && (!l.tsOK[me] || !after(l.lastTS[me], p.TSval)) {
		w.tsTime = p.Time
	}
	// window: never more than the receive buffer, no retraction across a restore
	if p.Flags&SYN == 0 && p.Flags&ACK != 0 && l.wscale[me] >= 0 && how != "lockdrop" {
		win := uint64(p.Win) << uint(l.wscale[me])
		if w.maxBuf > 0 && win > uint64(2*w.maxBuf)+uint64(1)<<uint(l.wscale[me]) {
			l.violation("window", "#%d %s: advertises %d bytes (wscale %d), more than its receive buffer (%d)", p.N, line, win, l.wscale[me], 2*w.maxBuf)
		}
		edge := p.Ack + uint32(win)
		if w.checkEdge {
			w.checkEdge = false
			if w.preEdgeOK && after(w.preEdge, edge) {
				l.violation("retract", "#%d %s: first window after restore ends %d bytes left of the right edge %s advertised before the dump", p.N, line,
					int32(w.preEdge-edge), sideName[me])
			}
		}
	}
}

// delivered records an ACK that reached side to (its snd_una can only be at or after it).
func (l *Lab) delivered(p *Pkt) {
	to := 1 - int(p.Dir)
	w := &l.wire[to]
	// A segment entirely before the receiver's rcv_nxt (a window probe, an old duplicate) is not
	// acceptable: the receiver answers with a dup ACK and ignores its ACK field.
	if w.ackOK && after(w.ackMax, p.Seq) && !after(p.Seq+uint32(p.Len), w.ackMax) {
		return
	}
	if p.Flags&ACK != 0 && p.Flags&RST == 0 && (!w.ackInOK || after(p.Ack, w.ackIn)) {
		// An ACK beyond what to sent is not acceptable (the receiver ignores it).
		if tw := &l.wire[to]; tw.sndOK && after(p.Ack, tw.sndMax) {
			return
		}
		w.ackIn, w.ackInOK = p.Ack, true
	}
}

// restoring prepares the restore-boundary checks for side s.
func (l *Lab) restoring(s int) {
	w := &l.wire[s]
	w.checkEdge = true
	w.preEdge, w.preEdgeOK = l.redge[s], l.redgeOK[s]
	w.restoredAt = l.n
}

func (w *wireSide) String() string {
	return fmt.Sprintf("sndMax=%d ackMax=%d ackIn=%d ts=%v sack=%v mss=%d", w.sndMax, w.ackMax, w.ackIn, w.ts, w.sack, w.mss)
}

// NotBehavioural names the error kinds that judge no behaviour: a re-dump difference (the
// re-dump uses the same soccr.Save: a bug in Save would be checked against itself), a check on
// the dumped data alone ("snapshot"), and a refusal ("refused": Save or Restore returned an
// error; what a user sees then is argued per mutant in bench/mutate's catalogue).
var NotBehavioural = map[string]bool{"redump": true, "snapshot": true, "refused": true}

// Behavioural reports whether a failed case's errors include a behavioural oracle: the wire
// oracles, or the application's own view ("app": bytes read, EOF, socket state, a stall).
func Behavioural(errs []string) bool {
	for _, e := range errs {
		if !NotBehavioural[Oracle(e)] {
			return true
		}
	}
	return false
}

// Oracle names the check that produced an error: the oracle kind in brackets ("[payload]
// ..."), or "app" for a case's own expectation on what the application sees (a Fatalf: wrong
// bytes, no EOF, wrong state, a stall, a timeout).
func Oracle(err string) string {
	if strings.HasPrefix(err, "[") {
		if i := strings.IndexByte(err, ']'); i > 0 {
			return err[1:i]
		}
	}
	return "app"
}
