package workload

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Files of the "memtrack-writer" workload's control protocol (in Ctx.Dir). The controller writes
// MemtrackCmdFile ("SEQ idx,idx,..." page indexes into the region), sends SIGUSR2, and waits until
// MemtrackAckFile holds "SEQ": by then every listed page was written exactly once. The command
// "SEQ remap" replaces the region by a new mapping at the same address instead.
const (
	MemtrackCmdFile = "memtrack-cmd"
	MemtrackAckFile = "memtrack-ack"
)

func init() {
	// memtrack-writer [PAGES]: an anonymous region of PAGES (default 64) pages between two PROT_NONE
	// guard pages (so it stays its own VMA); writes the pages the controller asks for on SIGUSR2.
	// Ready info: "addr=0xADDR pages=N".
	Register("memtrack-writer", func(c *Ctx) error {
		pages := 64
		if len(c.Args) > 0 {
			n, err := strconv.Atoi(c.Args[0])
			if err != nil || n <= 0 || n > 1<<20 {
				return fmt.Errorf("memtrack-writer: bad page count %q", c.Args[0])
			}
			pages = n
		}
		ps := os.Getpagesize()
		mem, err := unix.Mmap(-1, 0, (pages+2)*ps, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return fmt.Errorf("memtrack-writer: mmap: %w", err)
		}
		region := mem[ps : (pages+1)*ps]
		if err := unix.Mprotect(region, unix.PROT_READ|unix.PROT_WRITE); err != nil {
			return fmt.Errorf("memtrack-writer: mprotect: %w", err)
		}
		c.Keep(mem)
		c.OnCheck(func() (string, error) { return fmt.Sprintf("pages=%d", pages), nil })
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGUSR2)
		go func() {
			for range sig {
				b, err := os.ReadFile(filepath.Join(c.Dir, MemtrackCmdFile))
				if err != nil {
					continue
				}
				seq, list, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
				if list == "remap" {
					// Replace the region by a fresh mapping at the same address (munmap + mmap).
					_, err := unix.MmapPtr(-1, 0, unsafe.Pointer(&region[0]), uintptr(len(region)),
						unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED)
					if err != nil {
						_ = writeAtomic(filepath.Join(c.Dir, MemtrackAckFile), []byte("error: "+err.Error()))
						continue
					}
					list = ""
				}
				for _, f := range strings.Split(list, ",") {
					if i, err := strconv.Atoi(f); err == nil && i >= 0 && i < pages {
						region[i*ps+(i%ps)]++ // one store per listed page
					}
				}
				_ = writeAtomic(filepath.Join(c.Dir, MemtrackAckFile), []byte(seq))
			}
		}()
		addr := uintptr(unsafe.Pointer(&region[0]))
		return c.Ready(fmt.Sprintf("addr=%#x pages=%d", addr, pages))
	})
}
