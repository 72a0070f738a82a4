package workload

import (
	"fmt"
	"math/big"
	"os"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MigrateWriterK returns the step of the "migrate-writer" workload for a region of n pages: write
// s goes to page (s*K) mod n, so the memory after S writes is a function of S alone (see
// MigrateWriterExpect).
func MigrateWriterK(n uint64) uint64 {
	k := uint64(40503)
	for new(big.Int).GCD(nil, nil, new(big.Int).SetUint64(k), new(big.Int).SetUint64(n)).Uint64() != 1 {
		k += 2
	}
	return k % n
}

// MigrateWriterExpect returns the value page p of an n-page "migrate-writer" region holds after S
// writes (0: never written). Page (S*K) mod n may also hold S+1: that write was done, S not yet
// stored.
func MigrateWriterExpect(n, k, s, p uint64) uint64 {
	if k == 0 {
		k = 1
	}
	kinv := new(big.Int).ModInverse(new(big.Int).SetUint64(k), new(big.Int).SetUint64(n))
	if kinv == nil {
		return 0
	}
	s0 := new(big.Int).Mul(new(big.Int).SetUint64(p), kinv)
	s0.Mod(s0, new(big.Int).SetUint64(n))
	first := s0.Uint64() // the first write to page p
	if s <= first {
		return 0
	}
	last := first + (s-1-first)/n*n
	return last + 1
}

func init() {
	// migrate-writer PAGES RATE: an anonymous region of PAGES pages (between PROT_NONE guards) and a
	// counter page. Write s (s = 0, 1, ...) stores s+1 in the first and last 8 bytes of page
	// (s*K) mod PAGES, then stores s+1 in the counter: the region after S writes is known from S.
	// RATE pages per second (0: as fast as possible). Ready info: "hdr=0x.. addr=0x.. pages=N k=K".
	Register("migrate-writer", func(c *Ctx) error {
		if len(c.Args) != 2 {
			return fmt.Errorf("migrate-writer: want PAGES RATE")
		}
		pages, err := strconv.ParseUint(c.Args[0], 10, 64)
		if err != nil || pages == 0 || pages > 1<<24 {
			return fmt.Errorf("migrate-writer: bad page count %q", c.Args[0])
		}
		rate, err := strconv.ParseUint(c.Args[1], 10, 64)
		if err != nil {
			return fmt.Errorf("migrate-writer: bad rate %q", c.Args[1])
		}
		ps := uint64(os.Getpagesize())
		mem, err := unix.Mmap(-1, 0, int((pages+2)*ps), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return fmt.Errorf("migrate-writer: mmap: %w", err)
		}
		region := mem[ps : (pages+1)*ps]
		if err := unix.Mprotect(region, unix.PROT_READ|unix.PROT_WRITE); err != nil {
			return err
		}
		// touch every page once with 0 so the whole region is present from the start
		for i := uint64(0); i < pages; i++ {
			region[i*ps+100] = 0xa5
		}
		hdrMem, err := unix.Mmap(-1, 0, int(3*ps), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return err
		}
		hdr := hdrMem[ps : 2*ps]
		if err := unix.Mprotect(hdr, unix.PROT_READ|unix.PROT_WRITE); err != nil {
			return err
		}
		c.Keep(mem, hdrMem)
		k := MigrateWriterK(pages)
		base := unsafe.Pointer(&region[0])
		counter := (*uint64)(unsafe.Pointer(&hdr[0]))
		go func() {
			s := atomic.LoadUint64(counter)
			per := uint64(1)
			tick := time.Millisecond
			if rate > 0 {
				per = max(rate/1000, 1)
				tick = time.Duration(uint64(time.Second) * per / rate)
			}
			next := time.Now()
			for {
				for i := uint64(0); i < per || rate == 0 && i < 4096; i++ {
					p := (s * k) % pages
					v := s + 1
					atomic.StoreUint64((*uint64)(unsafe.Add(base, p*ps)), v)
					atomic.StoreUint64((*uint64)(unsafe.Add(base, p*ps+ps-8)), v)
					s++
					atomic.StoreUint64(counter, s)
				}
				if rate > 0 {
					next = next.Add(tick)
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					} else if d < -time.Second {
						next = time.Now()
					}
				}
			}
		}()
		return c.Ready(fmt.Sprintf("hdr=%#x addr=%#x pages=%d k=%d", uintptr(unsafe.Pointer(&hdr[0])), uintptr(base), pages, k))
	})
}
