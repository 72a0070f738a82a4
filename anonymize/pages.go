package anonymize

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/criukit/criukit/anonymize/dict"
	"github.com/criukit/criukit/anonymize/pseudo"
	"github.com/criukit/criukit/image"
	"net/netip"
)

const (
	pageSize  = 4096
	peParent  = 1 << 0
	peLazy    = 1 << 1
	pePresent = 1 << 2

	vmaAreaVDSO = 1 << 3
	vmaAreaVVAR = 1 << 12
)

// pmEnt is one pagemap entry: n pages at vaddr, at byte off of the pages file (-1: not in it).
type pmEnt struct {
	vaddr, n uint64
	off      int64
}

// pagesRole says who owns a pages-N.img file.
type pagesRole struct {
	shmem bool
	pid   int
	ents  []pmEnt
	keep  [][2]uint64 // vaddr ranges kept at structure (vdso, vvar)
}

func pagemapIndex(img *image.Image) (uint32, []pmEnt, error) {
	if len(img.Entries) == 0 {
		return 0, nil, fmt.Errorf("%s: no pagemap head", img.Name)
	}
	h, ok := img.Entries[0].Msg.(*pagemap.PagemapHead)
	if !ok {
		return 0, nil, fmt.Errorf("%s: entry 0 is not pagemap_head", img.Name)
	}
	var ents []pmEnt
	var off int64
	for _, e := range img.Entries[1:] {
		pe, ok := e.Msg.(*pagemap.PagemapEntry)
		if !ok {
			return 0, nil, fmt.Errorf("%s: entry is not pagemap_entry", img.Name)
		}
		n := pe.GetNrPages()
		if n == 0 {
			n = uint64(pe.GetCompatNrPages())
		}
		present := !pe.GetInParent()
		if pe.Flags != nil {
			present = pe.GetFlags()&pePresent != 0
		}
		pm := pmEnt{vaddr: pe.GetVaddr(), n: n, off: -1}
		if present {
			pm.off = off
			off += int64(n) * pageSize
		}
		ents = append(ents, pm)
	}
	return h.GetPagesId(), ents, nil
}

// roles maps every pages file to its pagemap.
func (r *run) roles() map[string]*pagesRole {
	out := map[string]*pagesRole{}
	for name, img := range r.imgs {
		if img.Desc.Kind != image.KindPagemap {
			continue
		}
		id, ents, err := pagemapIndex(img)
		if err != nil {
			r.note("pagemap %s: %v", name, err)
			continue
		}
		role := &pagesRole{ents: ents, shmem: img.Desc.Name == "SHMEM_PAGEMAP"}
		if !role.shmem {
			role.pid, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(name, "pagemap-"), ".img"))
			if mimg := r.imgs[fmt.Sprintf("mm-%d.img", role.pid)]; mimg != nil && len(mimg.Entries) > 0 {
				if mme, ok := mimg.Entries[0].Msg.(*mm.MmEntry); ok {
					for _, v := range mme.GetVmas() {
						if v.GetStatus()&(vmaAreaVDSO|vmaAreaVVAR) != 0 {
							role.keep = append(role.keep, [2]uint64{v.GetStart(), v.GetEnd()})
						}
					}
				}
			}
		}
		out[fmt.Sprintf("pages-%d.img", id)] = role
	}
	return out
}

// areaPatch is bytes to write at off of an output pages file.
type areaPatch struct {
	pages string
	off   int64
	data  []byte
}

// readVaddr reads [start,end) of a task's memory from its pages file; it returns the bytes
// and the file offset of each byte run (one per page piece). Missing pages read as zeros and
// have no offset.
func readVaddr(f *os.File, ents []pmEnt, start, end uint64) ([]byte, []int64, error) {
	buf := make([]byte, end-start)
	offs := make([]int64, end-start)
	for i := range offs {
		offs[i] = -1
	}
	for _, e := range ents {
		es, ee := e.vaddr, e.vaddr+e.n*pageSize
		if e.off < 0 || ee <= start || es >= end {
			continue
		}
		a, b := max(es, start), min(ee, end)
		off := e.off + int64(a-es)
		if _, err := f.ReadAt(buf[a-start:b-start], off); err != nil {
			return nil, nil, err
		}
		for i := a; i < b; i++ {
			offs[i-start] = off + int64(i-a)
		}
	}
	return buf, offs, nil
}

