package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/criukit/criukit/migrate"
	"github.com/spf13/cobra"
)

func init() {
	var (
		o                          migrate.Options
		toNetns, dir               string
		tcpEst, asJSON, waitSource bool
		dumpArgs, restoreArgs      []string
		pause                      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "migrate (--pid PID | --container NAME) (--to HOST:PORT | --to-netns PATH) [--rounds N] [--map OLD=NEW]...",
		Short: "Move a running process tree to another host or netns, iteratively, without soft-dirty",
		Long: `migrate moves a running process tree (and its TCP connections with --tcp-established) to a
receiver: another host running 'criukit migrate receive', or a network namespace on this machine.

It works where 'criu pre-dump' cannot (kernels without soft-dirty, e.g. arm64 and this VM):
  round 0      criu dump --leave-running of everything; the pages go to the receiver
  rounds 1..   memtrack write-protects the tree (userfaultfd WP + PAGEMAP_SCAN, injected with
               ptrace; the tree never holds a uffd); each round sends only the pages written since
               the previous one; the others become PE_PARENT entries of a parent chain
  last round   criu freezes the tree; the write scan runs while it is frozen, the trackers are
               removed, criu dumps and kills the tree; only written pages cross the wire
  restore      the receiver rewrites addresses (--map) and runs stock 'criu restore' on the last
               round, which follows the chain: the memory is exactly the one at the freeze

criu itself talks to criukit's page server (criu dump --page-server --ps-socket): a relay on this
side drops unwritten pages before the wire; the receiver stores round 0 deduplicated (cow) and every
later round as a parent chain. See docs/migrate.md for the design and the freeze-window argument.

The frozen time is the last round only. Stock criu still reads every page of the tree then (it
cannot skip pages without soft-dirty) but only written ones are sent and stored. criukit's patched
CRIU (scripts/build-criu, criu-patches/0010: criu dump --track-mem-uffd) reads the trackers'
write-protect bits itself and never reads unwritten pages: migrate uses it when it is installed
(--tracking criu|relay to choose); the relay still checks every page criu skipped.

A podman container (--container NAME, runc runtime) moves the same way: every round is a real
'podman container checkpoint --export' whose criu (started by runc, given to runc as a wrapper
with --runtime-flag criu=...) sends its pages to the relay; the receiver puts the chain's pages,
flattened, into podman's archive and runs 'podman container restore --import' (--name NAME to
rename; --restore-arg and --dump-arg then take podman restore/checkpoint flags, e.g.
--restore-arg=--ignore-static-ip); criu tracking works there too (the wrapper's config file).
Without --to, --dir DIR restores it on this machine. The
source container ends as podman leaves a checkpointed one (exited).

On this machine (--to-netns) the dumped tree must be gone before its restore (pids are reused):
migrate waits until the source pid disappears; a zombie whose parent never reaps it blocks that.`,
		Example: `  # receiver on host B (its images in /srv/mig), then from host A:
  criukit migrate receive --listen 0.0.0.0:7700 --dir /srv/mig
  criukit migrate --pid 1234 --to hostB:7700 --rounds 4 --tcp-established --map 10.0.0.5=10.0.1.7
  # into a netns on this machine, as JSON
  criukit migrate --pid 1234 --to-netns /run/netns/blue --dir /var/tmp/mig --json
  # a podman container, restored on this machine as web2 (podman flags of this VM)
  criukit migrate --container web --dir /var/tmp/mig --name web2 \
      --podman-arg=--cgroup-manager=cgroupfs --podman-arg=--runtime=runc
  # stop pre-copy as soon as a round sends at most 500 pages (at most 8 rounds)
  criukit migrate --pid 1234 --to hostB:7700 --rounds 8 --converge 500 --pause 1s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (o.Pid <= 0) == (o.Container == "") {
				return errors.New("give exactly one of --pid PID and --container NAME")
			}
			ctx := cmd.Context() // main's context: cancelled on SIGINT/SIGTERM
			if o.Container != "" {
				switch {
				case toNetns != "":
					return errors.New("--container: the container is restored by podman into its own network; use --to HOST:PORT or --dir DIR (this machine)")
				case o.To == "" && dir == "":
					return errors.New("--container needs --to HOST:PORT, or --dir DIR to restore it on this machine")
				case o.To == "":
					o.Dial = migrate.Local(&migrate.Receiver{Dir: dir, Podman: o.Podman, Log: os.Stderr})
				}
			} else if (o.To == "") == (toNetns == "") {
				return errors.New("give exactly one of --to HOST:PORT and --to-netns PATH")
			}
			if toNetns != "" {
				if dir == "" {
					return errors.New("--to-netns needs --dir DIR (the receiver's images go there)")
				}
				if _, err := os.Stat(toNetns); err != nil {
					return fmt.Errorf("target netns: %w", err)
				}
				rv := &migrate.Receiver{Dir: dir, Netns: toNetns, Log: os.Stderr}
				o.Dial = migrate.Local(rv)
			}
			o.Pause = pause
			o.DumpArgs, o.RestoreArgs = dumpArgs, restoreArgs
			if tcpEst {
				o.DumpArgs = append(o.DumpArgs, "--tcp-established")
				o.RestoreArgs = append(o.RestoreArgs, "--tcp-established")
			}
			pid := o.Pid
			if toNetns != "" || waitSource {
				o.AfterDump = func() error {
					deadline := time.Now().Add(10 * time.Second)
					for time.Now().Before(deadline) {
						if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
							return nil
						}
						time.Sleep(5 * time.Millisecond)
					}
					fmt.Fprintf(os.Stderr, "migrate: pid %d still exists 10s after its dump (a zombie?): the restore may fail on this machine\n", pid)
					return nil
				}
			}
			if !asJSON {
				o.Progress = func(r migrate.RoundStats) {
					fmt.Fprintf(os.Stderr, "round %d%s: %d pages written since the last round, criu read %d, sent %d (%s), %d from the parent round, dump %.2fs\n",
						r.Round, map[bool]string{true: " (last, frozen)"}[r.Final], r.Written, r.Pages, r.Sent, humanBytes(float64(r.WireBytes)), r.Parent, r.DumpSeconds)
				}
			}
			res, err := migrate.Migrate(ctx, o)
			if err != nil {
				return err
			}
			if asJSON {
				e := json.NewEncoder(cmd.OutOrStdout())
				e.SetIndent("", "  ")
				return e.Encode(res)
			}
			if c := res.Converged; c != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "converged after round %d (%s: it sent %d pages)\n", c.AfterRound, c.Reason, c.Sent)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "moved in %d rounds: %s on the wire, frozen %.2fs (dump %.2fs, images %.2fs, source exit %.2fs, restore %.2fs), total %.2fs\n",
				len(res.Rounds), humanBytes(float64(res.WireBytes)), res.FrozenSeconds, res.FrozenDump, res.FrozenImages, res.FrozenWait, res.FrozenRestore, res.TotalSeconds)
			if res.Container != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "restored container %s (pid %d) from %s\n", res.Container, res.Pid, res.Dir)
			} else if res.Pid > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "restored root pid %d from %s\n", res.Pid, res.Dir)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "images in %s (not restored)\n", res.Dir)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Pid, "pid", 0, "root of the process tree to move")
	f.StringVar(&o.Container, "container", "", "podman container (name or ID, runc runtime) to move instead of --pid")
	f.StringVar(&o.ContainerName, "name", "", "with --container: name of the restored container (default: the source's)")
	f.StringArrayVar(&o.Podman, "podman-arg", nil, "with --container: podman global flag (repeat; e.g. --podman-arg=--cgroup-manager=cgroupfs)")
	f.StringVar(&o.To, "to", "", "receiver address HOST:PORT ('criukit migrate receive' there)")
	f.StringVar(&toNetns, "to-netns", "", "restore into this network namespace on this machine (path, e.g. /run/netns/NAME)")
	f.StringVar(&dir, "dir", "", "with --to-netns (or --container without --to): directory for the received images (round-0, round-1, ...)")
	f.StringVar(&o.Netns, "netns", "", "run criu dump in this netns (the tree's, when it is not ours)")
	f.StringVar(&o.DialNetns, "dial-netns", "", "connect to the receiver from this netns")
	f.IntVar(&o.Rounds, "rounds", 3, "dumps in all; the last one freezes the tree (1 = one-shot)")
	f.Int64Var(&o.Converge, "converge", 0, "make the next round the last once a round sends at most this many pages (0: always --rounds); the JSON result says why in \"converged\"")
	f.StringVar(&o.Tracking, "tracking", "", "who skips unwritten pages: criu (criu dump --track-mem-uffd of criukit's patched CRIU, scripts/build-criu: they are never read while frozen) or relay (stock criu reads them, the relay drops them); default: criu when available")
	f.BoolVar(&o.ConvergeStall, "converge-stall", false, "make the next round the last once a round sends at least as many pages as the one before (the written set stopped shrinking)")
	f.DurationVar(&pause, "pause", 0, "wait between rounds")
	f.StringSliceVar(&o.Map, "map", nil, "address map for the restore, as in 'net rewrite --map' (OLD=NEW, prefixes, v4 and v6)")
	f.BoolVar(&tcpEst, "tcp-established", false, "move established TCP connections (criu --tcp-established on dump and restore)")
	f.StringArrayVar(&dumpArgs, "dump-arg", nil, "extra criu dump argument (repeat)")
	f.StringArrayVar(&restoreArgs, "restore-arg", nil, "extra criu restore argument (repeat)")
	f.BoolVar(&waitSource, "wait-source", false, "with --to: wait until the dumped tree is gone before the restore (receiver on this machine; always on with --to-netns)")
	f.BoolVar(&o.Lazy, "lazy", false, "restore with criu lazy-pages from a flat copy the receiver rolls forward every round: the tree runs once its state is restored, its memory faults in (round 0 is then not deduplicated)")
	f.BoolVar(&o.Flat, "flat", false, "restore from a flat copy the receiver rolls forward every round instead of the parent chain (faster restore of many rounds; round 0 is then not deduplicated)")
	f.BoolVar(&o.NoRestore, "no-restore", false, "stop when the last round's images are on the receiver")
	f.StringVar(&o.WorkDir, "work-dir", "", "keep criu's local images and logs of every round here (default: a temp dir, removed)")
	f.BoolVar(&asJSON, "json", false, "print the result (rounds, bytes, times) as JSON")

	var (
		listen, rdir, rnetns string
		noDedup, once        bool
		rpodman              []string
	)
	recv := &cobra.Command{
		Use:   "receive --listen ADDR:PORT --dir DIR [--netns PATH]",
		Short: "Receive a migration: store its rounds as a parent chain and restore the last one",
		Long: `receive is the other end of 'criukit migrate --to': it speaks CRIU's page-server protocol for
every round (round 0 through criukit's deduplicating page server, later rounds as PE_PARENT chains
onto the previous round), receives the last round's other images, rewrites addresses when the
sender asks (--map) and restores the last round with stock criu (in --netns when given).

There is no authentication or encryption: whoever reaches the port can make this receiver store
images and run criu restore on them as root. Listen on a private network, or on 127.0.0.1 behind an
SSH tunnel (ssh -L 7700:127.0.0.1:7700 hostB, then migrate --to 127.0.0.1:7700).

DIR/round-N holds round N; DIR/round-N/parent links to round N-1. A podman container's migration
also leaves DIR/podman-restore.tar, the archive imported with 'podman container restore --import'. Restoring by hand works too:
  criu restore -D DIR/round-LAST -d [--tcp-established]`,
		Example: `  criukit migrate receive --listen 0.0.0.0:7700 --dir /srv/mig
  criukit migrate receive --listen [fd00::2]:7700 --dir /srv/mig --netns /run/netns/blue --once`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if listen == "" || rdir == "" {
				return errors.New("--listen and --dir are required")
			}
			ctx, stop := context.WithCancel(cmd.Context()) // main's context: cancelled on SIGINT/SIGTERM
			defer stop()
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "migrate receiver listening on %s, images in %s\n", l.Addr(), rdir)
			rv := &migrate.Receiver{Dir: rdir, Netns: rnetns, NoDedup: noDedup, Podman: rpodman, Log: os.Stderr}
			if once {
				rv.OnRestore = func(pid int, err error) { stop() }
			}
			return rv.Serve(ctx, l)
		},
	}
	rf := recv.Flags()
	rf.StringVar(&listen, "listen", "", "address to listen on (HOST:PORT)")
	rf.StringVar(&rdir, "dir", "", "directory for the received rounds")
	rf.StringVar(&rnetns, "netns", "", "restore in this network namespace (path)")
	rf.BoolVar(&noDedup, "no-dedup", false, "store round 0 as sent (no cow dedup)")
	rf.BoolVar(&once, "once", false, "exit after the first restore")
	rf.StringArrayVar(&rpodman, "podman-arg", nil, "podman global flag for container migrations (repeat)")
	cmd.AddCommand(recv)
	root.AddCommand(cmd)
	_ = context.Background
}
