package memtrack

import (
	"bytes"
	"fmt"
	"html"
	"io"
	"sort"

	"github.com/criukit/criukit/internal/outfile"
)

// WriteSVG draws written pages per interval over time: the total and the busiest regions (up to 5).
func WriteSVG(w io.Writer, rep *Report) error {
	const (
		width, height = 900, 420
		left, right   = 70, 220
		top, bottom   = 40, 50
	)
	pw, ph := float64(width-left-right), float64(height-top-bottom)
	type series struct {
		name  string
		color string
		pts   []float64
	}
	n := len(rep.Intervals)
	total := series{name: "total", color: "#222222", pts: make([]float64, n)}
	for i, iv := range rep.Intervals {
		total.pts[i] = float64(iv.Pages)
	}
	regs := append([]RegionSummary(nil), rep.Regions...)
	sort.SliceStable(regs, func(i, j int) bool { return regs[i].Written > regs[j].Written })
	colors := []string{"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd"}
	all := []series{total}
	for k := 0; k < len(regs) && k < len(colors) && regs[k].Written > 0; k++ {
		s := series{name: fmt.Sprintf("%s %#x", regs[k].Label, regs[k].Start), color: colors[k], pts: make([]float64, n)}
		for i, iv := range rep.Intervals {
			for _, rw := range iv.Regions {
				if rw.Region == regs[k].ID {
					s.pts[i] = float64(rw.Pages)
				}
			}
		}
		all = append(all, s)
	}
	ymax := 1.0
	for _, p := range total.pts {
		ymax = max(ymax, p)
	}
	ymax = niceCeil(ymax)
	tmax := 0.0
	if n > 0 {
		tmax = rep.Intervals[n-1].End.Sub(rep.Start).Seconds()
	}
	tmax = max(tmax, 1e-3)
	x := func(i int) float64 {
		return float64(left) + pw*rep.Intervals[i].End.Sub(rep.Start).Seconds()/tmax
	}
	y := func(v float64) float64 { return float64(top) + ph*(1-v/ymax) }

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15">pid %d: pages written per interval (%v, page %d B)</text>`+"\n", left, rep.Pid, rep.IntervalNs, rep.PageSize)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", left, top, left, height-bottom)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", left, height-bottom, width-right, height-bottom)
	for k := 0; k <= 4; k++ {
		v := ymax * float64(k) / 4
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n", left-6, y(v)+4, v)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, y(v), width-right, y(v))
		tv := tmax * float64(k) / 4
		tx := float64(left) + pw*float64(k)/4
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%.1fs</text>`+"\n", tx, height-bottom+18, tv)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">time since attach</text>`+"\n", left+int(pw/2), height-12)
	for k, s := range all {
		if n > 0 {
			b.WriteString(`<polyline fill="none" stroke-width="2" stroke="` + s.color + `" points="`)
			for i, p := range s.pts {
				fmt.Fprintf(&b, "%.1f,%.1f ", x(i), y(p))
			}
			b.WriteString("\"/>\n")
		}
		ly := top + 16*k
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="3" fill="%s"/>`, width-right+12, ly+4, s.color)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", width-right+30, ly+10, html.EscapeString(s.name))
	}
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// WriteSVGFile writes the plot to path with internal/outfile (temp file + rename; devices written in
// place).
func WriteSVGFile(path string, rep *Report) error {
	if err := outfile.Write(path, func(w io.Writer) error { return WriteSVG(w, rep) }); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}

// niceCeil rounds v up to 4 times 1, 2, 2.5 or 5 times a power of ten (so quarter ticks are round).
func niceCeil(v float64) float64 {
	step := 1.0
	for step*4*10 <= v {
		step *= 10
	}
	for _, m := range []float64{0.25, 0.5, 1, 2, 2.5, 5, 10} {
		if step*m*4 >= v && step*m >= 1 {
			return step * m * 4
		}
	}
	return step * 40
}