// envValue and argValue are the same-length replacements of env values and arguments; the
// dictionary uses the same functions, so memory, images and logs agree. Both go through the
// mapper, so the policy (public vocabulary kept, everything else one pseudonym) is the same as
// for every other value.
func (r *run) envValue(v string) string {
	switch {
	case v == "":
		return v
	case allDigits(v):
		if len(v) < pseudo.DigitsMin {
			r.keepString(v)
			return v // SHLVL=1, ports, pids: kept (use --secret for secret numbers)
		}
		return r.m.Digits(v)
	case looksLikePath(v):
		parts := strings.Split(v, ":")
		for i := range parts {
			parts[i] = r.path(parts[i])
		}
		return strings.Join(parts, ":")
	}
	r.innerWords(v)
	if a, err := netip.ParseAddr(v); err == nil && r.lvl >= Identity {
		return sameLenIP(v, r.mapIP(a).String())
	}
	if isNumeric(v) {
		r.keepString(v) // versions, dotted numbers
		return v
	}
	return r.m.Token(pseudo.CatEnv, v)
}

// envName maps an environment variable name at identity: well-known names are kept.
func (r *run) envName(k string) string {
	if r.lvl < Identity || wellKnownEnv[k] || strings.HasPrefix(k, "LC_") || strings.HasPrefix(k, "XDG_") {
		r.keepString(k + "=")
		return k
	}
	return r.m.Token(pseudo.CatEnv, k)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func looksLikePath(v string) bool {
	return strings.HasPrefix(v, "/") || strings.HasPrefix(v, "./") || strings.HasPrefix(v, "~/")
}

func (r *run) argValue(i int, v string) string {
	switch {
	case v == "":
		return v
	case i == 0:
		if looksLikePath(v) && r.lvl >= Identity {
			return r.path(v)
		}
		if r.lvl >= Identity {
			r.innerWords(v)                    // "nginx: master process nginx -c /etc/x.conf" (setproctitle)
			return r.m.Token(pseudo.CatArg, v) // public program names stay
		}
		return v
	case strings.HasPrefix(v, "-") && len(v) > 1:
		dashes := "-"
		if strings.HasPrefix(v, "--") {
			dashes = "--"
		}
		body := v[len(dashes):]
		if k, val, ok := strings.Cut(body, "="); ok {
			if r.lvl >= Identity && len(k) >= dict.MinLen {
				k = r.argValue(2, k)
			}
			return dashes + k + "=" + r.argValue(2, val)
		}
		if len(body) < dict.MinLen || r.lvl < Identity {
			return v // content keeps option names (values are replaced); short names are not findable
		}
		// "--opt", "-pVALUE": the whole word is mapped unless public
		return dashes + r.argValue(2, body)
	case allDigits(v):
		if len(v) < pseudo.DigitsMin {
			r.keepString(v)
			return v
		}
		return r.m.Digits(v)
	case looksLikePath(v):
		return r.path(v)
	}
	if a, err := netip.ParseAddr(v); err == nil && r.lvl >= Identity {
		return sameLenIP(v, r.mapIP(a).String())
	}
	if isNumeric(v) {
		r.keepString(v)
		return v
	}
	r.innerWords(v)
	return r.m.Token(pseudo.CatArg, v)
}

// innerWords (identity) maps the words of a multi-word argv or env value ("x=secret; run"):
// programs keep copies of single words (a shell's variables, a parsed option), which the whole
// value's pseudonym would not find in memory.
func (r *run) innerWords(v string) {
	if r.lvl < Identity || !strings.ContainsAny(v, " ;=,:'\"\t") {
		return
	}
	for _, f := range strings.Fields(v) {
		if f = strings.Trim(f, "'\";,"); strings.HasPrefix(f, "/") {
			r.path(f)
		}
	}
	for _, w := range strings.FieldsFunc(v, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.')
	}) {
		w = strings.Trim(w, ".-")
		if len(w) < dict.MinLen || isNumeric(w) && !allDigits(w) {
			continue
		}
		r.m.Component(w, r.po) // the path component rules: "key.pem" maps like the file key.pem
	}
}

