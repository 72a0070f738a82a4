package memtrack

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kernel ABI of userfaultfd (linux/userfaultfd.h) and PAGEMAP_SCAN (linux/fs.h), x86_64 values.
const (
	uffdAPI = 0xAA

	uffdFeatureWPUnpopulated = 1 << 13
	uffdFeatureWPAsync       = 1 << 15

	uffdioAPI            = 0xC018AA3F // _IOWR(0xAA, 0x3F, struct uffdio_api)
	uffdioRegister       = 0xC020AA00 // _IOWR(0xAA, 0x00, struct uffdio_register)
	uffdioUnregister     = 0x8010AA01 // _IOR(0xAA, 0x01, struct uffdio_range)
	uffdioWriteprotect   = 0xC018AA06 // _IOWR(0xAA, 0x06, struct uffdio_writeprotect)
	uffdioRegisterModeWP = 1 << 1
	uffdioWPModeWP       = 1 << 0

	pagemapScan = 0xC0606610 // _IOWR('f', 16, struct pm_scan_arg)

	pmScanWPMatching   = 1 << 0
	pmScanCheckWPAsync = 1 << 1

	pageIsWPAllowed = 1 << 0
	pageIsWritten   = 1 << 1
	pageIsPresent   = 1 << 3
	pageIsSwapped   = 1 << 4
)

type uffdioAPIArg struct {
	API, Features, Ioctls uint64
}

type uffdioRange struct {
	Start, Len uint64
}

type uffdioRegisterArg struct {
	Range  uffdioRange
	Mode   uint64
	Ioctls uint64
}

type uffdioWriteprotectArg struct {
	Range uffdioRange
	Mode  uint64
}

type pmScanArg struct {
	Size, Flags, Start, End, WalkEnd, Vec, VecLen, MaxPages   uint64
	CategoryInverted, CategoryMask, CategoryAnyofMask, Return uint64
}

type pageRegion struct {
	Start, End, Categories uint64
}

func ioctl(fd int, req uintptr, arg unsafe.Pointer) (uintptr, error) {
	for {
		r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return r, e
		}
		return r, nil
	}
}

// uffdAPIHandshake enables async write-protect (including unpopulated pages unless noUnpop) on a
// fresh uffd.
func uffdAPIHandshake(fd int, noUnpop bool) error {
	a := uffdioAPIArg{API: uffdAPI, Features: uffdFeatureWPAsync | uffdFeatureWPUnpopulated}
	what := "WP_ASYNC|WP_UNPOPULATED"
	if noUnpop {
		a.Features, what = uffdFeatureWPAsync, "WP_ASYNC"
	}
	if _, err := ioctl(fd, uffdioAPI, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("UFFDIO_API with %s (needs Linux >= 6.7): %w", what, err)
	}
	return nil
}

func uffdRegisterWP(fd int, start, end uint64) error {
	r := uffdioRegisterArg{Range: uffdioRange{start, end - start}, Mode: uffdioRegisterModeWP}
	_, err := ioctl(fd, uffdioRegister, unsafe.Pointer(&r))
	return err
}

func uffdUnregister(fd int, start, end uint64) error {
	r := uffdioRange{start, end - start}
	_, err := ioctl(fd, uffdioUnregister, unsafe.Pointer(&r))
	return err
}

func uffdWriteProtect(fd int, start, end uint64) error {
	w := uffdioWriteprotectArg{Range: uffdioRange{start, end - start}, Mode: uffdioWPModeWP}
	_, err := ioctl(fd, uffdioWriteprotect, unsafe.Pointer(&w))
	return err
}

// uffdUserModeOnly is UFFD_USER_MODE_ONLY (userfaultfd() flag, Linux 5.11): allowed without
// CAP_SYS_PTRACE whatever vm.unprivileged_userfaultfd says.
const uffdUserModeOnly = 1
