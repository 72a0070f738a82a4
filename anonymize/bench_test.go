package anonymize

import (
	"path/filepath"
	"strconv"
	"testing"

	"github.com/criukit/criukit/internal/harness"
)

// BenchmarkRun anonymizes the corpus "files" dump at each level (see bench/anonymize for the
// comparison with cp -r on a big dump).
func BenchmarkRun(b *testing.B) {
	d := harness.CorpusDump(b, "files")
	for _, lvl := range []Level{Content, Identity, Structure, Paranoid} {
		b.Run(lvl.String(), func(b *testing.B) {
			dir := b.TempDir()
			for i := 0; i < b.N; i++ {
				if _, err := Run(d.Dir, filepath.Join(dir, strconv.Itoa(i)), Options{Level: lvl, Key: testKey}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
