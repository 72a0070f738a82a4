package workload

import (
	"flag"
	"fmt"
)

func init() {
	// sleep [-children N]: nothing but the Go runtime (the smallest dumpable and restorable
	// process), optionally with N child processes (a process tree in the caller's namespaces).
	Register("sleep", func(c *Ctx) error {
		fs := flag.NewFlagSet("sleep", flag.ContinueOnError)
		n := fs.Int("children", 0, "number of child processes")
		if err := fs.Parse(c.Args); err != nil {
			return err
		}
		for i := 0; i < *n; i++ {
			if _, err := c.StartChild("sleep"); err != nil {
				return err
			}
		}
		return c.Ready(fmt.Sprintf("children=%d", *n))
	})
}
