package compress

import (
	"bytes"
	"io"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	data := bytes.Repeat([]byte("criukit checkpoint archive "), 5000)
	for _, k := range []Kind{None, Gzip, Zstd} {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if got := Detect(buf.Bytes()); got != k {
			t.Fatalf("%v: detected %v", k, got)
		}
		r, got, err := NewReader(&buf)
		if err != nil || got != k {
			t.Fatalf("%v: NewReader kind %v err %v", k, got, err)
		}
		out, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("%v: round trip differs (err %v, %d bytes)", k, err, len(out))
		}
	}
}

func TestShortAndCorrupt(t *testing.T) {
	for _, in := range [][]byte{nil, {0x1f}, {0x1f, 0x8b, 0, 0}, {0x28, 0xb5, 0x2f, 0xfd, 0xff}} {
		r, _, err := NewReader(bytes.NewReader(in))
		if err != nil {
			continue
		}
		io.Copy(io.Discard, r) // must not panic
		r.Close()
	}
}

func FuzzReader(f *testing.F) {
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x00})
	f.Add([]byte{0x1f, 0x8b, 0x08, 0x00})
	f.Fuzz(func(t *testing.T, in []byte) {
		r, _, err := NewReader(bytes.NewReader(in))
		if err != nil {
			return
		}
		io.Copy(io.Discard, io.LimitReader(r, 64<<20))
		r.Close()
	})
}
