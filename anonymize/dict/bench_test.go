package dict

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

func benchDict() *Dict {
	d := New()
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 200; i++ {
		w := make([]byte, 4+rng.IntN(20))
		for j := range w {
			w[j] = "abcdefghijklmnopqrstuvwxyz/-._0123456789"[rng.IntN(40)]
		}
		to := bytes.Repeat([]byte("x"), len(w))
		d.Add("w", w, to)
	}
	return d
}

// BenchmarkStream measures the dictionary replacement on random data (worst case for the
// first-bytes filter: real memory has long runs of zeros).
func BenchmarkStream(b *testing.B) {
	d := benchDict()
	data := make([]byte, 32<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for _, name := range []string{"random", "zeros"} {
		buf := data
		if name == "zeros" {
			buf = make([]byte, len(data))
		}
		b.Run(fmt.Sprint(name), func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			for i := 0; i < b.N; i++ {
				d.Stream(bytes.NewReader(buf), io.Discard, true, nil)
			}
		})
	}
}
