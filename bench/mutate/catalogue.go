package main

// Mutant is one realistic bug in soccr: Old (a fragment that must occur exactly once in File)
// is replaced by New. Cases is the regexp of tcplab cases run against it, in the order given
// by the matrix (the run stops at the first behavioural kill); --full widens survivors to the
// whole suite. Equivalent, when set, argues why no behaviour can differ.
type Mutant struct {
	ID, Area, What string
	File           string
	Old, New       string
	Cases          string
	Equivalent     string
	// Refusal, when set, argues why Save or Restore refusing is the only effect this bug can
	// have in any reachable state, and why that refusal is what a user sees: then a refusal
	// counts as a kill. Without it a refusal-only failure does not count.
	Refusal string
	Fast    bool // part of the CI subset
}

// Catalogue: save, restore, options, queues, states, v4/v6, resume. Written against the
// soccr sources of this branch; a fragment that no longer matches is reported as stale.
var Catalogue = []Mutant{
	// --- save ---
	{ID: "save-outq-fin", Area: "save/states", What: "our FIN counted as data in outq_len (no refresh_sk decrement)", File: "soccr/save.go",
		Old: "if s.OutqLen > 0 {\n\t\t\ts.OutqLen--", New: "if false {\n\t\t\ts.OutqLen--", Cases: `^(H04|Q01|X10|X11|H07)/`,
		Refusal: "our FIN counts in SIOCOUTQ only while it is unacked (FIN_WAIT1, CLOSING, LAST_ACK; acked in FIN_WAIT2, CLOSE zeroes the queue): in exactly those states the miscount makes Save peek one byte more than the send queue holds, and Save (like libsoccr's get_queue) refuses a queue shorter than SIOCOUTQ said. No reachable state yields a snapshot, so nothing can be restored wrong: the behaviour is that checkpointing a half-closed connection fails (with CRIU: `criu dump` exits 1 and the task keeps running undumped), which H04/Q01/X10/X11/H07 require to work"},
	{ID: "save-unsq-fin", Area: "save/states", What: "our unsent FIN counted as unsent data", File: "soccr/save.go",
		Old: "if s.UnsqLen > 0 {\n\t\t\ts.UnsqLen--", New: "if false {\n\t\t\ts.UnsqLen--", Cases: `^(Q01|H06|H04|X10)/`},
	{ID: "save-close-zero", Area: "save/states", What: "CLOSE keeps the reset connection's unsent data", File: "soccr/save.go",
		Old: "s.OutqLen, s.UnsqLen = 0, 0", New: "_ = 0", Cases: `^(H11|H10|U02)/`,
		Equivalent: "a CLOSE socket reached through FIN exchange or RST has an empty write queue on 6.18 (tcp_done/tcp_write_queue_purge on RST; all data acked before CLOSE otherwise): SIOCOUTQ is 0, so zeroing changes nothing here"},
	{ID: "save-all-sent", Area: "save/queues", What: "unsent length read as 0 (all of outq treated as sent)", File: "soccr/save.go",
		Old: "s.OutqLen, s.UnsqLen = uint32(outq), uint32(unsq)", New: "s.OutqLen, s.UnsqLen = uint32(outq), uint32(unsq)*0", Cases: `^(Q02|Q01|E05|X14|E06|W01)/`},
	{ID: "save-all-unsent", Area: "save/queues", What: "all of outq treated as unsent", File: "soccr/save.go",
		Old: "s.OutqLen, s.UnsqLen = uint32(outq), uint32(unsq)", New: "s.OutqLen, s.UnsqLen = uint32(outq), uint32(outq)+uint32(unsq)*0", Cases: `^(Q02|Q01|E03|E04|E06|X01)/`},
	{ID: "save-wscale-swap", Area: "save/options", What: "snd/rcv wscale swapped when read from TCP_INFO", File: "soccr/save.go",
		Old: "s.SndWscale, s.RcvWscale = uint32(ti.SndWscale), uint32(ti.RcvWscale)", New: "s.SndWscale, s.RcvWscale = uint32(ti.RcvWscale), uint32(ti.SndWscale)", Cases: `^(X01|X02|X05|X08|M01)/`, Fast: true},
	{ID: "save-ts-zero", Area: "save/options", What: "TCP_TIMESTAMP not saved (0)", File: "soccr/save.go",
		Old: "s.Timestamp = uint32(ts)", New: "s.Timestamp = uint32(ts) * 0", Cases: `^(T01|T04|X02|X10)/`},
	{ID: "save-mss-sndmss", Area: "save/options", What: "MSS clamp taken from tcpi_snd_mss instead of TCP_MAXSEG", File: "soccr/save.go",
		Old: "s.MssClamp = uint32(mss)", New: "s.MssClamp = ti.SndMss + uint32(mss)*0", Cases: `^(X02|X04|X10|X05|X01)/`},
	{ID: "save-nosack", Area: "save/options", What: "SACK dropped from opt_mask", File: "soccr/save.go",
		Old: "s.OptMask = uint32(ti.Options)", New: "s.OptMask = uint32(ti.Options) &^ OptSack", Cases: `^(X07|R01|R02|E13)/`, Fast: true},
	{ID: "save-nots", Area: "save/options", What: "timestamps dropped from opt_mask", File: "soccr/save.go",
		Old: "s.OptMask = uint32(ti.Options)", New: "s.OptMask = uint32(ti.Options) &^ OptTimestamps", Cases: `^(T01|T04|X02)/`},
	{ID: "save-sndwnd-max", Area: "save/windows", What: "snd_wnd saved as max_window", File: "soccr/save.go",
		Old: "ne.Uint32(wb[0:]), ne.Uint32(wb[4:]), ne.Uint32(wb[8:])", New: "ne.Uint32(wb[0:]), ne.Uint32(wb[8:]), ne.Uint32(wb[8:])", Cases: `^(X14|W01|E05|E06|P08|W02)/`},
	{ID: "rst-rcvwup-nxt", Area: "restore/windows", What: "rcv_wup restored as rcv_nxt (the owed ACK forgotten)", File: "soccr/restore.go",
		Old: "r.d.MaxWindow, r.d.RcvWnd, r.d.RcvWup}", New: "r.d.MaxWindow, r.d.RcvWnd, r.d.InqSeq}", Cases: `^(X06|E02|X01)/`,
		Equivalent: "rcv_wup only anchors the smallest right edge the kernel keeps (rcv_wup + rcv_wnd, no shrinking): a later rcv_wup moves that edge right by the unacknowledged bytes (8 in X06), which the receive buffer covers, and the next ACK sets rcv_wup = rcv_nxt anyway; the peer never sees a different window"},
	{ID: "save-inq-seq+1", Area: "save/queues", What: "RECV TCP_QUEUE_SEQ read one too high", File: "soccr/save.go",
		Old: "return uint32(seq), buf[:n], nil", New: "return uint32(seq) + uint32(queue&1), buf[:n], nil", Cases: `^(E02|E07|H01|X01)/`, Fast: true},
	{ID: "save-peek-exact", Area: "save/queues", What: "peek buffer without the extra byte that proves the length", File: "soccr/save.go",
		Old: "buf := make([]byte, int(length)+1)", New: "buf := make([]byte, int(length))", Cases: `^(E02|E14|X01)/`,
		Equivalent: "the extra byte only detects a queue that grew between SIOC*Q and the peek; the lab (like CRIU) locks the network, so it never grows"},
	// --- restore: sequence numbers and FIN fix-ups ---
	{ID: "rst-inq-fin", Area: "restore/states", What: "no inq_seq-- for a received FIN", File: "soccr/restore.go",
		Old: "if m&(rcvqFirstFin|rcvqSecondFin) != 0 {\n\t\td.InqSeq--", New: "if false {\n\t\td.InqSeq--", Cases: `^(H01|H02|H08|H07|X08)/`, Fast: true},
	{ID: "rst-outq-fin", Area: "restore/states", What: "no outq_seq-- for our queued FIN", File: "soccr/restore.go",
		Old: "if m&(sndqFirstFin|sndqSecondFin) != 0 {\n\t\td.OutqSeq--", New: "if false {\n\t\td.OutqSeq--", Cases: `^(H04|H03|H05|H08|X10)/`},
	{ID: "rst-sndseq+1", Area: "restore/queues", What: "SEND TCP_QUEUE_SEQ one too high", File: "soccr/restore.go",
		Old: "seq := d.OutqSeq - d.OutqLen", New: "seq := d.OutqSeq - d.OutqLen + 1", Cases: `^(E01|E03|E04|X01)/`, Fast: true},
	{ID: "rst-rcvseq-1", Area: "restore/queues", What: "RECV TCP_QUEUE_SEQ one too low", File: "soccr/restore.go",
		Old: "int(int32(d.InqSeq-d.InqLen))", New: "int(int32(d.InqSeq-d.InqLen-1))", Cases: `^(X06|E01|E02|E07|X01)/`},
	{ID: "rst-synsent-seq", Area: "restore/states", What: "SYN_SENT without the seq-1 for the SYN", File: "soccr/restore.go",
		Old: "if d.State == SynSent {\n\t\tseq--", New: "if false {\n\t\tseq--", Cases: `^(S01|S02|P07)/`},
	// --- restore: options ---
	{ID: "rst-wscale-swap", Area: "restore/options", What: "TCPOPT_WINDOW with snd and rcv swapped", File: "soccr/restore.go",
		Old: "d.SndWscale+d.RcvWscale<<16", New: "d.RcvWscale+d.SndWscale<<16", Cases: `^(X01|X02|X05|X08|M01)/`, Fast: true},
	{ID: "rst-nosack", Area: "restore/options", What: "SACK_PERM not restored", File: "soccr/restore.go",
		Old: "opts = append(opts, tcpoptSackPerm, 0)", New: "opts = append(opts[:0:0], opts...)", Cases: `^(X07|R01|R02|E13)/`},
	{ID: "rst-nots", Area: "restore/options", What: "TIMESTAMP option not restored", File: "soccr/restore.go",
		Old: "opts = append(opts, tcpoptTimestamp, 0)", New: "opts = append(opts[:0:0], opts...)", Cases: `^(T01|T04|X02)/`},
	{ID: "rst-nomss-opt", Area: "restore/options", What: "MSS not passed in TCP_REPAIR_OPTIONS", File: "soccr/restore.go",
		Old: "opts = append(opts, tcpoptMSS, d.MssClamp)", New: "opts = append(opts[:0:0], opts...)", Cases: `^(X03|X04|X05|X09|W07)/`,
		Equivalent: "soccr already set TCP_MAXSEG to the clamp before connect(), and connect() copies user_mss into mss_clamp: the option would write the same value"},
	{ID: "rst-maxseg-low", Area: "restore/options", What: "TCP_MAXSEG before connect 100 bytes low", File: "soccr/restore.go",
		Old: "unix.TCP_MAXSEG, int(min(d.MssClamp, 32767)))", New: "unix.TCP_MAXSEG, int(min(d.MssClamp, 32767))-100)", Cases: `^(X01|X03|X04|X05)/`},
	{ID: "rst-ts-jump", Area: "restore/options", What: "TCP_TIMESTAMP restored 1e9 ahead", File: "soccr/restore.go",
		Old: "ts := d.Timestamp + uint32(r.faults.TimestampDelta)", New: "ts := d.Timestamp + 1000000000 + uint32(r.faults.TimestampDelta)", Cases: `^(T01|T04|X02|X10)/`, Fast: true},
	{ID: "rst-ts-usec", Area: "restore/options", What: "TCP_TIMESTAMP with the usec bit set", File: "soccr/restore.go",
		Old: "ts := d.Timestamp + uint32(r.faults.TimestampDelta)", New: "ts := d.Timestamp | 1 + uint32(r.faults.TimestampDelta)", Cases: `^(T01|T04|X02|X10)/`},
	{ID: "rst-ts-skip", Area: "restore/options", What: "TCP_TIMESTAMP never set", File: "soccr/restore.go",
		Old: "if err := r.setInt(\"TCP_TIMESTAMP\", tcpTimestamp, int(int32(ts))); err != nil {", New: "if err := error(nil); ts == 0 && err != nil {", Cases: `^(T01|T04|X02|X10)/`},
	// --- restore: windows ---
	{ID: "rst-nowindow", Area: "restore/windows", What: "TCP_REPAIR_WINDOW not restored", File: "soccr/restore.go",
		Old: "if s.HasWindow && !r.faults.NoWindow {", New: "if false && s.HasWindow && !r.faults.NoWindow {", Cases: `^(W01|E05|E06|P08|W02|X01|H15)/`},
	{ID: "rst-window-fin", Area: "restore/windows", What: "no rcv_wup--/rcv_wnd++ for a received FIN", File: "soccr/restore.go",
		Old: "w.rcvWup--\n\t\t\tw.rcvWnd++", New: "w.rcvWup += 0", Cases: `^(H01|H02|H07|H08|X08)/`,
		Refusal: "the fix-up only moves rcv_wup and rcv_wnd in opposite directions, so the right edge rcv_wup+rcv_wnd (all the peer and tcp_receive_window ever see) is the same with or without it; what it changes is the kernel's check in TCP_REPAIR_WINDOW (rcv_wup must not be after rcv_nxt, which is inq_seq-1 until the fake FIN): without an owed ACK at dump (rcv_wup = rcv_nxt, every FIN case here) the kernel refuses with EINVAL, the restore fails and, with CRIU, the dumped task and its connection are gone; with an owed ACK the check passes and nothing differs. So a failed restore of every half-closed-by-peer socket is the whole user-visible effect"},
	{ID: "rst-sndwnd-max", Area: "restore/windows", What: "snd_wnd restored as max_window", File: "soccr/restore.go",
		Old: "w := window{r.d.SndWl1, r.d.SndWnd, r.d.MaxWindow", New: "w := window{r.d.SndWl1, r.d.MaxWindow, r.d.MaxWindow", Cases: `^(X14|W01|E05|E06|P08|W02)/`},
	{ID: "rst-rcvbuf-small", Area: "restore/buffers", What: "SO_RCVBUF restored at a quarter", File: "soccr/restore.go",
		Old: "unix.SO_RCVBUFFORCE, s.RcvBuf/2)", New: "unix.SO_RCVBUFFORCE, s.RcvBuf/8)", Cases: `^(Q04|X01|X02|E14|W02)/`, Fast: true},
	// --- restore: queues ---
	{ID: "rst-unsent-as-sent", Area: "restore/queues", What: "the unsent tail written with repair on (as if sent)", File: "soccr/restore.go",
		Old: "sent := d.OutqLen - uint32(ulen)", New: "sent, ulen := d.OutqLen, int64(0)", Cases: `^(E05|E06|W01|E14|H06|P08)/`},
	{ID: "rst-sent-as-unsent", Area: "restore/queues", What: "the whole send queue written with repair off (as new data)", File: "soccr/restore.go",
		Old: "ulen := int64(d.UnsqLen) + int64(r.faults.UnsentDelta)", New: "ulen := int64(d.OutqLen) + int64(r.faults.UnsentDelta)", Cases: `^(E03|E04|E06|X01|H02|R09|P02)/`},
	{ID: "rst-partial-write", Area: "restore/queues", What: "a partial write taken as complete", File: "soccr/restore.go",
		Old: "buf = buf[n:]", New: "buf = buf[chunk:]", Cases: `^(E14|E18|E05|E06)/`,
		Refusal: "on 6.18 only receive-queue writes are ever partial (tcp_send_rcvq takes at most MAX_SKB_FRAGS pages per call; the send queue gets room from the SO_SNDBUF growth), so the bug skips receive-queue bytes and leaves rcv_nxt short of the dumped rcv_wup: TCP_REPAIR_WINDOW refuses (EINVAL) and the restore fails (with CRIU: the task and its connection are gone) in every dump that owes no large ACK; when a bulk transfer is dumped before its delayed ACK and the owed ACK covers the skipped bytes (E14/v4 in some runs), the restore succeeds and the wire oracles catch the hole (ack: A' acknowledges less than before, its reads lose the bytes)"},
	{ID: "rst-no-halving", Area: "restore/queues", What: "no chunk halving on a failed write", File: "soccr/restore.go",
		Old: "if maxChunk > 1024 {", New: "if maxChunk > 1<<40 {", Cases: `^(E14|P08|E05)/`,
		Equivalent: "halving was the workaround for linear-skb ENOMEM before 2016 (tcp.md section 6); on 6.18 a write into either queue does not fail for size, and the unsent tail gets room from soccr's temporary SO_SNDBUF growth"},
	{ID: "rst-skip-1byte-rcvq", Area: "restore/queues", What: "a one-byte receive queue is not restored", File: "soccr/restore.go",
		Old: "if d.InqLen > 0 {", New: "if d.InqLen > 1 {", Cases: `^(X15|X13|E02|E07)/`},
	{ID: "rst-no-sndbuf-boost", Area: "restore/buffers", What: "no temporary SO_SNDBUF growth while the queues are written", File: "soccr/restore.go",
		Old: "if s.SndBuf > 0 && s.OutqLen > 0 {\n\t\tif err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, max(", New: "if false {\n\t\tif err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, max(", Cases: `^(E18|E14)/v4`,
		Refusal: "the temporary growth only matters when the restored send queue does not fit the dumped SO_SNDBUF (E14/E18 on v4: skbs cut at the connect-time mss_cache); then the unsent tail's non-blocking write fails with EAGAIN and Restore returns the error (partial writes are kept, chunks halve down to 1 KiB first), so the queue is never silently truncated: the only effect is a failed restore, and with CRIU a failed restore leaves no task (the dump killed it) and the peer's next segment meets no socket (RST): the connection is lost. E14/E18 require the restore to work"},
	// --- restore: FIN states ---
	{ID: "rst-closing-nofin", Area: "restore/states", What: "CLOSING restored without our FIN", File: "soccr/soccr.go",
		Old: "FinWait1.mask() | FinWait2.mask() | Closing.mask() //", New: "FinWait1.mask() | FinWait2.mask() //", Cases: `^(Q03|H07|X11)/`},
	{ID: "rst-fw2-unacked", Area: "restore/states", What: "FIN_WAIT2's FIN not acked (restored as FIN_WAIT1)", File: "soccr/soccr.go",
		Old: "sndqFinAcked  = FinWait2.mask() | Close.mask()", New: "sndqFinAcked  = Close.mask()", Cases: `^(H03|P04|X09|P06)/`, Fast: true},
	{ID: "rst-finseq+1", Area: "restore/states", What: "fake peer FIN one byte late", File: "soccr/restore.go",
		Old: "seq := d.InqSeq + uint32(seqDelta)", New: "seq := d.InqSeq + 1 + uint32(seqDelta)", Cases: `^(H01|H02|H07|H08|X08)/`},
	{ID: "rst-fake-ack+1", Area: "restore/states", What: "fake peer packets acknowledge one byte too many", File: "soccr/restore.go",
		Old: "ack := d.OutqSeq - d.OutqLen", New: "ack := d.OutqSeq - d.OutqLen + 1", Cases: `^(H01|H02|H03|X08|H07)/`},
	{ID: "rst-fake-win0", Area: "restore/states", What: "fake peer FIN advertises a zero window", File: "soccr/restore.go",
		Old: "win := uint16(d.RcvWnd) //", New: "win := uint16(0) //", Cases: `^(H01|H02|X08|P04)/`},
	{ID: "rst-close-inq", Area: "restore/states", What: "CLOSE: inq_seq not advanced past the peer's FIN", File: "soccr/restore.go",
		Old: "if m&rcvqFinAcked != 0 {\n\t\tr.d.InqSeq++", New: "if false {\n\t\tr.d.InqSeq++", Cases: `^(H10|H11)/`},
	// --- v4/v6 and resume ---
	{ID: "v4-ipcsum", Area: "v4", What: "fake IPv4 packets without IP header checksum", File: "soccr/packet.go",
		Old: "be.PutUint16(ip[10:], checksum(ip, 0))", New: "_ = checksum", Cases: `^(H01|H03)/v4`, Fast: true},
	{ID: "v6-plen", Area: "v6", What: "fake IPv6 packets with a wrong payload length", File: "soccr/packet.go",
		Old: "be.PutUint16(ip[4:], 20)", New: "be.PutUint16(ip[4:], 40)", Cases: `^(H01|H03)/v6`},
	{ID: "v6-mapped-as-v4", Area: "v4/v6", What: "a v4-mapped AF_INET6 socket restored as AF_INET", File: "soccr/restore.go",
		Old: "if s.Src.Addr().Is6() { // includes v4-mapped", New: "if s.Src.Addr().Is6() && !s.Src.Addr().Is4In6() { // includes v4-mapped", Cases: `^(M01)/`},
	{ID: "v6-zone-lost", Area: "v6", What: "link-local scope id dropped at restore", File: "soccr/sys.go",
		Old: "sa.ZoneId = uint32(idx)", New: "sa.ZoneId = uint32(idx) * 0", Cases: `^(M02)/`,
		Refusal: "a link-local address without its scope id names no interface: bind() of the restored socket fails (EINVAL) before any TCP state exists, so no restored socket can ever behave differently; the only effect is a failed restore of every link-local connection (with CRIU: the task, killed by the dump, is gone with its connection), which M02 requires to work"},
	// --- added with the behavioural classification: restore order, TS offset, window clamp, v6 ---
	{ID: "rst-window-first", Area: "restore/order", What: "TCP_REPAIR_WINDOW set before the queues are written (the unsent tail then leaves into the network lock)", File: "soccr/restore.go",
		Old:   "\tif err := r.restoreQueues(); err != nil {\n\t\treturn err\n\t}\n\tif s.SndBuf > 0 && s.OutqLen > 0 {\n\t\tif err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, s.SndBuf/2); err != nil {\n\t\t\treturn r.err(\"setsockopt(SO_SNDBUFFORCE)\", err)\n\t\t}\n\t}\n\tif s.HasWindow && !r.faults.NoWindow {\n\t\tw := window{r.d.SndWl1, r.d.SndWnd, r.d.MaxWindow, r.d.RcvWnd, r.d.RcvWup}\n\t\tif m&(rcvqFirstFin|rcvqSecondFin) != 0 {\n\t\t\tw.rcvWup--\n\t\t\tw.rcvWnd++\n\t\t}\n\t\tr.logf(\"set window %+v\", w)\n\t\tif err := setsockoptBytes(fd, unix.SOL_TCP, tcpRepairWindow, w.bytes()); err != nil {\n\t\t\treturn r.err(\"setsockopt(TCP_REPAIR_WINDOW)\", err)\n\t\t}\n\t}\n",
		New:   "\tif s.HasWindow && !r.faults.NoWindow {\n\t\tw := window{r.d.SndWl1, r.d.SndWnd, r.d.MaxWindow, r.d.RcvWnd, r.d.RcvWup}\n\t\tif m&(rcvqFirstFin|rcvqSecondFin) != 0 {\n\t\t\tw.rcvWup--\n\t\t\tw.rcvWnd++\n\t\t}\n\t\tr.logf(\"set window %+v\", w)\n\t\tif err := setsockoptBytes(fd, unix.SOL_TCP, tcpRepairWindow, w.bytes()); err != nil {\n\t\t\treturn r.err(\"setsockopt(TCP_REPAIR_WINDOW)\", err)\n\t\t}\n\t}\n\tif err := r.restoreQueues(); err != nil {\n\t\treturn err\n\t}\n\tif s.SndBuf > 0 && s.OutqLen > 0 {\n\t\tif err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, s.SndBuf/2); err != nil {\n\t\t\treturn r.err(\"setsockopt(SO_SNDBUFFORCE)\", err)\n\t\t}\n\t}\n",
		Cases: `^(Q06|Q05|Q02|K04)/`, Fast: true},
	{ID: "rst-maxseg-late", Area: "restore/order", What: "TCP_MAXSEG not set before connect (libsoccr's order: mss_cache stays at the connect-time default)", File: "soccr/restore.go",
		Old: "if d.State != SynSent && !r.o.LibsoccrMSS && d.MssClamp >= 88 {", New: "if false && d.State != SynSent && !r.o.LibsoccrMSS && d.MssClamp >= 88 {", Cases: `^(X04|X03|X01|X05)/`},
	{ID: "rst-ts-back", Area: "restore/options", What: "TCP_TIMESTAMP restored 5 s behind the dumped clock (offset subtracted)", File: "soccr/restore.go",
		Old: "ts := d.Timestamp + uint32(r.faults.TimestampDelta)", New: "ts := d.Timestamp - 5000 + uint32(r.faults.TimestampDelta)", Cases: `^(T01|T04|X02|X10)/`},
	{ID: "rst-rcvwnd-clamp16", Area: "restore/windows", What: "rcv_wnd restored clamped to 65535 (an unscaled field)", File: "soccr/restore.go",
		Old: "r.d.MaxWindow, r.d.RcvWnd, r.d.RcvWup}", New: "r.d.MaxWindow, min(r.d.RcvWnd, 65535), r.d.RcvWup}", Cases: `^(X02|X05|E14|W01|Q04)/`},
	{ID: "v6-pseudo-len", Area: "v6", What: "fake IPv6 packets with the TCP length of the pseudo-header wrong (checksum bad on v6 only)", File: "soccr/packet.go",
		Old: "0, 0, 0, 20, 0, 0, 0, unix.IPPROTO_TCP)", New: "0, 0, 0, 40, 0, 0, 0, unix.IPPROTO_TCP)", Cases: `^(H01|H03|X08)/v6`},
	{ID: "resume-noprobe", Area: "resume", What: "Resume(probe=true) sends no window probe", File: "soccr/save.go",
		Old: "v, name := repairOff, \"OFF\"", New: "v, name := repairOffNoWP, \"OFF\"", Cases: `^(E16|E09|E01)/`},
}
