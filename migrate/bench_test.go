package migrate

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/internal/pageproto"
)

// BenchmarkChainWriter: the receiver storing a 64 MiB round where every other 16-page run is
// PE_PARENT (bytes/s of protocol input).
func BenchmarkChainWriter(b *testing.B) {
	ps := uint64(os.Getpagesize())
	var in bytes.Buffer
	in.Write(pageproto.Header{Cmd: pageproto.IovOpen2, DstID: 1<<8 | pageproto.TypePid}.Bytes())
	data := bytes.Repeat([]byte{7}, int(16*ps))
	for va := uint64(0x100000); va < 0x100000+64<<20; va += 32 * ps {
		in.Write(pageproto.Header{Cmd: pageproto.IovAddF, Flags: image.PEPresent, Nr: 16, Vaddr: va, DstID: 1<<8 | pageproto.TypePid}.Bytes())
		in.Write(data)
		in.Write(pageproto.Header{Cmd: pageproto.IovAddF, Flags: image.PEParent, Nr: 16, Vaddr: va + 16*ps, DstID: 1<<8 | pageproto.TypePid}.Bytes())
	}
	in.Write(pageproto.Header{Cmd: pageproto.IovClose}.Bytes())
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
