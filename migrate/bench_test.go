package migrate

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkChainWriter: the receiver storing a 64 MiB round where every other 16-page run is
// PE_PARENT (bytes/s of protocol input).
func BenchmarkChainWriter(b *testing.B) {
	ps := uint64(os.Getpagesize())
	var in bytes.Buffer
	in.Write(psHdr{cmd: psIovOpen2, dstID: 1<<8 | psTypePid}.bytes())
	data := bytes.Repeat([]byte{7}, int(16*ps))
	for va := uint64(0x100000); va < 0x100000+64<<20; va += 32 * ps {
		in.Write(psHdr{cmd: psIovAddF, flags: pePresent, nr: 16, vaddr: va, dstID: 1<<8 | psTypePid}.bytes())
		in.Write(data)
		in.Write(psHdr{cmd: psIovAddF, flags: peParent, nr: 16, vaddr: va + 16*ps, dstID: 1<<8 | psTypePid}.bytes())
	}
	in.Write(psHdr{cmd: psIovClose}.bytes())
	raw := in.Bytes()
	b.SetBytes(int64(len(raw)))
	base := b.TempDir()
	for i := 0; b.Loop(); i++ {
		w, err := newChainWriter(filepath.Join(base, "r", string(rune('a'+i%26)), "x"+string(rune('a'+i/26%26))), "../p")
		if err != nil {
			b.Fatal(err)
		}
		if err := w.serve(&rwBuf{Reader: bytes.NewReader(raw)}); err != nil {
			b.Fatal(err)
		}
		os.RemoveAll(w.dir)
	}
}
