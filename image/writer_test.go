package image

import (
	"bytes"
	"errors"
	"testing"

	pagemap "github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"google.golang.org/protobuf/proto"
)

// TestWriteEncoded: an entry written pre-encoded gives the same file as Write, and the head and
// images with extras are refused.
func TestWriteEncoded(t *testing.T) {
	d, err := Classify("pagemap-7.img")
	if err != nil {
		t.Fatal(err)
	}
	head := &pagemap.PagemapHead{PagesId: proto.Uint32(3)}
	e := &pagemap.PagemapEntry{Vaddr: proto.Uint64(0x7f0000000000), CompatNrPages: proto.Uint32(2), Flags: proto.Uint32(PEPresent)}
	var a, b bytes.Buffer
	wa, _ := NewWriter(&a, "pagemap-7.img", d, nil)
	wb, _ := NewWriter(&b, "pagemap-7.img", d, nil)
	if err := wb.WriteEncoded([]byte{8, 1}); !errors.Is(err, ErrWrongMessage) {
		t.Errorf("WriteEncoded as the head: %v, want ErrWrongMessage", err)
	}
	p, _ := proto.Marshal(e)
	for _, err := range []error{wa.Write(head, nil), wa.Write(e, nil), wb.Write(head, nil), wb.WriteEncoded(p)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Errorf("Write %x, WriteEncoded %x", a.Bytes(), b.Bytes())
	}
	pd, _ := Classify("pipes-data.img")
	wp, _ := NewWriter(&bytes.Buffer{}, "pipes-data.img", pd, nil)
	if err := wp.WriteEncoded(p); !errors.Is(err, ErrWrongMessage) {
		t.Errorf("WriteEncoded on an image with extras: %v", err)
	}
}
