package critjson

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/criukit/criukit/image"
)

// BenchmarkRoundTrip measures decode (binary -> JSON) + encode (JSON -> binary) of the images of
// $CRIUKIT_BENCH_DIR (default: the small dump bench/crit makes is not available here, so skip).
func BenchmarkRoundTrip(b *testing.B) {
	dir := os.Getenv("CRIUKIT_BENCH_DIR")
	if dir == "" {
		b.Skip("set CRIUKIT_BENCH_DIR to a dump directory")
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range ents {
		d, err := image.Classify(e.Name())
		if err != nil || d.Raw == image.RawPages || !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(e.Name(), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for i := 0; i < b.N; i++ {
				img, err := image.Decode(bytes.NewReader(data), e.Name())
				if err != nil {
					b.Fatal(err)
				}
				js, err := Marshal(img, Options{})
				if err != nil {
					b.Fatal(err)
				}
				back, err := Unmarshal(js, e.Name())
				if err != nil {
					b.Fatal(err)
				}
				var out bytes.Buffer
				if err := back.Encode(&out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
