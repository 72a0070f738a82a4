package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/criukit/criukit/anonymize"
	"github.com/criukit/criukit/anonymize/pseudo"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

var anonFlags struct {
	level      string
	keyFile    string
	mapOut     string
	keep       []string
	secrets    []string
	logs       []string
	restoreKit bool
	json       bool
}

var anonymizeCmd = &cobra.Command{
	Use:   "anonymize [--level L] [--key-file F] [--map-out F] [--keep WORD]... [--secret WORD]... IMGDIR OUTDIR",
	Short: "Make a CRIU image dir and its logs safe to attach to a public bug report",
	Long: `Copies the CRIU image dir IMGDIR to the new directory OUTDIR with sensitive data replaced,
keeping everything else byte for byte, and scrubs the CRIU logs (IMGDIR/*.log and every --log)
with the same pseudonyms. IMGDIR is never modified.

Levels (each includes the ones before it):
  inventory  writes nothing: prints what would be replaced, by category, with samples (local use)
  content    payloads (pipes, fifos, socket and TCP queues, tty data, SysV messages, ghost files,
             memfd/shared memory, tmpfs files) become same-length filler; argv and env values are
             rewritten in place in memory. Restorable on the same host.
  identity   (default) + paths, unix socket names, host and domain names, IPs (prefix-preserving),
             MACs (EUI-64 link-locals recomputed), interface names, non-system uids/gids, comm,
             memfd/cgroup names, iptables/nft comments, in images, netlink dumps, tarballs and
             logs; every replaced value is also replaced in memory pages (same length).
  structure  + memory zeroed except vdso/vvar, registers zeroed except segment selectors and mode.
             CRIU's restore still runs to "Restore finished successfully" (restore it with
             --leave-stopped: the tasks cannot run).
  paranoid   + payloads dropped, all path components mapped, ports mapped, timestamps zeroed,
             seccomp filters and LSM policy blobs dropped. Decodable, not restorable.

IMGDIR may also be a container checkpoint archive (podman container checkpoint --export, CRI-O,
containerd): tar, tar+gzip or tar+zstd; OUTDIR is then an archive with the same compression, its
runtime files (spec.dump, config.dump, network.status, annotations and labels, keys included,
rootfs-diff.tar, ...) anonymized with the same pseudonyms. The content level restores with
podman container restore --import.

One policy decides every value once: the public vocabulary of the dump (distro paths and their
components such as python3 of /usr/lib/python3.11, the runtime's JSON schema) is kept everywhere;
every other value gets one pseudonym shared by images, memory and logs. --secret WORD replaces
WORD, its UTF-16 form and its pieces (prefixes/suffixes >= 6 bytes) everywhere at every level,
memory included, or the command refuses. See docs/anonymize.md.

Pseudonyms are keyed (HMAC-SHA256), deterministic for a key and keep byte lengths, depth, shared
path prefixes, extensions and CRIU's suffixes ((deleted), .cr.N.ghost, link_remap.N); system paths
and libraries are kept. The key is random per run unless --key-file is given (same key, same
tokens across reports). The mapping is written only to --map-out, never into OUTDIR.

Unknown files, plugin images and anything that does not parse are dropped and listed in
OUTDIR/MANIFEST.json (default deny). Before OUTDIR appears, the output is verified: every image
decodes, cross references resolve, and no replaced value is left in any byte, tarball member or
decoded field (IPs and uids are varints: a grep cannot see them). A leak fails the command and
names the file and offset.

With --restore-kit, OUTDIR/restore-kit.txt lists the mapped paths CRIU will need (dirs, fifos,
files with size and mode); "criukit anonymize kit OUTDIR" creates the missing ones on the
maintainer's machine.`,
	Example: `  criukit anonymize /tmp/dump /tmp/dump-public
  criukit anonymize --level content --secret hunter2 /tmp/dump /tmp/dump-public
  criukit anonymize --level inventory /tmp/dump
  head -c32 /dev/urandom > ~/.criukit.key
  criukit anonymize --key-file ~/.criukit.key --map-out ~/dump.map.json --log /tmp/restore.log /tmp/dump /tmp/out
  criukit anonymize --level structure --restore-kit --json /tmp/dump /tmp/out | jq .counts
  criukit anonymize --level content ctr.tar.zst ctr-public.tar.zst && podman container restore --import ctr-public.tar.zst`,
	Args: cobra.RangeArgs(1, 2),
	RunE: func(cmd *cobra.Command, args []string) error {
		stdout := cmd.OutOrStdout()
		lvl, err := anonymize.ParseLevel(anonFlags.level)
		if err != nil {
			return fmt.Errorf("anonymize: --level: %w", err)
		}
		o := anonymize.Options{Level: lvl, Keep: anonFlags.keep, Secrets: anonFlags.secrets, Logs: anonFlags.logs,
			MapOut: anonFlags.mapOut, RestoreKit: anonFlags.restoreKit, Version: version}
		if anonFlags.keyFile != "" {
			if o.Key, err = pseudo.LoadKey(anonFlags.keyFile); err != nil {
				return fmt.Errorf("anonymize: %w", err)
			}
		}
		prog := newProgress(cmd, anonFlags.json)
		defer prog.done()
		if prog != nil {
			o.Progress = func(done, total int64, file string) {
				pct := 100.0
				if total > 0 {
					pct = 100 * float64(done) / float64(total)
				}
				prog.printf(done >= total, "%5.1f%% %d/%d MiB %s", pct, done>>20, total>>20, file)
			}
		}
		if lvl == anonymize.Inventory {
			rep, err := anonymize.InventoryReport(args[0], o)
			prog.done()
			if err != nil {
				return err
			}
			return printInventory(stdout, rep)
		}
		if len(args) != 2 {
			return fmt.Errorf("anonymize: OUTDIR is required at level %s", lvl)
		}
		man, err := anonymize.RunContext(cmd.Context(), args[0], args[1], o)
		prog.done()
		if err != nil {
			return err
		}
		if anonFlags.json {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(man)
		}
		fmt.Fprintf(stdout, "wrote %s (level %s): %d files, %d dropped\n", args[1], man.Level, len(man.Files), len(man.Dropped))
		printCounts(stdout, man.Counts)
		for _, d := range man.Dropped {
			fmt.Fprintf(stdout, "  dropped %s: %s\n", d.Name, d.Reason)
		}
		v := man.Verification
		fmt.Fprintf(stdout, "verified: %d images decode, %d cross references, %d values scanned for in %d bytes, %d tar members, %d decoded fields\n",
			v.Decoded, v.CrossRefs, v.DictionaryValues+v.BinaryForms, v.ScannedBytes, v.TarMembers, v.FieldsChecked)
		if anonFlags.mapOut != "" {
			fmt.Fprintf(stdout, "mapping (keep it private): %s\n", anonFlags.mapOut)
		}
		return nil
	},
}

