package memtrack_test

import (
	"testing"

	"github.com/criukit/criukit/internal/testenv"
	"github.com/criukit/criukit/memtrack"
)

// BenchmarkScanAllDirty: one PAGEMAP_SCAN + re-protect of a 1024-page region whose pages were all
// written (the writes themselves are not timed).
func BenchmarkScanAllDirty(b *testing.B) {
	testenv.Root(b)
	const pages = 1024
	w := startWriterTB(b, pages)
	tr, err := memtrack.Attach(w.p.Pid, memtrack.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	all := make([]int, pages)
	for i := range all {
		all[i] = i
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		w.write(b, all)
		b.StartTimer()
		iv, err := tr.Scan(false)
		if err != nil {
			b.Fatal(err)
		}
		if iv.Pages < pages {
			b.Fatalf("scan saw %d pages, %d written", iv.Pages, pages)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*pages), "ns/page")
}
