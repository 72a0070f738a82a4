package anonymize

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/criukit/criukit/anonymize/dict"
)

// TestIdentityPagesChunks: the two-stage pages pipeline writes exactly the bytes of a
// whole-buffer replacement plus the argv/env patches, and its leak scan reports every value
// left in those final bytes, chunk boundaries included.
func TestIdentityPagesChunks(t *testing.T) {
	r := testRun(t, Identity)
	r.d = dict.New()
	r.d.Add("path", []byte("/home/alice/secret-project"), []byte("/home/xxxxx/yyyyyyyyyyyyyy"))
	r.d.Add("host", []byte("alicebox"), []byte("hhhhhhhh"))
	r.d.Add("ip", []byte{10, 1, 2, 3}, nil)               // detect only: stays, must be reported
	r.d.Add("env", []byte("TOKEN-0123456789abcdef"), nil) // detect only
	r.d.Compile()
	words := [][]byte{[]byte("/home/alice/secret-project"), []byte("alicebox"), {10, 1, 2, 3}, []byte("TOKEN-0123456789abcdef")}
	for _, w := range words {
		for _, back := range []int{0, 1, len(w) / 2, len(w) - 1, len(w)} {
			checkIdentityPages(t, r, w, back)
		}
	}
}

func checkIdentityPages(t *testing.T, r *run, w []byte, back int) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 3*dict.ChunkSize+12345)
	for i := range data {
		if i%4096 < 2048 {
			data[i] = byte(rng.Uint32())
		}
	}
	for k := 1; k <= 3; k++ {
		copy(data[k*dict.ChunkSize-back:], w)
	}
	copy(data[len(data)-4:], []byte{10, 1, 2, 3})
	patches := []areaPatch{{"pages-1.img", dict.ChunkSize - 3, []byte("PATCH")}, {"pages-1.img", 5, []byte("TOKEN-0123456789abcdef")}}
	want := append([]byte(nil), data...)
	wantN := r.d.ReplaceBytes(want, len(want))
	for _, p := range patches {
		copy(want[p.off:], p.data)
	}
	var wantHits []int64
	r.d.Find(want, len(want), 0, func(h dict.Hit) bool { wantHits = append(wantHits, h.Offset); return true })
	var out bytes.Buffer
	var hits []int64
	n, err := r.identityPages(r.d, bytes.NewReader(data), &out, patches, func(h dict.Hit) bool { hits = append(hits, h.Offset); return true })
	if err != nil {
		t.Fatal(err)
	}
	if n != wantN || !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("%q %d bytes before a chunk end: output differs from the whole-buffer replacement (%d replacements, want %d)", w, back, n, wantN)
	}
	if len(hits) != len(wantHits) {
		t.Fatalf("%q %d bytes before a chunk end: leak scan found %d values, want %d (%v vs %v)", w, back, len(hits), len(wantHits), hits, wantHits)
	}
	for i := range hits {
		if hits[i] != wantHits[i] {
			t.Fatalf("%q %d bytes before a chunk end: hit %d at offset %d, want %d", w, back, i, hits[i], wantHits[i])
		}
	}
}

type failAfter struct {
	n   int
	err error
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	m := min(len(p), f.n)
	clear(p[:m])
	f.n -= m
	return m, nil
}

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n < len(p) {
		return 0, f.err
	}
	f.n -= len(p)
	return len(p), nil
}

// TestIdentityPagesErrors: a read or write error mid-file is returned, without hanging.
func TestIdentityPagesErrors(t *testing.T) {
	r := testRun(t, Identity)
	r.d = dict.New()
	r.d.Add("host", []byte("alicebox"), []byte("hhhhhhhh"))
	bad := errors.New("disk on fire")
	src := bytes.NewReader(make([]byte, 10*dict.ChunkSize))
	if _, err := r.identityPages(r.d, &failAfter{3*dict.ChunkSize + 5, bad}, io.Discard, nil, func(dict.Hit) bool { return true }); !errors.Is(err, bad) {
		t.Errorf("read error: got %v", err)
	}
	if _, err := r.identityPages(r.d, src, &failAfter{2 * dict.ChunkSize, bad}, nil, func(dict.Hit) bool { return true }); !errors.Is(err, bad) {
		t.Errorf("write error: got %v", err)
	}
}
