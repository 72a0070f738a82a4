package critjson_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
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

// TestCritCompat compares our JSON with Python crit 3.17's (/usr/bin/crit) for every corpus image
// crit can decode, plain and --pretty. Every difference must be in critjson.Crit317Diffs.
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
			diffs, err := critjson.CompareCrit(d.Magic, want, got)
			if err != nil {
				t.Errorf("%s (pretty=%v): %v", name, pretty, err)
				continue
			}
			if len(diffs) == 0 {
				// same data, different text: key order, escaping or spacing differ from crit's
				t.Errorf("%s (pretty=%v): JSON text differs from crit's although the data is equal", name, pretty)
			}
			for _, df := range diffs {
				seen[d.Magic+" "+df.Kind+" "+df.Generic()] = true
				if !df.Known {
					t.Errorf("%s (pretty=%v): unexpected difference from crit: %s %s", name, pretty, df.Kind, df.Path)
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
	t.Logf("differences seen (all in critjson.Crit317Diffs unless reported above):\n%s", strings.Join(acc, "\n"))
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
