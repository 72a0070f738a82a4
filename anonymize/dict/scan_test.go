package dict

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestScanMatchesNaive checks the skipping matcher (fast paths for minLen 4 and longer, zero
// runs) against a naive search: every start position of every value is found, and the
// replacement equals a naive left-to-right, longest-first replacement.
func TestScanMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for round := 0; round < 60; round++ {
		d := New()
		minLen := 4 + round%5
		var vals [][]byte
		for k := 0; k < 1+rng.IntN(40); k++ {
			v := make([]byte, minLen+rng.IntN(12))
			for j := range v {
				v[j] = byte(1 + rng.IntN(6)) // small alphabet: many overlaps and partial matches
				if round%3 == 0 && rng.IntN(4) == 0 {
					v[j] = 0 // values with zero bytes turn the zero-run skip off
				}
			}
			var to []byte
			if rng.IntN(3) > 0 {
				to = bytes.Repeat([]byte{0xee}, len(v))
			}
			if d.Add("v", v, to) {
				vals = append(vals, v)
			}
		}
		data := make([]byte, 20000)
		for i := 0; i < len(data); {
			switch rng.IntN(4) {
			case 0: // zero run
				i += rng.IntN(300)
			case 1: // planted value
				i += copy(data[i:], vals[rng.IntN(len(vals))])
			default:
				for n := rng.IntN(100); n > 0 && i < len(data); n-- {
					data[i] = byte(rng.IntN(8))
					if rng.IntN(2) == 0 {
						data[i] = byte(rng.Uint32())
					}
					i++
				}
			}
		}
		match := func(b []byte, i int) []byte {
			var best []byte
			for _, v := range vals {
				if bytes.HasPrefix(b[i:], v) && len(v) > len(best) {
					best = v
				}
			}
			return best
		}
		var want []int64
		for i := range data {
			if match(data, i) != nil {
				want = append(want, int64(i))
			}
		}
		var got []int64
		d.Find(data, len(data), 0, func(h Hit) bool { got = append(got, h.Offset); return true })
		if len(got) != len(want) {
			t.Fatalf("round %d (minLen %d): found %d positions, want %d", round, minLen, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("round %d: hit %d at %d, want %d", round, i, got[i], want[i])
			}
		}
		naive := append([]byte(nil), data...)
		for i := 0; i < len(naive); {
			v := match(naive, i)
			e := d.entries[d.index[string(v)]]
			if v == nil || e.To == nil {
				i++
				continue
			}
			copy(naive[i:], e.To)
			i += len(v)
		}
		fast := append([]byte(nil), data...)
		d.ReplaceBytes(fast, len(fast))
		if !bytes.Equal(fast, naive) {
			t.Fatalf("round %d: replacement differs from the naive one", round)
		}
	}
}
