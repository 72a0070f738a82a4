package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/image/critjson"
	"github.com/criukit/criukit/image/explore"
	"github.com/criukit/criukit/internal/outfile"
	"github.com/spf13/cobra"
)

// crit drop-in commands: decode, encode, show, info, x.

var (
	critIn, critOut string
	critPretty      bool
	critNoPayload   bool
	xJSON           bool
)

var decodeCmd = &cobra.Command{
	Use:   "decode [-i IMG] [-o OUT] [--pretty]",
	Short: "Convert a CRIU image from binary to crit's JSON",
	Long: `decode converts one CRIU image to JSON, like crit decode: {"magic": "CORE", "entries": [...]}
with the same keys and representations as crit (base64 bytes, enum names, "extra" for pipe/socket
data, tcp queues, ipc values, ghost contents). --pretty indents by 4 and shows addresses, flags,
devices and hex fields symbolically, like crit's --pretty.

Unlike crit the JSON is lossless: "criukit encode" turns it back into the identical binary (fields
crit does not know are kept; see docs/crit-compat.md for the few extra keys). Raw images (ifaddr,
iptables, tmpfs tarballs...) become {"magic": "RAW", "file": NAME, "raw": BASE64}; pages-*.img is
refused (it is memory: use "criukit pages"). Without -i the image is read from stdin and its type is
found from its magic, as crit does; pass -i so raw files can be recognised by name.`,
	Example: `  criukit decode -i dump/core-1234.img --pretty
  criukit decode -i dump/files.img -o files.json
  criukit decode < dump/pstree.img | jq '.entries[].pid'`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		return critDecode(cmd.InOrStdin(), cmd.OutOrStdout(), critIn, critOut, critjson.Options{Pretty: critPretty})
	},
}

var encodeCmd = &cobra.Command{
	Use:   "encode [-i JSON] [-o IMG]",
	Short: "Convert crit JSON back to a binary CRIU image",
	Long: `encode is the reverse of decode, like crit encode. It accepts crit's JSON (plain or --pretty)
and criukit's; the output file is written atomically (temporary file, then rename). The output
name (-o) decides the image type when a magic is shared (PAGEMAP: pagemap-N or pagemap-shmem-N).`,
	Example: `  criukit decode -i dump/inventory.img -o inv.json && criukit encode -i inv.json -o dump2/inventory.img
  criukit show dump/pstree.img | jq '.entries[0].sid = 1' | criukit encode -o pstree.img`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		return critEncode(cmd.InOrStdin(), cmd.OutOrStdout(), critIn, critOut)
	},
}

var showCmd = &cobra.Command{
	Use:   "show IMG",
	Short: "Print a CRIU image as human-readable JSON (decode --pretty)",
	Long: `show prints one image as indented JSON with symbolic flags, addresses and devices, like
crit show. --nopl replaces extra payloads by their size. IMG may name a file inside a container
checkpoint archive: ARCHIVE/core-1.img (looked up in its checkpoint/ directory, then at its root).`,
	Example: `  criukit show dump/mm-1234.img
  criukit show --nopl dump/pipes-data.img
  criukit show /var/lib/kubelet/checkpoints/checkpoint-web.tar/pstree.img`,
	Args: cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		return critDecode(cmd.InOrStdin(), cmd.OutOrStdout(), args[0], "", critjson.Options{Pretty: true, NoPayload: critNoPayload})
	},
}

var infoCmd = &cobra.Command{
	Use:   "info IMG",
	Short: "Print the magic and number of entries of an image",
	Long: `info prints {"magic": ..., "count": N} like crit info (for pagemaps the head is not counted).
Entries are streamed, extras are skipped, so large images cost no memory. Raw images report their
format and size instead.`,
	Example: `  criukit info dump/pagemap-1234.img
  criukit info dump/pages-1.img`,
	Args: cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		return critInfo(cmd.OutOrStdout(), args[0])
	},
}

