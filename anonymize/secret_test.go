package anonymize

import (
	"bytes"
	"testing"

	"github.com/criukit/criukit/anonymize/dict"
)

// TestSecretPieces: every findable piece of a --secret value (whole, UTF-16LE, prefixes and
// suffixes >= 6 bytes, 7/8-byte windows) is replaced in memory-like bytes, and nothing is left.
func TestSecretPieces(t *testing.T) {
	const s = "criukit-planted-secret-C0FFEE"
	r, err := newRun(t.TempDir(), t.TempDir(), Options{Level: Content, Key: testKey, Secrets: []string{s}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.Write(bytes.Repeat([]byte{0x11}, 100))
	for _, p := range [][]byte{[]byte(s), utf16le(s), []byte(s[:9]), []byte(s[len(s)-7:]), []byte(s[5:13]), []byte(s[3:10])} {
		buf.Write(p)
		buf.Write([]byte{0, 0x7f, 3})
	}
	b := buf.Bytes()
	n := r.sec.ReplaceBytes(b, len(b))
	var left []string
	r.sec.Find(b, len(b), 0, func(h dict.Hit) bool { left = append(left, h.String()); return true })
	if n < 6 || len(left) > 0 {
		t.Fatalf("replaced %d, left %v", n, left)
	}
	if bytes.Contains(b, []byte("planted")) {
		t.Fatalf("secret left: %q", b)
	}
}