// harvestEnv (identity) finds environment strings ("NAME=value", NUL-terminated, after a NUL)
// anywhere in a task's memory: programs that rewrite their argv/env area (setproctitle: redis,
// nginx) keep their environment in heap copies the argv/env area no longer shows.
func (r *run) harvestEnv(b []byte) {
	for i := 1; i < len(b); i++ {
		if b[i-1] != 0 || !(b[i] >= 'A' && b[i] <= 'Z' || b[i] == '_') {
			continue
		}
		j := i
		for j < len(b) && j-i < 64 && (b[j] >= 'A' && b[j] <= 'Z' || b[j] >= '0' && b[j] <= '9' || b[j] == '_') {
			j++
		}
		if j-i < 3 || j >= len(b) || b[j] != '=' {
			continue
		}
		k := j + 1
		for k < len(b) && k-j < 4096 && b[k] >= 0x20 && b[k] < 0x7f {
			k++
		}
		if k >= len(b) || b[k] != 0 || k-j-1 < dict.MinLen {
			continue
		}
		name, val := string(b[i:j]), string(b[j+1:k])
		r.harvesting = true
		r.envName(name)
		r.envValue(val)
		r.harvesting = false
		i = k
	}
}

// rewriteArea rewrites a NUL-separated argv or env block (same length).
func (r *run) rewriteArea(b []byte, env bool) []byte {
	out := append([]byte(nil), b...)
	pos := 0
	for i, s := range bytes.Split(b, []byte{0}) {
		str := string(s)
		var ns string
		if env {
			if k, v, ok := strings.Cut(str, "="); ok {
				ns = r.envName(k) + "=" + r.envValue(v)
			} else {
				ns = str
			}
		} else {
			ns = r.argValue(i, str)
		}
		if ns == str {
			r.keepString(str)
		}
		if len(ns) == len(str) {
			copy(out[pos:], ns)
		}
		pos += len(s) + 1
	}
	return out
}