var xCmd = &cobra.Command{
	Use:   "x DIR|ARCHIVE {ps|fds|mems|rss|sk}",
	Short: "Explore an images directory: process tree, files, mappings, resident pages, sockets",
	Long: `x prints a summary of a dump like crit x: ps (process tree), fds (open files, cwd, root),
mems (mappings), rss (dumped page ranges and their mappings), and sk (sockets with addresses,
states and queued bytes; criukit only). Unlike crit, rss reads CRIU >= 4.2 page counts. --json
prints the same data as JSON. DIR may be a container checkpoint archive (tar, tar.gz, tar.zst).`,
	Example: `  criukit x dump ps
  criukit x dump fds
  criukit x dump sk --json`,
	Args: cobra.ExactArgs(2),
	RunE: func(cmd *cobra.Command, args []string) error {
		return critExplore(cmd.OutOrStdout(), args[0], args[1], xJSON)
	},
}

func init() {
	for _, c := range []*cobra.Command{decodeCmd, encodeCmd} {
		c.Flags().StringVarP(&critIn, "in", "i", "", "input file (stdin by default)")
		c.Flags().StringVarP(&critOut, "out", "o", "", "output file (stdout by default)")
	}
	decodeCmd.Flags().BoolVar(&critPretty, "pretty", false, "multiline with indents and some numerical fields in field-specific format")
	showCmd.Flags().BoolVar(&critNoPayload, "nopl", false, "do not show entry payload (if exists)")
	xCmd.Flags().BoolVar(&xJSON, "json", false, "print JSON instead of text")
	root.AddCommand(decodeCmd, encodeCmd, showCmd, infoCmd, xCmd)
}

// stdinName guesses a file name for an image read from stdin, from its magic (like crit).
func stdinName(head []byte) (string, error) {
	if len(head) < 4 {
		return "", fmt.Errorf("input too short for a CRIU image (%d bytes)", len(head))
	}
	m := binary.NativeEndian.Uint32(head)
	if (m == image.MagicImgCommon || m == image.MagicImgService) && len(head) >= 8 {
		m = binary.NativeEndian.Uint32(head[4:])
	}
	var best *image.Desc
	for _, d := range image.Descs() {
		if d.MagicValue == m && d.Kind != image.KindRaw && (best == nil || best.Legacy && !d.Legacy) {
			best = d
		}
	}
	if best == nil {
		return "", fmt.Errorf("unknown magic %#x: not a CRIU protobuf image (raw images such as pages-*.img, ifaddr-*.img or tmpfs tarballs are recognised by file name: pass them with -i FILE under their CRIU name)", m)
	}
	r := strings.NewReplacer("%lu", "0", "%ld", "0", "%u", "0", "%d", "0", "%x", "0", "%s", "x")
	return r.Replace(best.Pattern), nil
}

func critDecode(stdin io.Reader, stdout io.Writer, in, out string, o critjson.Options) error {
	var rd *image.Reader
	if in == "" || in == outfile.Stdout {
		// Streamed: only the magic is looked at before the reader takes over.
		br := bufio.NewReaderSize(stdin, 64<<10)
		head, _ := br.Peek(8)
		name, err := stdinName(head)
		if err != nil {
			return err
		}
		if rd, err = image.NewReader(br, name); err != nil {
			return err
		}
	} else {
		var err error
		if rd, err = openImageAny(in); err != nil {
			return err
		}
		if rd.Desc().Kind == image.KindUnknown {
			// Not a CRIU file name (renamed image?): recognise it by its magic, like crit, reading
			// 8 bytes (not the whole file).
			var head [8]byte
			n, _ := io.ReadFull(rd.Raw(), head[:])
			rd.Close()
			name, err := stdinName(head[:n])
			if err != nil {
				return fmt.Errorf("%s: %w", in, err)
			}
			if rd, err = image.OpenAs(in, name); err != nil {
				return fmt.Errorf("%s: %w", in, err)
			}
		}
		defer rd.Close()
		if d := rd.Desc(); d.Kind == image.KindRaw && d.Raw == image.RawPages {
			return fmt.Errorf("%s: %w", in, critjson.ErrPages)
		}
	}
	// write sends the JSON to stdout (with crit's trailing newline) or to the output file (without).
	write := func(fill func(w io.Writer) error) error {
		if out == "" || out == outfile.Stdout {
			bw := bufio.NewWriterSize(stdout, 64<<10)
			if err := fill(bw); err != nil {
				return err
			}
			bw.WriteByte('\n')
			return bw.Flush()
		}
		return outfile.Write(out, func(w io.Writer) error {
			bw := bufio.NewWriterSize(w, 64<<10)
			if err := fill(bw); err != nil {
				return err
			}
			return bw.Flush() // no trailing newline in files, like crit
		})
	}
	if d := rd.Desc(); d.Kind == image.KindRaw {
		// Raw images (tmpfs tarballs can be big) are streamed: constant memory.
		return write(func(w io.Writer) error { return critjson.MarshalRaw(w, rd.Name(), d, rd.Raw(), o) })
	}
	img, err := rd.ReadAll()
	if err != nil {
		return err
	}
	if in == "" {
		img.Name = "stdin"
	}
	js, err := critjson.Marshal(img, o)
	if err != nil {
		return err
	}
	img = nil
	return write(func(w io.Writer) error { _, err := w.Write(js); return err })
}

