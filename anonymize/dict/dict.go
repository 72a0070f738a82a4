package dict

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
)

// Kind is the category of a dictionary value.
type Kind string

// Entry is one sensitive value and its replacement (same length for text forms).
type Entry struct {
	Kind Kind
	From []byte
	To   []byte // nil: detect only (binary forms, --secret words found in no field)
}

// Dict is a set of entries plus a matcher. Build it with Add/Remove, then call Compile before
// sharing it between goroutines (matching is read-only and safe for concurrent use after that).
type Dict struct {
	entries  []Entry
	index    map[string]int
	tbl      [][]int32 // first two bytes -> entry indexes, longest first
	shift    []uint8   // Wu-Manber shift per 2-byte block at the end of a minLen window
	zeroSkip bool      // no value has a zero byte in its first minLen bytes
	hot      []uint64  // bitset of blocks whose shift is below the default (8 KiB: stays in L1)
	stop     []uint8   // 1 for hot blocks and the zero block: the fast path falls back to the slow one
	wide4    bool      // use the fast path of four windows
	wide8    bool      // use the fast path of eight windows (minLen 4)
	maxLen   int
	minLen   int
}

// MinLen is the shortest value kept in the dictionary; shorter values match too often.
const MinLen = 4

// New returns an empty dictionary.
func New() *Dict { return &Dict{index: map[string]int{}} }

// Add records a value. Values shorter than MinLen are ignored (reported false); a value added
// twice keeps its first replacement.
func (d *Dict) Add(kind Kind, from, to []byte) bool {
	if len(from) < MinLen || (to != nil && len(to) != len(from)) || bytes.Equal(from, to) {
		return false
	}
	if _, ok := d.index[string(from)]; ok {
		return false
	}
	d.index[string(from)] = len(d.entries)
	d.entries = append(d.entries, Entry{kind, append([]byte(nil), from...), append([]byte(nil), to...)})
	if to == nil {
		d.entries[len(d.entries)-1].To = nil
	}
	d.tbl = nil
	return true
}

// Remove drops a value (for --keep and values that are part of kept system strings).
func (d *Dict) Remove(from string) {
	i, ok := d.index[from]
	if !ok {
		return
	}
	d.entries[i].From = nil
	delete(d.index, from)
	d.tbl = nil
}

// Entries returns the live entries.
func (d *Dict) Entries() []Entry {
	var out []Entry
	for _, e := range d.entries {
		if e.From != nil {
			out = append(out, e)
		}
	}
	return out
}

// Len is the number of live entries.
func (d *Dict) Len() int { return len(d.index) }

// MaxLen is the length of the longest value.
func (d *Dict) MaxLen() int { d.compile(); return d.maxLen }

// Compile builds the matcher (done lazily by the other methods, but not safe concurrently).
func (d *Dict) Compile() { d.compile() }

func (d *Dict) compile() {
	if d.tbl != nil {
		return
	}
	d.tbl = make([][]int32, 1<<16)
	d.maxLen, d.minLen = 0, 1<<30
	for i, e := range d.entries {
		if e.From == nil {
			continue
		}
		k := int(e.From[0])<<8 | int(e.From[1])
		d.tbl[k] = append(d.tbl[k], int32(i))
		d.maxLen = max(d.maxLen, len(e.From))
		d.minLen = min(d.minLen, len(e.From))
	}
	if d.minLen > d.maxLen {
		d.minLen = MinLen
	}
	// Wu-Manber: a window of minLen bytes starting at i can only start a match when the block
	// b[i+minLen-2:i+minLen] occurs in some value's first minLen bytes; otherwise skip ahead.
	// zero runs can be skipped when no value has a zero byte in its first minLen bytes
	d.zeroSkip = true
	for _, e := range d.entries {
		if e.From != nil && bytes.IndexByte(e.From[:d.minLen], 0) >= 0 {
			d.zeroSkip = false
		}
	}
	d.shift = make([]uint8, 1<<16)
	def := uint8(min(d.minLen-1, 255))
	for i := range d.shift {
		d.shift[i] = def
	}
	d.hot = make([]uint64, 1<<16/64)
	for _, e := range d.entries {
		if e.From == nil {
			continue
		}
		for q := 0; q+1 < d.minLen; q++ {
			blk := int(e.From[q]) | int(e.From[q+1])<<8 // little-endian block key
			if s := uint8(d.minLen - 2 - q); s < d.shift[blk] {
				d.shift[blk] = s
				d.hot[blk>>6] |= 1 << (blk & 63)
			}
		}
	}
	// a byte table (64 KiB) is faster to probe than the bitset (no variable shifts)
	d.stop = make([]uint8, 1<<16)
	for k := range d.stop {
		d.stop[k] = uint8(d.hot[k>>6] >> (k & 63) & 1)
	}
	d.stop[0] = 1
	// the fast paths pay when most groups of windows are clean (small dictionaries); with
	// many values they would mostly fall back, so they are turned off
	clean := 0
	for _, v := range d.stop {
		clean += int(1 - v)
	}
	p := float64(clean) / float64(len(d.stop))
	p4 := p * p * p * p
	d.wide4 = p4 >= 0.9
	d.wide8 = d.minLen == 4 && p4*p4 >= 0.8
	for _, l := range d.tbl {
		sort.Slice(l, func(a, b int) bool { return len(d.entries[l[a]].From) > len(d.entries[l[b]].From) })
	}
}

