package cow

import (
	"bufio"
	"fmt"
	"html"
	"io"

	"github.com/criukit/criukit/internal/units"
)

// WriteSVG draws who shares what: one bar per process (parents first), as long as its pages; the
// grey part is stored in its own pages file, each colored part is read from the process of that
// color (the legend maps colors to pids). Moved pages and chain levels are printed at the right.
func WriteSVG(w io.Writer, r *Result) error {
	const (
		left, barW, rowH, top = 190, 560, 26, 40
	)
	bw := bufio.NewWriter(w)
	color := map[int]string{}
	for i, p := range r.Procs {
		color[p.Pid] = fmt.Sprintf("hsl(%d,65%%,55%%)", (i*137)%360)
	}
	var maxPages int64 = 1
	for _, p := range r.Procs {
		maxPages = max(maxPages, p.Pages)
	}
	h := top + rowH*len(r.Procs) + 60
	width := left + barW + 260
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, h)
	fmt.Fprintf(bw, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(bw, `<text x="10" y="20" font-size="14" font-weight="bold">%s: %d levels, pages %s -> %s</text>`+"\n",
		html.EscapeString(r.Dir), r.Levels, human(r.PagesBefore), human(r.PagesAfter))
	for i, p := range r.Procs {
		y := top + i*rowH
		fmt.Fprintf(bw, `<rect x="4" y="%d" width="12" height="12" fill="%s"/>`, y+4, color[p.Pid])
		fmt.Fprintf(bw, `<text x="22" y="%d">pid %d (ppid %d)</text>`+"\n", y+15, p.Pid, p.Ppid)
		x := float64(left)
		seg := func(n int64, fill, title string) {
			if n <= 0 {
				return
			}
			wd := float64(barW) * float64(n) / float64(maxPages)
			fmt.Fprintf(bw, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>`+"\n",
				x, y+2, wd, rowH-6, fill, html.EscapeString(title))
			x += wd
		}
		seg(p.Stored, "#bbbbbb", fmt.Sprintf("pid %d: %d pages stored in its own pages file", p.Pid, p.Stored))
		for _, src := range sortedPids(p.Sources) {
			c, ok := color[src]
			if !ok {
				c = "black"
			}
			seg(p.Sources[src], c, fmt.Sprintf("pid %d: %d pages read from pid %d", p.Pid, p.Sources[src], src))
		}
		fmt.Fprintf(bw, `<text x="%d" y="%d">%d pages, %d stored, %d moved, %d levels</text>`+"\n",
			left+barW+10, y+15, p.Pages, p.Stored, p.Moved, p.Levels)
	}
	y := top + rowH*len(r.Procs) + 25
	fmt.Fprintf(bw, `<rect x="%d" y="%d" width="12" height="12" fill="#bbbbbb"/><text x="%d" y="%d">own pages file; colors: read from the process with that color</text>`+"\n",
		left, y, left+18, y+11)
	fmt.Fprintln(bw, `</svg>`)
	return bw.Flush()
}

func human(b int64) string { return units.Bytes(b) }

// Human formats a byte count (for the CLI).
func Human(b int64) string { return human(b) }
