package pageproto

import (
	"bytes"
	"io"
	"testing"

	"github.com/criukit/criukit/image"
)

func TestRoundTrip(t *testing.T) {
	h := Header{Cmd: IovAddF, Flags: image.PEPresent | image.PELazy, Nr: 7, Vaddr: 0x7f0000001000, DstID: 42<<8 | TypePid}
	b := h.Bytes()
	if len(b) != HeaderSize {
		t.Fatalf("len %d", len(b))
	}
	var buf [HeaderSize]byte
	got, err := Read(bytes.NewReader(b), &buf)
	if err != nil || got != h {
		t.Fatalf("Read = %v, %v; want %v", got, err, h)
	}
	if got.Type() != TypePid || got.ID() != 42 || got.RawCmd() != IovAddF|(image.PEPresent|image.PELazy)<<16 {
		t.Errorf("Type %d ID %d RawCmd %#x", got.Type(), got.ID(), got.RawCmd())
	}
	if _, err := Read(bytes.NewReader(b[:HeaderSize-1]), &buf); err != io.ErrUnexpectedEOF {
		t.Errorf("truncated header: %v", err)
	}
}

func TestEffFlags(t *testing.T) {
	for _, tc := range []struct {
		h    Header
		want uint32
	}{
		{Header{Cmd: IovAdd, Flags: image.PELazy}, image.PEPresent},
		{Header{Cmd: IovHole}, image.PEParent},
		{Header{Cmd: IovAddF, Flags: image.PELazy}, image.PELazy},
	} {
		if got := tc.h.EffFlags(); got != tc.want {
			t.Errorf("%v: EffFlags %#x want %#x", tc.h, got, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Header{Cmd: IovOpen2, DstID: 3<<8 | TypeShmem}.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < HeaderSize {
			return
		}
		h := Parse(b)
		if h2 := Parse(h.Bytes()); h2 != h {
			t.Fatalf("%v != %v", h2, h)
		}
	})
}