// match returns the entry matching at b[i:], or -1.
func (d *Dict) match(b []byte, i int) int {
	if i+1 >= len(b) {
		return -1
	}
	l := d.tbl[int(b[i])<<8|int(b[i+1])]
	for _, j := range l {
		if bytes.HasPrefix(b[i:], d.entries[j].From) {
			return int(j)
		}
	}
	return -1
}

// Hit is one occurrence of a value.
type Hit struct {
	Offset int64
	Entry  Entry
}

func (h Hit) String() string {
	return fmt.Sprintf("offset %d: %s %q", h.Offset, h.Entry.Kind, h.Entry.From)
}

// ReplaceBytes replaces, left to right and longest first, every value that has a replacement,
// in place. Matches starting at or after limit are left alone (streaming callers pass the
// start of the carried tail); it returns the number of replacements.
func (d *Dict) ReplaceBytes(b []byte, limit int) int {
	d.compile()
	n := 0
	d.scan(b, limit, func(i, j int) int {
		if d.entries[j].To == nil {
			return 1
		}
		copy(b[i:], d.entries[j].To)
		n++
		return len(d.entries[j].To)
	})
	return n
}

// scan calls fn for every position i < limit where entry j matches (longest first); fn returns
// how far to advance.
func (d *Dict) scan(b []byte, limit int, fn func(i, j int) int) {
	if len(d.index) == 0 {
		return
	}
	limit = min(limit, len(b))
	shift, tbl, n := (*[1 << 16]uint8)(d.shift), d.tbl, len(b)
	hot := (*[1 << 16 / 64]uint64)(d.hot)
	stop := (*[1 << 16]uint8)(d.stop)
	w := d.minLen - 2 // start of the block at the end of a minLen window
	def := d.minLen - 1
	zeroSkip, wide4, wide8 := d.zeroSkip, d.wide4, d.wide8
	fast, fastBytes, fallbacks := wide4 || wide8, 0, 0
	// the fast path checks the end blocks of four consecutive windows (def bytes apart) at
	// once: when none is hot (nor zero), no match starts in the next 4*def positions
	span := w + 3*def + 2
	i := 0
	for i < limit {
		if fast {
			from := i
			if wide8 {
				// minLen 4 (the common case): eight windows per three 8-byte loads
				for i < limit && i+w+24 <= n {
					x := binary.LittleEndian.Uint64(b[i+w:])
					y := binary.LittleEndian.Uint64(b[i+w+8:])
					z := binary.LittleEndian.Uint64(b[i+w+16:])
					k0, k1, k2 := uint16(x), uint16(x>>24), uint16(x>>48)
					k3, k4 := uint16(y>>8), uint16(y>>32)
					k5, k6, k7 := uint16(y>>56|z<<8), uint16(z>>16), uint16(z>>40)
					if stop[k0]|stop[k1]|stop[k2]|stop[k3]|stop[k4]|stop[k5]|stop[k6]|stop[k7] != 0 {
						break
					}
					i += 24
				}
			}
			for wide4 && i < limit && i+span <= n {
				bb := b[i+w : i+span]
				b0 := uint16(bb[0]) | uint16(bb[1])<<8
				b1 := uint16(bb[def]) | uint16(bb[def+1])<<8
				b2 := uint16(bb[2*def]) | uint16(bb[2*def+1])<<8
				b3 := uint16(bb[3*def]) | uint16(bb[3*def+1])<<8
				if stop[b0]|stop[b1]|stop[b2]|stop[b3] != 0 {
					break
				}
				i += 4 * def
			}
			// a fall back costs about as much as scanning a few dozen bytes the slow way: when
			// the data makes the fast path fall back too often, leave it off for this buffer
			fastBytes += i - from
			if fallbacks++; fallbacks >= 64 && fastBytes < 32*fallbacks {
				fast = false
			}
		}
		if i >= limit {
			break
		}
		if i+w+2 <= n {
			blk := binary.LittleEndian.Uint16(b[i+w:])
			if hot[blk>>6]&(1<<(blk&63)) == 0 && blk != 0 {
				i += def
				continue
			}
			if s := shift[blk]; s > 0 {
				if blk == 0 && zeroSkip {
					// a zero run b[i+w:z]: no value has a zero byte in its first minLen bytes,
					// so no match starts at i..z-1 (each such window holds a byte of the run)
					i = zeroRun(b, i+w, limit+w)
					continue
				}
				i += int(s)
				continue
			}
		}
		if i+1 < n && tbl[int(b[i])<<8|int(b[i+1])] != nil {
			if j := d.match(b, i); j >= 0 {
				i += fn(i, j)
				continue
			}
		}
		i++
	}
}

