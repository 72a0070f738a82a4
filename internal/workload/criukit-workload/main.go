// Command criukit-workload runs one registered workload in this process (for live tests):
//
//	criukit-workload [--ready-file F] [--dir D] NAME [ARGS...]
//
// The workload sets up its objects, writes its info to F (atomically) and waits until killed.
package main

import (
	"fmt"
	"os"

	"github.com/criukit/criukit/internal/workload"
)

func main() {
	cfg := workload.Config{ReadyFile: os.Getenv(workload.EnvReadyFile), Dir: os.Getenv(workload.EnvDir)}
	args := os.Args[1:]
	for len(args) > 1 {
		switch args[0] {
		case "--ready-file":
			cfg.ReadyFile = args[1]
		case "--dir":
			cfg.Dir = args[1]
		default:
			goto run
		}
		args = args[2:]
	}
run:
	if len(args) == 0 {
		fmt.Fprintf(os.Stderr, "usage: criukit-workload [--ready-file F] [--dir D] NAME [ARGS...]\nworkloads: %v\n", workload.Names())
		os.Exit(2)
	}
	if err := workload.RunConfig(args[0], args[1:], cfg); err != nil {
		fmt.Fprintln(os.Stderr, "criukit-workload:", err)
		os.Exit(1)
	}
}
