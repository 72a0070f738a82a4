package pageproto

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/criukit/criukit/image"
)

// Commands (low 16 bits of the header's cmd) and pagemap kinds (low 8 bits of dst_id).
const (
	IovAdd        = 1
	IovHole       = 2
	IovOpen       = 3
	IovOpen2      = 4
	IovParent     = 5
	IovAddF       = 6
	IovGet        = 7
	IovClose      = 0x1023
	IovForceClose = 0x1024

	TypePid   = 1
	TypeShmem = 2

	// HeaderSize is the size of one header on the wire.
	HeaderSize = 32
)

// Header is one page-server command header.
type Header struct {
	Cmd   uint32 // low 16 bits of cmd
	Flags uint32 // high 16 bits of cmd (PE_* flags of PS_IOV_ADD_F)
	Nr    uint64 // nr_pages
	Vaddr uint64
	DstID uint64 // id<<8 | PS_TYPE_*
}

// Type is the pagemap kind of dst_id (TypePid, TypeShmem).
func (h Header) Type() uint64 { return h.DstID & 0xff }

// ID is the pid (or shmem id) of dst_id.
func (h Header) ID() uint64 { return h.DstID >> 8 }

// PidOf returns the pid of a dst_id of kind TypePid; ok is false for other kinds (shmem).
func PidOf(dst uint64) (pid int, ok bool) { return int(dst >> 8), dst&0xff == TypePid }

// RawCmd is the cmd word as sent: command and flags.
func (h Header) RawCmd() uint32 { return h.Cmd | h.Flags<<16 }

// Parse decodes a header from b, which holds at least HeaderSize bytes.
func Parse(b []byte) Header {
	o := binary.NativeEndian
	raw := o.Uint32(b[0:])
	return Header{Cmd: raw & 0xffff, Flags: raw >> 16, Nr: o.Uint64(b[8:]), Vaddr: o.Uint64(b[16:]), DstID: o.Uint64(b[24:])}
}

// Read reads one header from r into buf and decodes it.
func Read(r io.Reader, buf *[HeaderSize]byte) (Header, error) {
	if _, err := io.ReadFull(r, buf[:]); err != nil {
		return Header{}, err
	}
	return Parse(buf[:]), nil
}

// Bytes encodes the header (padding bytes are zero).
func (h Header) Bytes() []byte {
	var b [HeaderSize]byte
	o := binary.NativeEndian
	o.PutUint32(b[0:], h.RawCmd())
	o.PutUint64(b[8:], h.Nr)
	o.PutUint64(b[16:], h.Vaddr)
	o.PutUint64(b[24:], h.DstID)
	return b[:]
}

// EffFlags are the pagemap flags of an ADD/ADD_F/HOLE command as CRIU's page server computes them:
// ADD is PE_PRESENT, HOLE is PE_PARENT, ADD_F carries its own.
func (h Header) EffFlags() uint32 {
	switch h.Cmd {
	case IovAdd:
		return image.PEPresent
	case IovHole:
		return image.PEParent
	}
	return h.Flags
}

func (h Header) String() string {
	return fmt.Sprintf("cmd %#x flags %#x nr %d vaddr %#x dst %#x", h.Cmd, h.Flags, h.Nr, h.Vaddr, h.DstID)
}