// zeroRun returns the first index >= from (and <= max(to, from)) at which b is not zero, or
// min(to, len(b)) when b is zero up to there.
func zeroRun(b []byte, from, to int) int {
	to = min(to, len(b))
	i := from
	for i+len(zeroBlock) <= to && bytes.Equal(b[i:i+len(zeroBlock)], zeroBlock[:]) {
		i += len(zeroBlock) // memequal is vectorized
	}
	for i+64 <= to && bytes.Equal(b[i:i+64], zeroBlock[:64]) {
		i += 64
	}
	for i < to && b[i] == 0 {
		i++
	}
	return i
}

var zeroBlock [1024]byte

// Find reports the occurrences of any value in b starting before limit.
func (d *Dict) Find(b []byte, limit int, base int64, fn func(Hit) bool) {
	d.compile()
	stop := false
	d.scan(b, limit, func(i, j int) int {
		if stop {
			return len(b)
		}
		if !fn(Hit{base + int64(i), d.entries[j]}) {
			stop = true
			return len(b)
		}
		return 1
	})
}

// ChunkSize is the streaming buffer size.
const ChunkSize = 1 << 20

// Stream copies r to w, replacing values on the way (w may be nil to only count); fn, when
// not nil, is called for every value that remains (detect-only entries). Memory use is
// ChunkSize plus the longest value.
func (d *Dict) Stream(r io.Reader, w io.Writer, replace bool, fn func(Hit) bool) (replaced int, err error) {
	d.compile()
	tail := max(d.maxLen-1, 0)
	buf := make([]byte, ChunkSize+tail)
	n, base := 0, int64(0)
	stop := false
	for {
		m, rerr := io.ReadFull(r, buf[n:])
		n += m
		eof := rerr == io.EOF || rerr == io.ErrUnexpectedEOF
		if rerr != nil && !eof {
			return replaced, rerr
		}
		limit := n - tail
		if eof {
			limit = n
		}
		if limit < 0 {
			limit = 0
		}
		if replace {
			replaced += d.ReplaceBytes(buf[:n], limit)
		}
		if fn != nil && !stop {
			d.Find(buf[:n], limit, base, func(h Hit) bool {
				if !fn(h) {
					stop = true
				}
				return !stop
			})
		}
		if w != nil {
			if _, err := w.Write(buf[:limit]); err != nil {
				return replaced, err
			}
		}
		if eof {
			return replaced, nil
		}
		copy(buf, buf[limit:n])
		base += int64(limit)
		n -= limit
	}
}

// ErrLeak is returned by leak checks.
var ErrLeak = errors.New("leak")
