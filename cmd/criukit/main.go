// Command criukit is a toolkit for CRIU users and developers: a crit-compatible image
// inspector and codec, anonymizer, bug reporter, TCP C/R lab, COW dedup and image surgery.
// This package is only the command line; every capability lives in its own package.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

var root = &cobra.Command{
	Use:   "criukit",
	Short: "Toolkit for CRIU checkpoint images: inspect, edit, anonymize, test",
	Long: `criukit works on top of stock CRIU (>= 4.2). It reads and writes every CRIU image file
byte-exactly, and its decode/encode/show/info/x commands are drop-in replacements for CRIU's crit.

  inspect      decode, encode, show, info, x, ls, pages
  share        anonymize, report (bug bundle), doctor (what a dump will fail on)
  dump/restore dump (ghost limits, copy budget, --cow), restore (guard for deduped images), ghosts
  surgery      net rewrite, net close, clone, cow dedup|materialize|stats
  labs         tcplab (TCP_REPAIR cases), memtrack (page writes), kvm demo

Every subcommand has --help with examples. Output meant for scripts is available as JSON.
Install CRIU 4.2 on Debian 12 with scripts/install-criu from the criukit source tree.`,
	SilenceUsage:  true,
	SilenceErrors: true,
	Version:       version,
}

// main runs the command with one context cancelled by SIGINT or SIGTERM: long operations (cow
// dedup, anonymize, report, net rewrite, clone, dumps) stop, remove their temporary files and exit
// non-zero. A second signal kills at once (the default action, restored after the first).
func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills
	}()
	err := root.ExecuteContext(ctx)
	interrupted := ctx.Err() != nil
	stop()
	if err != nil {
		if interrupted {
			// Exit status 130 as shells report for SIGINT; temporary outputs are already removed.
			fmt.Fprintln(os.Stderr, "criukit: interrupted:", err)
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "criukit:", err)
		os.Exit(1)
	}
}
