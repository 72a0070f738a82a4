package workload

import (
	"fmt"
	"math/rand/v2"
	"strconv"

	"golang.org/x/sys/unix"
)

// AnonMemSecret is planted in every 64 KiB of the anon-mem workload's memory.
const AnonMemSecret = "criukit-anon-mem-secret-FACADE"

func init() {
	// anon-mem [MIB]: MIB (default 64) MiB of private anonymous memory filled with random bytes,
	// with AnonMemSecret and a fake path planted every 64 KiB (a big dump for the anonymize
	// benchmark: the dictionary search has to look at every page).
	Register("anon-mem", func(c *Ctx) error {
		mib := 64
		if len(c.Args) > 0 {
			n, err := strconv.Atoi(c.Args[0])
			if err != nil || n <= 0 || n > 64<<10 {
				return fmt.Errorf("anon-mem: bad size %q (MiB)", c.Args[0])
			}
			mib = n
		}
		mem, err := unix.Mmap(-1, 0, mib<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return fmt.Errorf("anon-mem: mmap: %w", err)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		for i := 0; i+8 <= len(mem); i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8; j++ {
				mem[i+j] = byte(v >> (8 * j))
			}
		}
		plant := []byte(AnonMemSecret + " " + c.Dir + "/data.bin")
		for off := 0; off+len(plant) <= len(mem); off += 64 << 10 {
			copy(mem[off+100:], plant)
		}
		c.Keep(mem)
		return c.Ready(fmt.Sprintf("mib=%d", mib))
	})
}
