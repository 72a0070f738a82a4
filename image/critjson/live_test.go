package critjson_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/image/critjson"
	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/testenv"
)

func TestMain(m *testing.M) { harness.Main(m) }

// corpusFiles lists every regular file of every corpus dump (logs excluded).
func corpusFiles(t *testing.T) []string {
	t.Helper()
	testenv.Root(t)
	var out []string
	for _, d := range harness.Corpus(t) {
		err := filepath.WalkDir(d.Dir, func(p string, e os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.Type().IsRegular() && !strings.HasSuffix(p, ".log") && !strings.Contains(p, "/work/") {
				out = append(out, p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestRoundTripJSON: binary -> JSON -> binary is byte-exact for every corpus file, plain and pretty.
func TestRoundTripJSON(t *testing.T) {
	kinds := map[string]bool{}
	for _, p := range corpusFiles(t) {
		name := filepath.Base(p)
		d, err := image.Classify(name)
		if err != nil {
			t.Errorf("%s: not classified: %v", p, err)
			continue
		}
		if d.Raw == image.RawPages {
			continue // memory, never JSON (checked in TestPagesRefused)
		}
		orig, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		img, err := image.Decode(bytes.NewReader(orig), name)
		if err != nil {
			t.Errorf("%s: decode: %v", p, err)
			continue
		}
		kinds[d.Name] = true
		for _, pretty := range []bool{false, true} {
			js, err := critjson.Marshal(img, critjson.Options{Pretty: pretty})
			if err != nil {
				t.Errorf("%s pretty=%v: marshal: %v", p, pretty, err)
				continue
			}
			back, err := critjson.Unmarshal(js, name)
			if err != nil {
				t.Errorf("%s pretty=%v: unmarshal: %v", p, pretty, err)
				continue
			}
			var buf bytes.Buffer
			if err := back.Encode(&buf); err != nil {
				t.Errorf("%s pretty=%v: encode: %v", p, pretty, err)
				continue
			}
			if !bytes.Equal(buf.Bytes(), orig) {
				t.Errorf("%s pretty=%v: JSON round trip differs (%d -> %d bytes)", p, pretty, len(orig), buf.Len())
			}
		}
	}
	var ks []string
	for k := range kinds {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	t.Logf("round-tripped image kinds: %s", strings.Join(ks, " "))
}

func TestPagesRefused(t *testing.T) {
	for _, p := range corpusFiles(t) {
		if d, _ := image.Classify(p); d == nil || d.Raw != image.RawPages {
			continue
		}
		img := &image.Image{Name: filepath.Base(p), Desc: image.DescByName("PAGES")}
		if _, err := critjson.Marshal(img, critjson.Options{}); err == nil {
			t.Fatalf("%s: pages converted to JSON", p)
		}
		return
	}
	t.Fatal("no pages file in the corpus")
}

// knownDiff is an accepted difference between crit 3.17's JSON and ours.
type knownDiff struct {
	magic string // image magic ("*" any)
	path  string // JSON path, [*] for any index; path.Match syntax
	kind  string // "ours-only": key missing in crit; "crit-only"; "value": both have it, values differ
	why   string
}

// The differences between crit 3.17 and criukit on CRIU 4.2 images. A difference not listed fails.
var knownDiffs = []knownDiff{
	{"CORE", "entries[*].thread_core.cg_set", "ours-only", "field newer than crit 3.17's core.proto: crit drops unknown fields"},
	{"CORE", "entries[*].thread_core.creds.cap_amb", "ours-only", "newer field (ambient capabilities)"},
	{"CORE", "entries[*].thread_info.fpregs.xsave.cet", "ours-only", "newer field (CET shadow-stack state, CPUs with CET user): crit 3.17 drops it"},
	{"INVENTORY", "entries[*].plugins_entry", "ours-only", "newer inventory field"},
	{"INVENTORY", "entries[*].dump_criu_run_id", "ours-only", "newer inventory field"},
	{"INVENTORY", "entries[*].network_lock_method", "ours-only", "newer inventory field"},
	{"INVENTORY", "entries[*].allow_uprobes", "ours-only", "newer inventory field"},
	{"PAGEMAP", "entries[*].nr_pages", "value", "CRIU 4.2 moved the page count to field 5 (nr_pages); crit 3.17 names field 2 nr_pages and shows its 0"},
	{"PAGEMAP", "entries[*].compat_nr_pages", "ours-only", "field 2 is compat_nr_pages in CRIU 4.2's pagemap.proto"},
	{"FDINFO", "entries[*].type", "ours-only", "fd type PIDFD (20) is unknown to crit 3.17: Python protobuf drops unknown enum values"},
	{"FILES", "entries[*].type", "ours-only", "file type PIDFD (20), unknown to crit 3.17"},
	{"FILES", "entries[*].pidfd", "ours-only", "pidfd_entry is newer than crit 3.17"},
	{"FILES", "entries[*].isk.ip_opts.ttl", "ours-only", "newer inet socket option"},
	{"FILES", "entries[*].isk.tcp_opts", "ours-only", "newer inet socket options (tcp_opts)"},
	{"MEMFD_INODE", "entries[*].mode", "ours-only", "newer memfd field"},
	{"NETNS", "entries[*].ipv4_sysctl", "ours-only", "newer netns field"},
	{"IPCNS_SHM", "entries[*].extra", "value", "in_pagemaps segments have no inline data: crit reads the next entry's bytes as data"},
}

func allowed(magic, p, kind string) bool {
	for _, k := range knownDiffs {
		if (k.magic == magic || k.magic == "*") && k.kind == kind {
			pat := strings.NewReplacer("[", `\[`, "]", `\]`).Replace(k.path)
			if ok, _ := path.Match(pat, p); ok {
				return true
			}
		}
	}
	return false
}

var indexRE = regexp.MustCompile(`\[\d+\]`)

func jsonDiff(a, b any, p string, out *[]string) {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			*out = append(*out, "value "+p)
			return
		}
		for k, v := range x {
			if w, ok := y[k]; ok {
				jsonDiff(v, w, p+"."+k, out)
			} else {
				*out = append(*out, "crit-only "+p+"."+k)
			}
		}
		for k := range y {
			if _, ok := x[k]; !ok {
				*out = append(*out, "ours-only "+p+"."+k)
			}
		}
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			*out = append(*out, "value "+p)
			return
		}
		for i := range x {
			jsonDiff(x[i], y[i], fmt.Sprintf("%s[%d]", p, i), out)
		}
	default:
		if fmt.Sprint(a) != fmt.Sprint(b) {
			*out = append(*out, "value "+p)
		}
	}
}

func decodeJSON(t *testing.T, b []byte) any {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("bad JSON: %v", err)
	}
	return v
}

// TestCritCompat compares our JSON with Python crit 3.17's (/usr/bin/crit) for every corpus image
// crit can decode, plain and --pretty. Every difference must be in knownDiffs.
func TestCritCompat(t *testing.T) {
	crit := "/usr/bin/crit"
	if _, err := os.Stat(crit); err != nil {
		testenv.Unavailable(t, "needs CRIU's Python crit at %s (apt-get install criu)", crit)
	}
	compared := map[string]int{}
	seen := map[string]bool{}
	for _, p := range corpusFiles(t) {
		name := filepath.Base(p)
		d, err := image.Classify(name)
		if err != nil || d.Kind == image.KindRaw {
			continue
		}
		img, err := image.ReadFile(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		for _, pretty := range []bool{false, true} {
			args := []string{"decode", "-i", p}
			if pretty {
				args = append(args, "--pretty")
			}
			var stderr bytes.Buffer
			cmd := exec.Command(crit, args...)
			cmd.Stderr = &stderr
			want, err := cmd.Output()
			if err != nil {
				// crit 3.17 has no handler for some 4.x images; note it, nothing to compare.
				t.Logf("%s: crit fails (%v): %s", name, err, lastLine(stderr.String()))
				break
			}
			got, err := critjson.Marshal(img, critjson.Options{Pretty: pretty})
			if err != nil {
				t.Errorf("%s: %v", p, err)
				continue
			}
			compared[d.Magic]++
			if bytes.Equal(bytes.TrimSpace(want), got) {
				continue
			}
			var diffs []string
			jsonDiff(decodeJSON(t, want), decodeJSON(t, got), "", &diffs)
			sort.Strings(diffs)
			if len(diffs) == 0 {
				// same data, different text: key order, escaping or spacing differ from crit's
				t.Errorf("%s (pretty=%v): JSON text differs from crit's although the data is equal", name, pretty)
			}
			for _, df := range diffs {
				kind, p0, _ := strings.Cut(df, " ")
				np := strings.TrimPrefix(indexRE.ReplaceAllString(p0, "[*]"), ".")
				seen[d.Magic+" "+kind+" "+np] = true
				if !allowed(d.Magic, np, kind) {
					t.Errorf("%s (pretty=%v): unexpected difference from crit: %s %s", name, pretty, kind, p0)
				}
			}
		}
	}
	t.Logf("compared with crit: %v", compared)
	var acc []string
	for k := range seen {
		acc = append(acc, k)
	}
	sort.Strings(acc)
	t.Logf("differences seen (all in knownDiffs unless reported above):\n%s", strings.Join(acc, "\n"))
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// TestExportCorpus copies the corpus dumps to $CRIUKIT_BENCH_CORPUS/<name> for bench/crit
// (opt-in: does nothing without the variable).
func TestExportCorpus(t *testing.T) {
	dst := os.Getenv("CRIUKIT_BENCH_CORPUS")
	if dst == "" {
		t.Skip("opt-in: set CRIUKIT_BENCH_CORPUS=DIR to copy the corpus dumps there for bench/crit")
	}
	testenv.Root(t)
	for _, d := range harness.Corpus(t) {
		to := filepath.Join(dst, d.Workload)
		if err := os.RemoveAll(to); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(to, 0o755); err != nil {
			t.Fatal(err)
		}
		ents, err := os.ReadDir(d.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if !e.Type().IsRegular() {
				continue
			}
			b, err := os.ReadFile(filepath.Join(d.Dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("exported %s", to)
	}
}