func critEncode(stdin io.Reader, stdout io.Writer, in, out string) error {
	var data []byte
	var err error
	if in == "" || in == outfile.Stdout {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(in)
	}
	if err != nil {
		return err
	}
	if out == outfile.Stdout {
		out = ""
	}
	name := ""
	if out != "" {
		name = filepath.Base(out)
	}
	img, err := critjson.Unmarshal(data, name)
	if err != nil {
		src := in
		if src == "" {
			src = "stdin"
		}
		return fmt.Errorf("%s: %w", src, err)
	}
	if out == "" {
		return img.Encode(stdout)
	}
	return image.WriteFile(out, img)
}

func critInfo(stdout io.Writer, path string) error {
	rd, err := openImageAny(path)
	if err != nil {
		return err
	}
	defer rd.Close()
	d := rd.Desc()
	var v any
	if d.Kind == image.KindRaw || d.Kind == image.KindUnknown {
		format := string(d.Raw)
		if d.Kind == image.KindUnknown {
			format = "unknown"
		}
		v = struct {
			Magic  string `json:"magic"`
			Format string `json:"format"`
			Size   int64  `json:"size"`
		}{critjson.RawMagic, format, rd.Size()}
	} else {
		n := 0
		for {
			_, err := rd.Skip() // framing only: no payload held or parsed, constant memory
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			n++
		}
		if d.Kind == image.KindPagemap && n > 0 {
			n-- // crit does not count the pagemap head
		}
		v = struct {
			Magic string `json:"magic"`
			Count int    `json:"count"`
		}{d.Magic, n}
	}
	b, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", b)
	return err
}

func critExplore(stdout io.Writer, dir, what string, asJSON bool) error {
	d, done, err := exploreAny(dir)
	if err != nil {
		return err
	}
	defer done()
	var data any
	var text func(w io.Writer)
	switch what {
	case "ps":
		v, err := d.Ps()
		if err != nil {
			return err
		}
		data, text = v, func(w io.Writer) { explore.WritePs(w, v) }
	case "fds":
		v, err := d.Fds()
		if err != nil {
			return err
		}
		data, text = v, func(w io.Writer) { explore.WriteFds(w, v) }
	case "mems":
		v, err := d.Mems()
		if err != nil {
			return err
		}
		data, text = v, func(w io.Writer) { explore.WriteMems(w, v) }
	case "rss":
		v, err := d.Rss()
		if err != nil {
			return err
		}
		data, text = v, func(w io.Writer) { explore.WriteRss(w, v) }
	case "sk":
		v, err := d.Sk()
		if err != nil {
			return err
		}
		data, text = v, func(w io.Writer) { explore.WriteSk(w, v) }
	default:
		return fmt.Errorf("%q: %w", what, explore.ErrUnknownExplorer)
	}
	bw := bufio.NewWriter(stdout)
	if asJSON {
		enc := json.NewEncoder(bw)
		enc.SetIndent("", "  ")
		if err := enc.Encode(data); err != nil {
			return err
		}
	} else {
		text(bw)
	}
	return bw.Flush()
}