var anonymizeKitCmd = &cobra.Command{
	Use:   "kit OUTDIR",
	Short: "Create the paths an anonymized image dir needs before criu restore (restore-kit.txt)",
	Long: `Reads OUTDIR/restore-kit.txt (written by "criukit anonymize --restore-kit") and creates the
missing directories, fifos and files (of the recorded size and mode, zero-filled) so that
"criu restore -D OUTDIR" can open them. Existing paths are left alone. Files that are executed or
mapped should be replaced by equivalent ones for the restored process to run on.`,
	Example: `  criukit anonymize kit /tmp/dump-public && criu restore -D /tmp/dump-public -d`,
	Args:    cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		stdout := cmd.OutOrStdout()
		ents, err := anonymize.ReadKit(args[0] + "/" + anonymize.KitFile)
		if err != nil {
			return fmt.Errorf("anonymize kit: %w", err)
		}
		created, err := anonymize.ApplyRestoreKit(ents)
		for _, c := range created {
			fmt.Fprintln(stdout, "created", c)
		}
		if err != nil {
			return fmt.Errorf("anonymize kit: %w", err)
		}
		fmt.Fprintf(stdout, "%d of %d kit paths created\n", len(created), len(ents))
		return nil
	},
}

// isTerminal reports whether f is a terminal (TCGETS succeeds): progress lines go only there.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func printCounts(stdout io.Writer, c map[string]int) {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	for _, k := range keys {
		fmt.Fprintf(tw, "  %s\t%d\n", k, c[k])
	}
	tw.Flush()
}

func printInventory(stdout io.Writer, rep *anonymize.Report) error {
	if anonFlags.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintln(stdout, "inventory (original values below: keep this report local)")
	printCounts(stdout, rep.Counts)
	cats := make([]string, 0, len(rep.Samples))
	for k := range rep.Samples {
		cats = append(cats, k)
	}
	sort.Strings(cats)
	for _, c := range cats {
		fmt.Fprintf(stdout, "  %s: %s\n", c, strings.Join(quoteAll(rep.Samples[c]), ", "))
	}
	for _, d := range rep.Dropped {
		fmt.Fprintf(stdout, "  would drop %s: %s\n", d.Name, d.Reason)
	}
	if rep.Problem != "" {
		fmt.Fprintf(stdout, "the identity level would fail: %s\n", rep.Problem)
	}
	return nil
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = fmt.Sprintf("%q", x)
	}
	return out
}

func init() {
	f := anonymizeCmd.Flags()
	f.StringVar(&anonFlags.level, "level", "identity", "inventory, content, identity, structure or paranoid")
	f.StringVar(&anonFlags.keyFile, "key-file", "", "key file (>= 16 bytes) for tokens consistent across reports; default: random key")
	f.StringVar(&anonFlags.mapOut, "map-out", "", "write the original->token mapping (JSON) here; never inside OUTDIR")
	f.StringArrayVar(&anonFlags.keep, "keep", nil, "value never replaced (repeatable)")
	f.StringArrayVar(&anonFlags.secrets, "secret", nil, "extra word to replace everywhere and scan for (repeatable)")
	f.StringArrayVar(&anonFlags.logs, "log", nil, "extra CRIU log file to scrub into OUTDIR (repeatable)")
	f.BoolVar(&anonFlags.restoreKit, "restore-kit", false, "write OUTDIR/restore-kit.txt (paths to recreate before restore)")
	f.BoolVar(&anonFlags.json, "json", false, "print the manifest (or inventory report) as JSON")
	anonymizeCmd.AddCommand(anonymizeKitCmd)
	root.AddCommand(anonymizeCmd)
}
