package dict

import (
	"bytes"
	"testing"
)

func TestStreamAcrossChunks(t *testing.T) {
	d := New()
	d.Add("path", []byte("alice-secret"), []byte("qwertyuiopas"))
	d.Add("path", []byte("alice"), []byte("zzzzz"))
	d.Add("ip", []byte{10, 20, 30, 40}, nil)
	if d.Add("x", []byte("ab"), []byte("cd")) {
		t.Error("short value accepted")
	}
	for _, at := range []int{0, ChunkSize - 5, ChunkSize - 1, ChunkSize, 2*ChunkSize - 11, 3*ChunkSize - 20} {
		data := make([]byte, 3*ChunkSize)
		copy(data[at:], "alice-secret")
		copy(data[100:], "alice")
		copy(data[len(data)-4:], []byte{10, 20, 30, 40})
		var out bytes.Buffer
		var hits []Hit
		n, err := d.Stream(bytes.NewReader(data), &out, true, func(h Hit) bool { hits = append(hits, h); return true })
		if err != nil || out.Len() != len(data) {
			t.Fatalf("at %d: err %v len %d", at, err, out.Len())
		}
		want := 2
		if n != want || bytes.Contains(out.Bytes(), []byte("alice")) || !bytes.Contains(out.Bytes(), []byte("qwertyuiopas")) {
			t.Errorf("at %d: %d replacements, leftovers %v", at, n, bytes.Contains(out.Bytes(), []byte("alice")))
		}
		if len(hits) != 1 || hits[0].Offset != int64(len(data)-4) {
			t.Errorf("at %d: hits %v", at, hits)
		}
	}
}

func FuzzReplace(f *testing.F) {
	f.Add([]byte("xx alice-secret yy alice"), 3)
	f.Add([]byte("alicalice"), 1)
	f.Fuzz(func(t *testing.T, data []byte, cut int) {
		d := New()
		d.Add("a", []byte("alice-secret"), []byte("qwertyuiopas"))
		d.Add("a", []byte("alice"), []byte("zzzzz"))
		d.Add("a", []byte("lice"), []byte("LICE"))
		whole := append([]byte(nil), data...)
		d.ReplaceBytes(whole, len(whole))
		var out bytes.Buffer
		if _, err := d.Stream(bytes.NewReader(data), &out, true, nil); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), whole) || len(whole) != len(data) {
			t.Fatalf("stream %q != whole %q", out.Bytes(), whole)
		}
		if bytes.Contains(whole, []byte("alice")) && !bytes.Contains(data, []byte("zzzzz")) && !bytes.Contains(data, []byte("qwertyuiopas")) {
			t.Fatalf("leftover in %q -> %q", data, whole)
		}
	})
}

func FuzzScanBinary(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x0a\x00\x00\x01abcd\x00\x00"), []byte{10, 0, 0, 1})
	f.Add(make([]byte, 40), []byte("wxyz"))
	f.Fuzz(func(t *testing.T, data, word []byte) {
		d := New()
		if !d.Add("w", word, nil) {
			return
		}
		var got []int64
		d.Find(data, len(data), 0, func(h Hit) bool { got = append(got, h.Offset); return true })
		var want []int64
		for i := 0; i+len(word) <= len(data); i++ {
			if bytes.Equal(data[i:i+len(word)], word) {
				want = append(want, int64(i))
			}
		}
		if len(got) != len(want) {
			t.Fatalf("found %v, want %v", got, want)
		}
	})
}
