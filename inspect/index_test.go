package inspect

import (
	"bytes"
	"math/rand"
	"testing"
)

// TestIndex: the rare-byte literal search agrees with bytes.Index on random and adversarial data.
func TestIndex(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	alpha := []byte("ab-=\\x00")
	for i := 0; i < 20000; i++ {
		b := make([]byte, r.Intn(300))
		for k := range b {
			b[k] = alpha[r.Intn(len(alpha))]
		}
		p := make([]byte, 1+r.Intn(6))
		for k := range p {
			p[k] = alpha[r.Intn(len(alpha))]
		}
		m := matcher{lit: p, rare: rarest(p)}
		if got, want := m.index(b), bytes.Index(b, p); got != want {
			t.Fatalf("index(%q, %q) = %d, want %d", b, p, got, want)
		}
	}
}

func BenchmarkIndex(b *testing.B) {
	buf := make([]byte, 4<<20)
	rand.New(rand.NewSource(1)).Read(buf)
	const enc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := range buf {
		buf[i] = enc[buf[i]&63]
	}
	for _, p := range []string{"no-such-needle-anywhere-42", "PASSWORD=", "needle"} {
		m := matcher{lit: []byte(p), rare: rarest([]byte(p))}
		b.Run(p+"/rare", func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			for i := 0; i < b.N; i++ {
				m.index(buf)
			}
		})
		b.Run(p+"/bytes.Index", func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			for i := 0; i < b.N; i++ {
				bytes.Index(buf, m.lit)
			}
		})
	}
}
