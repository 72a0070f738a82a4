package zdtm

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/image/critjson"
	"github.com/criukit/criukit/image/explore"
)

//go:embed crit317.py
var critBatch string

// CodecOptions tune CheckDir.
type CodecOptions struct {
	// Python runs crit's library (pycriu) for the JSON comparison; "" skips it. The default
	// is /usr/bin/python3 with Debian's pycriu (crit 3.17), see DefaultPython.
	Python string
}

// DefaultPython is the interpreter whose pycriu is Debian's crit (3.17 here).
const DefaultPython = "/usr/bin/python3"

// DirReport is the codec check of one dump directory.
type DirReport struct {
	Dir          string            `json:"dir"`
	Files        int               `json:"files"`         // images checked (pages, logs excluded)
	Exact        int               `json:"exact"`         // decode -> encode byte-exact
	JSONExact    int               `json:"json_exact"`    // decode -> JSON -> encode byte-exact
	InfoOK       int               `json:"info_ok"`       // entry count equals the decoded entries
	CritCompared int               `json:"crit_compared"` // files crit could decode (JSON compared)
	CritFails    int               `json:"crit_fails"`    // files crit cannot decode (nothing to compare)
	CritSame     int               `json:"crit_same"`     // compared, no difference at all
	KnownDiffs   map[string]int    `json:"known_diffs"`   // "MAGIC kind path" -> files (accepted crit 3.17 differences)
	PageFiles    int               `json:"page_files"`    // pagemaps whose every page was read back
	Pages        int64             `json:"pages"`         // pages read through the pagemaps
	X            map[string]string `json:"x"`             // explorer -> "ok" or its error
	Problems     []string          `json:"problems"`      // every failure, "file: what"
}

// XProblem says whether the report's only failures are of the explorers (x ...).
func (r *DirReport) XFailed() []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(r.X)) {
		if r.X[k] != "ok" {
			out = append(out, k)
		}
	}
	return out
}

func (r *DirReport) problem(f string, a ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(f, a...))
}

// CheckDir runs criukit's codec checks on every image of a dump directory: decode/encode and
// JSON round trips byte-exact, info's count, JSON against crit's (differences outside
// critjson.Crit317Diffs are problems), ls, the explorers (x ps, fds, mems, rss, sk) and every
// pagemap read back through image.Memory with the pages file sizes matching. Problems are
// collected, not returned as an error; the error is for an unreadable directory.
func CheckDir(dir string, o CodecOptions) (*DirReport, error) {
	rs, err := CheckDirs([]string{dir}, o)
	if err != nil {
		return nil, err
	}
	return rs[0], nil
}

// critItem is one image to compare with crit: our JSON, and the report it belongs to.
type critItem struct {
	r     *DirReport
	magic string
	js    []byte
}

// CheckDirs is CheckDir of many dirs with one crit (Python) process for all of them.
func CheckDirs(dirs []string, o CodecOptions) ([]*DirReport, error) {
	var out []*DirReport
	items := map[string]critItem{}
	var files []string
	for _, d := range dirs {
		r, err := checkDir(d, items, &files)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if o.Python != "" && len(files) > 0 {
		if err := compareCrit(o.Python, files, items); err != nil {
			for _, r := range out {
				r.problem("crit: %v", err)
			}
		}
	}
	return out, nil
}

func checkDir(dir string, forCrit map[string]critItem, critFiles *[]string) (*DirReport, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	r := &DirReport{Dir: dir, KnownDiffs: map[string]int{}, X: map[string]string{}}
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || skipName(name) {
			continue
		}
		d, err := image.Classify(name)
		if err != nil {
			r.problem("%s: not a known CRIU image name: %v", name, err)
			continue
		}
		if d.Raw == image.RawPages {
			continue
		}
		p := filepath.Join(dir, name)
		orig, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		r.Files++
		img, err := image.Decode(bytes.NewReader(orig), name)
		if err != nil {
			r.problem("%s: decode: %v", name, err)
			continue
		}
		var buf bytes.Buffer
		if err := img.Encode(&buf); err != nil {
			r.problem("%s: encode: %v", name, err)
		} else if !bytes.Equal(buf.Bytes(), orig) {
			r.problem("%s: decode -> encode differs: %s", name, firstDiff(orig, buf.Bytes()))
		} else {
			r.Exact++
		}
		if out, err := jsonRoundtrip(orig, name); err != nil {
			r.problem("%s: JSON round trip: %v", name, err)
		} else if !bytes.Equal(out, orig) {
			r.problem("%s: JSON round trip differs: %s", name, firstDiff(orig, out))
		} else {
			r.JSONExact++
		}
		if d.Kind != image.KindRaw {
			n, err := image.CountEntries(p)
			switch {
			case err != nil:
				r.problem("%s: info: %v", name, err)
			case n != len(img.Entries):
				r.problem("%s: info counts %d entries, decode %d", name, n, len(img.Entries))
			default:
				r.InfoOK++
			}
			if js, err := critjson.Marshal(img, critjson.Options{}); err == nil {
				forCrit[p] = critItem{r, d.Magic, js}
				*critFiles = append(*critFiles, p)
			}
		}
	}
	if _, err := image.ReadDir(dir); err != nil {
		r.problem("ls: %v", err)
	}
	checkExplorers(r, dir)
	checkPages(r, dir, ents)
	return r, nil
}

