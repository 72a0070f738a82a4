package cow

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/criukit/criukit/internal/pageproto"
)

// BenchmarkPageServerEngine measures the dedup engine on a synthetic page-server session: a root
// with 2048 random pages and 4 children sharing them (one child moved half of them).
func BenchmarkPageServerEngine(b *testing.B) {
	const n = 2048
	rnd := rand.New(rand.NewPCG(1, 2))
	pages := make([]byte, n*4096)
	for i := range pages {
		pages[i] = byte(rnd.Uint32())
	}
	var s []byte
	for p := uint64(0); p < 5; p++ {
		dst := (100+p)<<8 | pageproto.TypePid
		s = append(s, psMsg(pageproto.IovOpen2, 0, 0, dst)...)
		if p == 1 { // moved: second half first, at a lower address
			s = append(s, psMsg(pageproto.IovAddF|6<<16, n/2, 0x100000, dst)...)
			s = append(s, pages[n/2*4096:]...)
			s = append(s, psMsg(pageproto.IovAddF|6<<16, n/2, 0x10000000, dst)...)
			s = append(s, pages[:n/2*4096]...)
			continue
		}
		s = append(s, psMsg(pageproto.IovAddF|6<<16, n, 0x10000000, dst)...)
		s = append(s, pages...)
	}
	s = append(s, psMsg(pageproto.IovClose, 0, 0, 0)...)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		dir := b.TempDir()
		ps := &PageServer{dir: dir, d: newDeduper(dir, Options{}), ppids: map[int]int{101: 100, 102: 100, 103: 100, 104: 100}}
		if err := ps.Serve(&rw{r: bytes.NewReader(s)}); err != nil {
			b.Fatal(err)
		}
		res, err := ps.d.finish(5 * n * 4096)
		ps.d.close()
		if err != nil {
			b.Fatal(err)
		}
		if res.PagesAfter != n*4096 {
			b.Fatalf("stored %d bytes, want %d", res.PagesAfter, n*4096)
		}
	}
}
