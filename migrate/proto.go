package migrate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// CRIU page-server protocol (criu/page-xfer.c): a 32-byte header {u32 cmd; u64 nr_pages;
// u64 vaddr; u64 dst_id} in host byte order and natural alignment; flags in the upper 16 bits of
// cmd for PS_IOV_ADD_F; page data follows an ADD_F with PE_PRESENT.
const (
	psIovAdd        = 1
	psIovHole       = 2
	psIovOpen       = 3
	psIovOpen2      = 4
	psIovParent     = 5
	psIovAddF       = 6
	psIovGet        = 7
	psIovClose      = 0x1023
	psIovForceClose = 0x1024
	psTypePid       = 1
	psTypeShmem     = 2
	psHeaderSize    = 32

	pePresent uint32 = 1 << 2
	peParent  uint32 = 1 << 0
	peLazy    uint32 = 1 << 1
)

// ErrProtocol is a page-server protocol violation.
var ErrProtocol = errors.New("migrate: page-server protocol error")

type psHdr struct {
	cmd   uint32 // low 16 bits
	flags uint32 // high 16 bits
	nr    uint64
	vaddr uint64
	dstID uint64
}

func (h psHdr) typ() uint64 { return h.dstID & 0xff }
func (h psHdr) id() uint64  { return h.dstID >> 8 }

func readHdr(r io.Reader, buf *[psHeaderSize]byte) (psHdr, error) {
	if _, err := io.ReadFull(r, buf[:]); err != nil {
		return psHdr{}, err
	}
	o := binary.NativeEndian
	raw := o.Uint32(buf[0:])
	return psHdr{cmd: raw & 0xffff, flags: raw >> 16, nr: o.Uint64(buf[8:]), vaddr: o.Uint64(buf[16:]), dstID: o.Uint64(buf[24:])}, nil
}

func (h psHdr) bytes() []byte {
	var b [psHeaderSize]byte
	o := binary.NativeEndian
	o.PutUint32(b[0:], h.cmd|h.flags<<16)
	o.PutUint64(b[8:], h.nr)
	o.PutUint64(b[16:], h.vaddr)
	o.PutUint64(b[24:], h.dstID)
	return b[:]
}

// effFlags are the flags of an ADD/ADD_F/HOLE command as CRIU's page server computes them.
func (h psHdr) effFlags() uint32 {
	switch h.cmd {
	case psIovAdd:
		return pePresent
	case psIovHole:
		return peParent
	}
	return h.flags
}

func (h psHdr) String() string {
	return fmt.Sprintf("cmd %#x flags %#x nr %d vaddr %#x dst %#x", h.cmd, h.flags, h.nr, h.vaddr, h.dstID)
}
