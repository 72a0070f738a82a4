package image

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/criukit/criukit/internal/harness"
)

type benchFile struct {
	name string
	data []byte
}

func benchDecodeEncode(b *testing.B, files []benchFile) {
	var total int64
	for _, f := range files {
		total += int64(len(f.data))
	}
	b.SetBytes(total)
	b.ReportAllocs()
	var out bytes.Buffer
	for i := 0; i < b.N; i++ {
		for _, f := range files {
			img, err := Decode(bytes.NewReader(f.data), f.name)
			if err != nil {
				b.Fatal(err)
			}
			out.Reset()
			if err := img.Encode(&out); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkDecodeEncode decodes and re-encodes every file (pages excluded: they are raw copies) of the
// synthesized set and of each corpus dump.
func BenchmarkDecodeEncode(b *testing.B) {
	var syn []benchFile
	for _, s := range synthImages() {
		syn = append(syn, benchFile{s.name, s.data})
	}
	b.Run("synth", func(b *testing.B) { benchDecodeEncode(b, syn) })
	if os.Geteuid() != 0 {
		return
	}
	for _, d := range harness.Corpus(b) {
		var files []benchFile
		ents, _ := os.ReadDir(d.Dir)
		for _, e := range ents {
			if !e.Type().IsRegular() {
				continue
			}
			if desc, err := Classify(e.Name()); err != nil || desc.Kind == KindRaw {
				continue
			}
			data, err := os.ReadFile(filepath.Join(d.Dir, e.Name()))
			if err != nil {
				b.Fatal(err)
			}
			files = append(files, benchFile{e.Name(), data})
		}
		b.Run("corpus-"+d.Workload, func(b *testing.B) { benchDecodeEncode(b, files) })
	}
}

// BenchmarkStreamSkip walks the entries of a chunked ghost file without reading the content.
func BenchmarkStreamSkip(b *testing.B) {
	var data []byte
	for _, s := range synthImages() {
		if s.name == "ghost-file-2.img" {
			data = s.data
		}
	}
	p := filepath.Join(b.TempDir(), "ghost-file-2.img")
	os.WriteFile(p, data, 0o600)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r, err := Open(p)
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := r.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
		r.Close()
	}
}

// BenchmarkMemoryReadAt reads 4 KiB pages through Memory from a 1 GiB sparse pages file.
func BenchmarkMemoryReadAt(b *testing.B) {
	dir := b.TempDir()
	const nr = 1 << 30 / 4096
	bb := new(builder).head(0x56084025).msg(&pagemapHead1)
	bb.msg(pagemapEntry(0x7f0000000000, nr))
	writeImg(b, dir, "pagemap-1.img", bb)
	f, _ := os.Create(filepath.Join(dir, "pages-1.img"))
	f.Truncate(nr * 4096)
	f.Close()
	m, err := OpenMemory(dir, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	p := make([]byte, 4096)
	b.SetBytes(4096)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := m.ReadAt(p, 0x7f0000000000+int64(i%nr)*4096); err != nil {
			b.Fatal(err)
		}
	}
}
