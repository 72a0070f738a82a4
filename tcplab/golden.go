package tcplab

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Golden traces: per kernel release, the canonical trace (the hashed form: sequence numbers
// relative to the ISNs, timestamps masked, the two directions grouped between case events)
// and the hash of every case run, so that a later run on the same kernel can be compared
// packet by packet, and a run on another kernel gives a review list.
//
//	DIR/<uname -r>/index.json        {"E01/v4": {"hash": ..., "status": ..., "trace_varies": ...}}
//	DIR/<uname -r>/E01-v4.trace      one canonical line per packet or event

// GoldenEntry is one case run in index.json.
type GoldenEntry struct {
	Hash        string `json:"hash"`
	Status      string `json:"status"`
	TraceVaries bool   `json:"trace_varies,omitempty"`
}

// GoldenDiff is one case whose trace or result differs from the golden one.
type GoldenDiff struct {
	Name    string `json:"name"`
	Against string `json:"against"` // kernel release of the golden trace
	Status  string `json:"status"`  // golden status -> this status, when they differ
	Line    int    `json:"line"`    // 1-based line of the first difference (0: status only)
	Golden  string `json:"golden"`
	Got     string `json:"got"`
}

// GoldenReport says what --golden did.
type GoldenReport struct {
	Release  string       `json:"release"`
	Mode     string       `json:"mode"` // record, compare, review (another release is golden)
	Against  string       `json:"against,omitempty"`
	Recorded int          `json:"recorded"`
	Compared int          `json:"compared"`
	New      []string     `json:"new,omitempty"` // cases without a golden trace
	Diffs    []GoldenDiff `json:"diffs,omitempty"`
}

// KernelRelease is uname -r.
func KernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// CanonicalTrace is the hashed form of a trace (see Lab.Hash).
func CanonicalTrace(trace []string) []string {
	var out []string
	var seg [2][]string
	flush := func() {
		out = append(out, seg[0]...)
		out = append(out, seg[1]...)
		seg = [2][]string{}
	}
	for _, line := range trace {
		switch {
		case strings.HasPrefix(line, "* "):
			flush()
			out = append(out, line)
		case strings.Contains(line, "B>A"):
			seg[1] = append(seg[1], line)
		default:
			seg[0] = append(seg[0], line)
		}
	}
	flush()
	return out
}

func hashLines(lines []string) string {
	h := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(h[:8])
}

func goldenFile(name string) string { return strings.ReplaceAll(name, "/", "-") + ".trace" }

// Golden compares results with the golden traces in dir (recording them when this kernel
// release has none; update re-records the cases that differ or are new).
func Golden(dir string, results []Result, update bool) (*GoldenReport, error) {
	rel := KernelRelease()
	rep := &GoldenReport{Release: rel, Mode: "compare"}
	here := filepath.Join(dir, rel)
	against := rel
	idx, err := readIndex(here)
	if err != nil {
		return nil, err
	}
	if idx == nil {
		rep.Mode = "record"
		if other := latestRelease(dir, rel); other != "" {
			rep.Mode, rep.Against, against = "review", other, other
			if idx, err = readIndex(filepath.Join(dir, other)); err != nil {
				return nil, err
			}
		}
	}
	old := idx
	if old == nil {
		old = map[string]GoldenEntry{}
	}
	mine := map[string]GoldenEntry{}
	if rep.Mode == "compare" {
		for k, v := range old {
			mine[k] = v
		}
	}
	if err := os.MkdirAll(here, 0o755); err != nil {
		return nil, err
	}
	for _, r := range results {
		if r.Status == "skip" {
			continue
		}
		lines := CanonicalTrace(r.Trace)
		e := GoldenEntry{Hash: hashLines(lines), Status: r.Status, TraceVaries: r.TraceVaries}
		g, ok := old[r.Name]
		record := rep.Mode != "compare" || update || !ok
		switch {
		case rep.Mode == "record":
		case !ok:
			rep.New = append(rep.New, r.Name)
		default:
			rep.Compared++
			if d, differs := diffGolden(filepath.Join(dir, against), r.Name, g, e, lines); differs {
				d.Against = against
				rep.Diffs = append(rep.Diffs, d)
			} else {
				record = record && rep.Mode != "compare"
			}
		}
		if record && !e.TraceVaries { // varying traces are compared by result only: no file
			if err := writeFileAtomic(filepath.Join(here, goldenFile(r.Name)), []byte(strings.Join(lines, "\n")+"\n")); err != nil {
				return nil, err
			}
		}
		if record {
			mine[r.Name] = e
			rep.Recorded++
		}
	}
	b, _ := json.MarshalIndent(mine, "", " ")
	if err := writeFileAtomic(filepath.Join(here, "index.json"), append(b, '\n')); err != nil {
		return nil, err
	}
	return rep, nil
}

func diffGolden(dir, name string, g, e GoldenEntry, lines []string) (GoldenDiff, bool) {
	d := GoldenDiff{Name: name}
	if g.Status != e.Status {
		d.Status = g.Status + " -> " + e.Status
	}
	if g.Hash == e.Hash || e.TraceVaries || g.TraceVaries { // varying traces: the result only
		return d, d.Status != ""
	}
	b, err := os.ReadFile(filepath.Join(dir, goldenFile(name)))
	if err != nil {
		d.Golden = "(golden trace missing: " + err.Error() + ")"
		return d, true
	}
	gl := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	for i := 0; i < max(len(gl), len(lines)); i++ {
		var a, b string
		if i < len(gl) {
			a = gl[i]
		}
		if i < len(lines) {
			b = lines[i]
		}
		if a != b {
			d.Line, d.Golden, d.Got = i+1, a, b
			break
		}
	}
	return d, true
}

func readIndex(dir string) (map[string]GoldenEntry, error) {
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	m := map[string]GoldenEntry{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s/index.json: %w (delete the directory to record again)", dir, err)
	}
	return m, nil
}

// latestRelease is the most recently recorded other release in dir.
func latestRelease(dir, not string) string {
	es, _ := os.ReadDir(dir)
	type rel struct {
		name string
		t    int64
	}
	var rs []rel
	for _, e := range es {
		if !e.IsDir() || e.Name() == not {
			continue
		}
		if st, err := os.Stat(filepath.Join(dir, e.Name(), "index.json")); err == nil {
			rs = append(rs, rel{e.Name(), st.ModTime().UnixNano()})
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].t > rs[j].t })
	if len(rs) == 0 {
		return ""
	}
	return rs[0].name
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// String renders the report for people: the first differing packet of each case.
func (r *GoldenReport) String() string {
	var b strings.Builder
	switch r.Mode {
	case "record":
		fmt.Fprintf(&b, "golden: recorded %d traces for kernel %s\n", r.Recorded, r.Release)
	case "compare":
		fmt.Fprintf(&b, "golden: %d compared with kernel %s's traces, %d differ, %d new\n", r.Compared, r.Release, len(r.Diffs), len(r.New))
	case "review":
		fmt.Fprintf(&b, "golden: kernel %s has no traces yet (recorded %d); review list against %s: %d of %d differ\n",
			r.Release, r.Recorded, r.Against, len(r.Diffs), r.Compared)
	}
	for _, d := range r.Diffs {
		fmt.Fprintf(&b, "  %s", d.Name)
		if d.Status != "" {
			fmt.Fprintf(&b, " result %s", d.Status)
		}
		if d.Line > 0 {
			fmt.Fprintf(&b, " first difference at line %d:\n    golden: %s\n    got:    %s", d.Line, d.Golden, d.Got)
		}
		b.WriteString("\n")
	}
	for _, n := range r.New {
		fmt.Fprintf(&b, "  %s: new (no golden trace)\n", n)
	}
	return b.String()
}