// planArgvEnv computes the argv/env rewrites of every task from its input pages.
func (r *run) planArgvEnv() error {
	roles := r.roles()
	var names []string
	for n := range roles {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, pages := range names {
		role := roles[pages]
		if role.shmem || r.lvl >= Structure {
			continue // zeroed or filled as a whole
		}
		mimg := r.imgs[fmt.Sprintf("mm-%d.img", role.pid)]
		if mimg == nil || len(mimg.Entries) == 0 {
			continue
		}
		mme, ok := mimg.Entries[0].Msg.(*mm.MmEntry)
		if !ok {
			continue
		}
		f, err := os.Open(filepath.Join(r.in, pages))
		if err != nil {
			return fmt.Errorf("anonymize: %w", err)
		}
		if r.lvl >= Identity {
			if err := r.harvestFile(f); err != nil {
				f.Close()
				return fmt.Errorf("anonymize: %s: %w", pages, err)
			}
		}
		for _, area := range []struct {
			s, e uint64
			env  bool
		}{{mme.GetMmArgStart(), mme.GetMmArgEnd(), false}, {mme.GetMmEnvStart(), mme.GetMmEnvEnd(), true}} {
			if area.e <= area.s || area.e-area.s > 1<<24 {
				continue
			}
			b, offs, err := readVaddr(f, role.ents, area.s, area.e)
			if err != nil {
				f.Close()
				return fmt.Errorf("anonymize: %s: argv/env of pid %d: %w", pages, role.pid, err)
			}
			nb := r.rewriteArea(b, area.env)
			r.sec.ReplaceBytes(nb, len(nb)) // patches are written last: --secret values must not come back
			what := "argv"
			if area.env {
				what = "env"
			}
			r.count(what+"-areas", 1)
			for i := 0; i < len(nb); {
				if offs[i] < 0 {
					i++
					continue
				}
				j := i + 1
				for j < len(nb) && offs[j] == offs[j-1]+1 {
					j++
				}
				r.argv = append(r.argv, areaPatch{pages, offs[i], nb[i:j]})
				i = j
			}
		}
		f.Close()
	}
	return nil
}

// harvestFile runs harvestEnv over a pages file in chunks (overlapping by the longest string).
func (r *run) harvestFile(f *os.File) error {
	const over = 4096 + 80
	buf := make([]byte, dict.ChunkSize+over)
	var off int64
	for {
		n, err := f.ReadAt(buf, off)
		if n > 0 {
			r.harvestEnv(buf[:n])
		}
		if err == io.EOF || n < len(buf) {
			return nil
		}
		if err != nil {
			return err
		}
		off += int64(n - over)
	}
}

// pagesFile writes one pages-N.img: streamed in chunks, memory flat in the file size.
func (r *run) pagesFile(name string) error {
	role := r.roles()[name]
	if role == nil {
		r.drop(name, "pages file referenced by no pagemap")
		return nil
	}
	src, err := os.Open(filepath.Join(r.in, name))
	if err != nil {
		return fmt.Errorf("anonymize: %w", err)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return err
	}
	dst, err := os.OpenFile(filepath.Join(r.tmp, name), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("anonymize: %w", err)
	}
	defer dst.Close()
	var tr string
	switch {
	case r.lvl >= Structure:
		// zero (sparse), except vdso/vvar pages of tasks
		kept := 0
		for _, e := range role.ents {
			if e.off < 0 {
				continue
			}
			for p := uint64(0); p < e.n; p++ {
				va := e.vaddr + p*pageSize
				in := false
				for _, k := range role.keep {
					if va >= k[0] && va < k[1] {
						in = true
					}
				}
				if !in {
					continue
				}
				off := e.off + int64(p)*pageSize
				pg := make([]byte, pageSize)
				if _, err := src.ReadAt(pg, off); err != nil {
					return fmt.Errorf("anonymize: %s: page at %d: %w", name, off, err)
				}
				if _, err := dst.WriteAt(pg, off); err != nil {
					return err
				}
				r.d.Find(pg, len(pg), off, func(h dict.Hit) bool {
					r.pagesLeaks = append(r.pagesLeaks, fmt.Sprintf("%s offset %d: %s value (%d bytes)", name, h.Offset, h.Entry.Kind, len(h.Entry.From)))
					return false
				})
				kept++
			}
		}
		if err := dst.Truncate(st.Size()); err != nil {
			return err
		}
		r.pagesScanned[name] = st.Size() // holes and the scanned vdso/vvar pages
		tr = fmt.Sprintf("memory zeroed (sparse) except %d vdso/vvar pages", kept)
		r.count("pages-zeroed", int(st.Size()/pageSize)-kept)
	case role.shmem:
		buf := make([]byte, 1<<20)
		for {
			n, err := io.ReadFull(src, buf)
			fillInPlace(buf[:n])
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				return err
			}
		}
		tr = "shared memory (memfd, anon shared, SysV shm) filled"
		r.count("shmem-bytes", int(st.Size()))
	case r.lvl >= Identity || r.sec.Len() > 0:
		// two stages on two goroutines: replace (and apply the argv/env patches), then scan the
		// final bytes for leftovers while writing them (the leak scan of this file)
		var patches []areaPatch
		for _, p := range r.argv {
			if p.pages == name {
				patches = append(patches, p)
			}
		}
		d := r.d
		if r.lvl < Identity {
			d = r.sec // content: memory is kept but for argv/env areas and --secret values
		}
		d.Compile() // shared by the two goroutines below
		var hits []string
		n, err := r.identityPages(d, src, dst, patches, func(h dict.Hit) bool {
			hits = append(hits, fmt.Sprintf("%s offset %d: %s value (%d bytes)", name, h.Offset, h.Entry.Kind, len(h.Entry.From)))
			return len(hits) < 5
		})
		if err != nil {
			return fmt.Errorf("anonymize: %s: %w", name, err)
		}
		r.pagesLeaks = append(r.pagesLeaks, hits...)
		r.pagesScanned[name] = st.Size()
		tr = fmt.Sprintf("dictionary values replaced in memory (%d)", n)
		if r.lvl < Identity {
			tr = fmt.Sprintf("memory kept; --secret values replaced (%d)", n)
		}
		if len(patches) > 0 {
			tr += "; argv/env values rewritten in place"
		}
		r.count("memory-replacements", n)
		r.report(name, "pages", tr)
		return nil
	default:
		if _, err := io.Copy(dst, src); err != nil {
			return err
		}
		tr = "memory kept"
	}
	np := 0
	for _, p := range r.argv {
		if p.pages != name {
			continue
		}
		if _, err := dst.WriteAt(p.data, p.off); err != nil {
			return err
		}
		np++
	}
	if np > 0 {
		tr += "; argv/env values rewritten in place"
	}
	r.report(name, "pages", tr)
	return nil
}

