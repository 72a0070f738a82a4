package zdtm

import (
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// DumpDirs finds every dump directory (one holding pstree.img) under roots, sorted. The chain
// levels of deduped dirs (cow-N) and net rewrite's IMGDIR.orig copies are not dump dirs of their own.
func DumpDirs(roots ...string) ([]string, error) {
	var out []string
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !e.IsDir() {
				return nil
			}
			b := filepath.Base(p)
			if p != root && (strings.HasPrefix(b, "cow-") || strings.HasSuffix(b, ".orig")) {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, "pstree.img")); err == nil {
				out = append(out, p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(out)
	return out, nil
}

// Corpus sums the codec checks of many dump dirs.
type Corpus struct {
	Dirs         int                 `json:"dirs"`
	Files        int                 `json:"files"`
	Exact        int                 `json:"exact"`
	JSONExact    int                 `json:"json_exact"`
	InfoOK       int                 `json:"info_ok"`
	CritCompared int                 `json:"crit_compared"`
	CritSame     int                 `json:"crit_same"`
	CritFails    int                 `json:"crit_fails"`
	KnownDiffs   map[string]int      `json:"known_diffs"`
	PageFiles    int                 `json:"page_files"`
	Pages        int64               `json:"pages"`
	XFailed      map[string][]string `json:"x_failed"`   // explorer -> dirs where it failed
	DirsClean    int                 `json:"dirs_clean"` // dirs without any problem
	Problems     []string            `json:"problems"`   // "dir: problem"
}

// Add folds one dir's report in.
func (c *Corpus) Add(r *DirReport) {
	if c.KnownDiffs == nil {
		c.KnownDiffs = map[string]int{}
		c.XFailed = map[string][]string{}
	}
	c.Dirs++
	c.Files += r.Files
	c.Exact += r.Exact
	c.JSONExact += r.JSONExact
	c.InfoOK += r.InfoOK
	c.CritCompared += r.CritCompared
	c.CritSame += r.CritSame
	c.CritFails += r.CritFails
	c.PageFiles += r.PageFiles
	c.Pages += r.Pages
	for k, v := range r.KnownDiffs {
		c.KnownDiffs[k] += v
	}
	for _, x := range r.XFailed() {
		c.XFailed[x] = append(c.XFailed[x], r.Dir)
	}
	if len(r.Problems) == 0 {
		c.DirsClean++
	}
	for _, p := range r.Problems {
		c.Problems = append(c.Problems, r.Dir+": "+p)
	}
}

// Write prints the counts, one per line, then the problems.
func (c *Corpus) Write(w io.Writer) {
	fmt.Fprintf(w, "dump dirs            %d (%d without any problem)\n", c.Dirs, c.DirsClean)
	fmt.Fprintf(w, "images               %d (pages files excluded)\n", c.Files)
	fmt.Fprintf(w, "decode->encode exact %d/%d\n", c.Exact, c.Files)
	fmt.Fprintf(w, "JSON round trip      %d/%d\n", c.JSONExact, c.Files)
	fmt.Fprintf(w, "info count           %d ok\n", c.InfoOK)
	fmt.Fprintf(w, "crit 3.17 JSON       %d compared (%d identical, the rest only known differences unless listed below), %d crit cannot decode\n",
		c.CritCompared, c.CritSame, c.CritFails)
	fmt.Fprintf(w, "pages                %d pagemaps read back, %d pages\n", c.PageFiles, c.Pages)
	for _, x := range []string{"ps", "fds", "mems", "rss", "sk"} {
		fmt.Fprintf(w, "x %-18s %d/%d dirs ok\n", x, c.Dirs-len(c.XFailed[x]), c.Dirs)
	}
	if len(c.KnownDiffs) > 0 {
		fmt.Fprintln(w, "known crit 3.17 differences (files):")
		for _, k := range slices.Sorted(maps.Keys(c.KnownDiffs)) {
			fmt.Fprintf(w, "  %-70s %d\n", k, c.KnownDiffs[k])
		}
	}
	if len(c.Problems) > 0 {
		fmt.Fprintf(w, "problems (%d):\n", len(c.Problems))
		for _, p := range c.Problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
}
