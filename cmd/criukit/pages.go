package main

import (
	"bufio"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"
)

var (
	pagesPid  int
	pagesAddr string
	pagesLen  string
	pagesRaw  bool
)

var pagesCmd = &cobra.Command{
	Use:   "pages DIR|ARCHIVE --pid P --addr V --len N [--raw]",
	Short: "Print the dumped memory of a task at a virtual address (hexdump or raw bytes)",
	Long: `pages reads N bytes of task P's memory at virtual address V from the images (pagemap-P.img
and pages-ID.img), without loading the pages file: any dump size costs the same little memory.
Pages marked PE_PARENT are read from the "parent" images directory of incremental dumps. The
output is a hexdump with addresses and ASCII (like hexdump -C), or the bytes themselves with
--raw. It stops with an error at the first page that is not in the images (never touched, lazy,
or a missing parent). DIR may be a container checkpoint archive: pages of a plain tar are read in
place, compressed archives are decompressed once to a temporary spool. Find addresses with "criukit x DIR mems" or "criukit x DIR rss".`,
	Example: `  criukit pages /tmp/dump --pid 1234 --addr 0x7ffd5c3e1000 --len 256
  criukit pages /tmp/dump --pid 1234 --addr 0x55e0d4cf2000 --len 4096 --raw > page.bin`,
	Args: cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		addr, err := strconv.ParseUint(pagesAddr, 0, 64)
		if err != nil {
			return fmt.Errorf("--addr %q: want a number like 0x7ffd5c3e1000", pagesAddr)
		}
		n, err := strconv.ParseInt(pagesLen, 0, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("--len %q: want a byte count like 4096 or 0x1000", pagesLen)
		}
		return runPages(cmd.OutOrStdout(), args[0], pagesPid, addr, n, pagesRaw)
	},
}

func init() {
	pagesCmd.Flags().IntVar(&pagesPid, "pid", 0, "task pid (as in pstree.img)")
	pagesCmd.Flags().StringVar(&pagesAddr, "addr", "", "virtual address (0x... or decimal)")
	pagesCmd.Flags().StringVar(&pagesLen, "len", "256", "number of bytes")
	pagesCmd.Flags().BoolVar(&pagesRaw, "raw", false, "write the bytes instead of a hexdump")
	_ = pagesCmd.MarkFlagRequired("pid")
	_ = pagesCmd.MarkFlagRequired("addr")
	root.AddCommand(pagesCmd)
}

func runPages(w io.Writer, dir string, pid int, addr uint64, n int64, raw bool) error {
	m, err := memoryAny(dir, pid)
	if err != nil {
		return err
	}
	defer m.Close()
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	buf := make([]byte, 64<<10)
	hd := &hexDumper{w: bw, addr: addr}
	for done := int64(0); done < n; {
		chunk := buf[:min(int64(len(buf)), n-done)]
		got, rerr := m.ReadAt(chunk, int64(addr)+done)
		if raw {
			bw.Write(chunk[:got])
		} else {
			hd.write(chunk[:got])
		}
		done += int64(got)
		if rerr != nil {
			if !raw {
				hd.flush()
			}
			bw.Flush()
			return fmt.Errorf("pid %d at %#x (after %d of %d bytes): %w", pid, addr+uint64(done), done, n, rerr)
		}
	}
	if !raw {
		hd.flush()
	}
	return bw.Flush()
}

// hexDumper prints "address  16 hex bytes  |ascii|" lines like hexdump -C, with virtual addresses.
type hexDumper struct {
	w    *bufio.Writer
	addr uint64
	line []byte
}

func (h *hexDumper) write(p []byte) {
	for len(p) > 0 {
		k := min(16-len(h.line), len(p))
		h.line = append(h.line, p[:k]...)
		p = p[k:]
		if len(h.line) == 16 {
			h.flush()
		}
	}
}

func (h *hexDumper) flush() {
	if len(h.line) == 0 {
		return
	}
	fmt.Fprintf(h.w, "%016x  ", h.addr)
	for i := 0; i < 16; i++ {
		if i < len(h.line) {
			fmt.Fprintf(h.w, "%02x ", h.line[i])
		} else {
			h.w.WriteString("   ")
		}
		if i == 7 {
			h.w.WriteByte(' ')
		}
	}
	h.w.WriteString(" |")
	for _, c := range h.line {
		if c < 0x20 || c > 0x7e {
			c = '.'
		}
		h.w.WriteByte(c)
	}
	h.w.WriteString("|\n")
	h.addr += uint64(len(h.line))
	h.line = h.line[:0]
}