// identityPages copies src to dst in two stages on two goroutines, handing chunks over without
// copying them: the first replaces dictionary values and applies the argv/env patches (file
// offsets), the second leak-scans the final bytes (independently of the replacement: every
// value, at every offset, chunk boundaries included) and writes them. Memory use is a few
// chunks plus the longest value.
func (r *run) identityPages(d *dict.Dict, src io.Reader, dst io.Writer, patches []areaPatch, leak func(dict.Hit) bool) (int, error) {
	type chunk struct {
		b   []byte
		err error
	}
	tail := max(d.MaxLen()-1, 0)
	const inFlight = 3
	free := make(chan []byte, inFlight+1)
	for range inFlight + 1 {
		free <- make([]byte, dict.ChunkSize+tail)
	}
	out := make(chan chunk, inFlight)
	quit, done := make(chan struct{}), make(chan struct{})
	defer func() { close(quit); <-done }() // the first stage is gone when this returns
	total := 0
	go func() {
		defer close(done)
		defer close(out)
		send := func(c chunk) bool {
			select {
			case out <- c:
				return true
			case <-quit:
				return false
			}
		}
		cur, carry, base := <-free, 0, int64(0)
		for {
			if err := r.ctx.Err(); err != nil {
				send(chunk{err: err})
				return
			}
			m, rerr := io.ReadFull(src, cur[carry:])
			n := carry + m
			eof := rerr == io.EOF || rerr == io.ErrUnexpectedEOF
			if rerr != nil && !eof {
				send(chunk{err: rerr})
				return
			}
			limit := max(n-tail, 0)
			if eof {
				limit = n
			}
			total += d.ReplaceBytes(cur[:n], limit)
			r.progressBytes("memory pages", int64(limit))
			// patches overlapping the final region [base, base+limit)
			for _, p := range patches {
				a, b := max(p.off, base), min(p.off+int64(len(p.data)), base+int64(limit))
				if a < b {
					copy(cur[a-base:b-base], p.data[a-p.off:b-p.off])
				}
			}
			var next []byte
			if !eof {
				select {
				case next = <-free:
				case <-quit:
					return
				}
				carry = copy(next, cur[limit:n])
			}
			if !send(chunk{b: cur[:limit]}) || eof {
				return
			}
			cur, base = next, base+int64(limit)
		}
	}()
	// leak scan of the final bytes: a value starting in pend (bytes whose starts are not yet
	// scanned) may end up to tail bytes into the next chunk
	pend := make([]byte, 0, 4*tail+1)
	pendBase, stopped := int64(0), false
	find := func(b []byte, limit int, base int64) {
		if stopped || limit <= 0 {
			return
		}
		d.Find(b, limit, base, func(h dict.Hit) bool {
			if !leak(h) {
				stopped = true
			}
			return !stopped
		})
	}
	for c := range out {
		if c.err != nil {
			return 0, c.err
		}
		b := c.b
		if len(b) < tail {
			pend = append(pend, b...)
		} else {
			joint := append(pend, b[:tail]...)
			find(joint, len(pend), pendBase)
			base := pendBase + int64(len(pend))
			find(b, len(b)-tail, base)
			pend = append(pend[:0], b[len(b)-tail:]...)
			pendBase = base + int64(len(b)-tail)
		}
		if _, err := dst.Write(b); err != nil {
			return 0, err
		}
		free <- b[:cap(b)]
	}
	find(pend, len(pend), pendBase)
	return total, nil
}