func compareCrit(python string, files []string, items map[string]critItem) error {
	cmd := exec.Command(python, append([]string{"-c", critBatch}, files...)...)
	cmd.Env = append(os.Environ(), "PYTHONPATH=", "PYTHONDONTWRITEBYTECODE=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	for sc.Scan() {
		var line struct {
			File  string          `json:"file"`
			OK    bool            `json:"ok"`
			JSON  json.RawMessage `json:"json"`
			Error string          `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return fmt.Errorf("bad output line: %v", err)
		}
		it, ok := items[line.File]
		if !ok {
			return fmt.Errorf("output for a file not asked for: %s", line.File)
		}
		r, magic, js := it.r, it.magic, it.js
		name := filepath.Base(line.File)
		if !line.OK {
			r.CritFails++
			continue
		}
		diffs, err := critjson.CompareCrit(magic, line.JSON, js)
		if err != nil {
			r.problem("%s: compare with crit: %v", name, err)
			continue
		}
		r.CritCompared++
		if len(diffs) == 0 {
			r.CritSame++
		}
		seen := map[string]bool{}
		for _, df := range diffs {
			k := magic + " " + df.Kind + " " + df.Generic()
			if !df.Known {
				r.problem("%s: JSON differs from crit's, not a known crit 3.17 difference: %s %s", name, df.Kind, df.Path)
				continue
			}
			if !seen[k] {
				seen[k] = true
				r.KnownDiffs[k]++
			}
		}
	}
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("%s: %v: %s", python, err, lastLine(stderr.String()))
	}
	return sc.Err()
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// checkExplorers runs what `criukit x DIR ps|fds|mems|rss|sk` runs, printing to nowhere.
func checkExplorers(r *DirReport, dir string) {
	d, err := explore.Open(dir)
	if err != nil {
		r.X["open"] = err.Error()
		r.problem("x: %v", err)
		return
	}
	run := func(name string, f func() error) {
		defer func() {
			if p := recover(); p != nil {
				r.X[name] = fmt.Sprintf("panic: %v", p)
				r.problem("x %s: panic: %v", name, p)
			}
		}()
		if err := f(); err != nil {
			r.X[name] = err.Error()
			r.problem("x %s: %v", name, err)
			return
		}
		r.X[name] = "ok"
	}
	run("ps", func() error { p, err := d.Ps(); explore.WritePs(io.Discard, p); return err })
	run("fds", func() error { p, err := d.Fds(); explore.WriteFds(io.Discard, p); return err })
	run("mems", func() error { p, err := d.Mems(); explore.WriteMems(io.Discard, p); return err })
	run("rss", func() error { p, err := d.Rss(); explore.WriteRss(io.Discard, p); return err })
	run("sk", func() error { p, err := d.Sk(); explore.WriteSk(io.Discard, p); return err })
}

// checkPages reads every page of every pagemap back (criukit pages) and checks that the pages
// files hold exactly the pages their pagemaps point at (deduped dirs: PE_PARENT pages come from
// the parent chain).
func checkPages(r *DirReport, dir string, ents []os.DirEntry) {
	used := map[string]int64{} // pages file -> pages referenced
	for _, e := range ents {
		name := e.Name()
		var m *image.Memory
		var err error
		var pid int
		var shmid uint64
		switch {
		case !e.Type().IsRegular():
			continue
		case strings.HasPrefix(name, "pagemap-shmem-"):
			if _, err := fmt.Sscanf(name, "pagemap-shmem-%d.img", &shmid); err != nil {
				continue
			}
			m, err = image.OpenShmem(dir, shmid)
		case strings.HasPrefix(name, "pagemap-"):
			if _, err := fmt.Sscanf(name, "pagemap-%d.img", &pid); err != nil {
				continue
			}
			m, err = image.OpenMemory(dir, pid)
		default:
			continue
		}
		if err != nil {
			r.problem("%s: pages: %v", name, err)
			continue
		}
		ok := true
		for _, rg := range m.Ranges() {
			if rg.Flags&(image.PEPresent|image.PEParent) == 0 {
				continue
			}
			buf := make([]byte, rg.NrPages*uint64(image.PageSize))
			if _, err := m.ReadAt(buf, int64(rg.Vaddr)); err != nil {
				r.problem("%s: pages at %#x (%d pages): %v", name, rg.Vaddr, rg.NrPages, err)
				ok = false
				break
			}
			r.Pages += int64(rg.NrPages)
			if rg.Flags&image.PEPresent != 0 {
				used[m.PagesFile()] += int64(rg.NrPages)
			}
		}
		m.Close()
		if ok {
			r.PageFiles++
		}
	}
	for p, n := range used {
		fi, err := os.Stat(p)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) || n > 0 {
				r.problem("%s: %v", filepath.Base(p), err)
			}
			continue
		}
		if fi.Size() != n*int64(image.PageSize) {
			r.problem("%s: %d bytes, its pagemap points at %d pages (%d bytes)", filepath.Base(p), fi.Size(), n, n*int64(image.PageSize))
		}
	}
}
