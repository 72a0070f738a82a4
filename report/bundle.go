package report

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/criukit/criukit/anonymize"
	"github.com/criukit/criukit/internal/outfile"
	"github.com/criukit/criukit/report/knownissues"
)

// Sentinel errors.
var (
	// ErrNoInput: neither an images dir nor a log was given.
	ErrNoInput = errors.New("nothing to report: give --images DIR and/or --log FILE")
	// ErrOutExists: the bundle path exists (it is never overwritten).
	ErrOutExists = errors.New("bundle already exists")
)

// Options configure Build.
type Options struct {
	Images  string   // CRIU image dir (may be the partial output of a failed dump); "" = logs only
	Logs    []string // CRIU logs (-o FILE of the failing run); IMAGES/*.log are always included
	Level   anonymize.Level
	Key     []byte   // anonymization key; nil = random (then bundles are not reproducible)
	MapOut  string   // where the token mapping goes (never into the bundle)
	Secrets []string // extra words replaced everywhere and scanned for
	Criu    string   // criu binary; "" = criurun.Find
	NoCriu  bool     // do not run criu (--version, check --all)
	Version string   // criukit version for summary.json and the manifest
	// Env, when set, is used instead of collecting the environment (tests, reports of another host).
	Env *Env
	// Progress, when set, is called as the anonymizer goes through the input (done and total
	// bytes, current file) and then once per bundle member written (file = "bundle: NAME").
	Progress func(done, total int64, file string)
}

// Prefix is the directory every bundle member lives under.
const Prefix = "criukit-report/"

// Summary is summary.json (everything anonymized).
type Summary struct {
	Tool      string               `json:"tool"`
	Version   string               `json:"version"`
	Level     string               `json:"level"`
	Title     string               `json:"title"`
	Env       *Env                 `json:"environment"`
	Findings  []*knownissues.Match `json:"known_issues"`
	Unmatched []string             `json:"unmatched_errors,omitempty"`
	LastError string               `json:"last_error,omitempty"`
	ErrorLog  string               `json:"error_log,omitempty"`
	Logs      []string             `json:"logs"`
	Images    []string             `json:"images"`
	Dropped   []anonymize.Dropped  `json:"dropped"`
	Counts    map[string]int       `json:"replaced"`
	Members   []string             `json:"members"`
}

// Result is what Build made.
type Result struct {
	Bundle   string
	Issue    Issue // title and ISSUE.md body
	Summary  *Summary
	Manifest *anonymize.Manifest
}

// envFile is the anonymizer input that carries the environment text to scrub.
const envFile = anonymize.EnvironmentLog

// Build collects, anonymizes and writes the bundle to out (a new file; temp + rename).
func Build(ctx context.Context, out string, o Options) (*Result, error) {
	if o.Images == "" && len(o.Logs) == 0 {
		return nil, ErrNoInput
	}
	if o.Level == anonymize.Inventory {
		return nil, fmt.Errorf("report: level inventory writes nothing to bundle: use content, identity, structure or paranoid")
	}
	if _, err := os.Lstat(out); err == nil {
		return nil, fmt.Errorf("report: %s: %w (pick a new name)", out, ErrOutExists)
	}
	if o.MapOut != "" {
		if abs, _ := filepath.Abs(o.MapOut); abs != "" {
			if ao, _ := filepath.Abs(out); ao == abs {
				return nil, fmt.Errorf("report: --map-out and -o are the same file")
			}
		}
	}
	// logs: --log files plus IMAGES/*.log (the anonymizer reads those itself), each once
	var logs, extraLogs []string
	imgAbs := ""
	if o.Images != "" {
		imgAbs, _ = filepath.Abs(o.Images)
	}
	seenLog := map[string]bool{}
	for _, l := range o.Logs {
		abs, _ := filepath.Abs(l)
		if seenLog[abs] {
			continue
		}
		seenLog[abs] = true
		logs = append(logs, l)
		if imgAbs == "" || filepath.Dir(abs) != imgAbs || !strings.HasSuffix(abs, ".log") {
			extraLogs = append(extraLogs, l)
		}
	}
	if o.Images != "" {
		st, err := os.Stat(o.Images)
		if err != nil {
			return nil, fmt.Errorf("report: --images: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("report: --images %s is not a directory", o.Images)
		}
		inner, _ := filepath.Glob(filepath.Join(o.Images, "*.log"))
		for _, l := range inner {
			if abs, _ := filepath.Abs(l); !seenLog[abs] {
				seenLog[abs] = true
				logs = append(logs, l)
			}
		}
	}
	for _, l := range o.Logs {
		if _, err := os.Stat(l); err != nil {
			return nil, fmt.Errorf("report: --log: %w", err)
		}
	}
	env := o.Env
	if env == nil {
		var err error
		if env, err = Collect(ctx, o.Criu, o.NoCriu, logs); err != nil {
			return nil, fmt.Errorf("report: collect environment: %w", err)
		}
	}
	work, err := os.MkdirTemp("", "criukit-report-")
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	defer os.RemoveAll(work)

	// The environment text goes through the anonymizer as one more log, so that paths in
	// command lines, config files and check output get the same tokens as in logs and images.
	envPath := filepath.Join(work, envFile)
	if err := os.WriteFile(envPath, []byte(envText(env)), 0o600); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	in := o.Images
	if in == "" {
		in = filepath.Join(work, "empty")
		if err := os.Mkdir(in, 0o700); err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
	}
	anonOut := filepath.Join(work, "anon")
	man, err := anonymize.RunContext(ctx, in, anonOut, anonymize.Options{Level: o.Level, Key: o.Key, Secrets: o.Secrets,
		Logs: append(extraLogs, envPath), MapOut: o.MapOut, Version: o.Version, Progress: o.Progress, Partial: true})
	if err != nil {
		return nil, fmt.Errorf("report: anonymize: %w", err)
	}
	scrubbedEnv, err := os.ReadFile(filepath.Join(anonOut, envFile))
	if err != nil {
		return nil, fmt.Errorf("report: anonymized environment: %w", err)
	}
	senv, err := parseEnvText(env, string(scrubbedEnv))
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}

	logBase := map[string]bool{}
	for _, l := range logs {
		logBase[filepath.Base(l)] = true
	}
	// Members are small texts held in memory or files of the anonymized tree streamed from disk
	// when the tar is written: a dump's pages are never all in memory.
	members := map[string][]byte{}
	files := map[string]string{} // member -> path
	sum := &Summary{Tool: "criukit report", Version: o.Version, Level: o.Level.String(), Env: senv,
		Findings: []*knownissues.Match{}, Logs: []string{}, Images: []string{}, Dropped: man.Dropped, Counts: man.Counts}
	ents, err := os.ReadDir(anonOut)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	set := knownissues.Default()
	var errLog []string
	for _, e := range ents {
		name := e.Name()
		if name == envFile {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := filepath.Join(anonOut, name)
		switch {
		case name == "MANIFEST.json":
			files[name] = p
		case logBase[name]:
			files["logs/"+name] = p
			b, err := os.ReadFile(p) // one log at a time (scanned for known issues and the excerpt)
			if err != nil {
				return nil, fmt.Errorf("report: %w", err)
			}
			sum.Logs = append(sum.Logs, name)
			res, err := set.Scan(bytes.NewReader(b), name)
			if err != nil {
				return nil, fmt.Errorf("report: scan %s: %w", name, err)
			}
			sum.Findings = mergeMatches(sum.Findings, res.Matches)
			sum.Unmatched = append(sum.Unmatched, res.Unmatched...)
			if ex, last := Excerpt(string(b), ExcerptBefore, ExcerptAfter); last != "" {
				sum.LastError, sum.ErrorLog, errLog = last, name, ex
			}
		default:
			files["images/"+name] = p
			sum.Images = append(sum.Images, name)
		}
	}
	if res, err := set.Scan(strings.NewReader(senv.CheckAll), "criu check --all"); err == nil {
		sum.Findings = mergeMatches(sum.Findings, res.Matches)
	}
	for _, m := range sum.Findings {
		m.File = filepath.Base(m.File)
	}
	sum.Title = Title(sum)
	issue := Issue{Title: sum.Title, Body: IssueMarkdown(sum, errLog)}
	members["ISSUE.md"] = []byte(issue.Body)
	names := []string{"summary.json"}
	for n := range members {
		names = append(names, n)
	}
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		sum.Members = append(sum.Members, Prefix+n)
	}
	sj, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return nil, err
	}
	members["summary.json"] = append(sj, '\n')
	if err := writeBundle(ctx, out, names, members, files, o.Progress); err != nil {
		return nil, err
	}
	return &Result{Bundle: out, Issue: issue, Summary: sum, Manifest: man}, nil
}

func mergeMatches(have, add []*knownissues.Match) []*knownissues.Match {
	for _, m := range add {
		dup := false
		for _, h := range have {
			if h.ID == m.ID {
				h.Count += m.Count
				dup = true
				break
			}
		}
		if !dup {
			have = append(have, m)
		}
	}
	return have
}

// bundleTime is every member's mtime: bundles are reproducible for one key.
var bundleTime = time.Unix(0, 0).UTC()

// writeBundle writes a deterministic tar.gz (sorted members, fixed mtimes/owners, gzip header
// without name and mtime) with internal/outfile (temp file next to out, fsync, rename).
func writeBundle(ctx context.Context, out string, names []string, members map[string][]byte, files map[string]string, progress func(done, total int64, file string)) error {
	if err := outfile.Write(out, func(w io.Writer) error { return writeTarGz(ctx, w, names, members, files, progress) }); err != nil {
		return fmt.Errorf("report: bundle %s: %w", out, err)
	}
	return nil
}

// WriteTarGz writes members (in the order of names) under Prefix as a reproducible tar.gz.
func WriteTarGz(w io.Writer, names []string, members map[string][]byte) error {
	return writeTarGz(context.Background(), w, names, members, nil, nil)
}

// writeTarGz is WriteTarGz with members also read from files (member -> path), streamed one by one.
func writeTarGz(ctx context.Context, w io.Writer, names []string, members map[string][]byte, files map[string]string, progress func(done, total int64, file string)) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	dirs := map[string]bool{}
	for _, n := range names {
		for d := filepath.Dir(n); d != "."; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	all := append([]string{""}, names...)
	for d := range dirs {
		all = append(all, d+"/")
	}
	sort.Strings(all)
	for i, n := range all {
		h := &tar.Header{Name: Prefix + n, Mode: 0o644, ModTime: bundleTime, Format: tar.FormatUSTAR, Typeflag: tar.TypeReg}
		if n == "" || strings.HasSuffix(n, "/") {
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		} else if p, ok := files[n]; ok {
			st, err := os.Stat(p)
			if err != nil {
				return err
			}
			h.Size = st.Size()
		} else {
			h.Size = int64(len(members[n]))
		}
		if len(h.Name) > 100 {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if progress != nil {
			progress(int64(i), int64(len(all)), "bundle: "+n)
		}
		if p, ok := files[n]; ok {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", n, err)
			}
		} else if _, err := tw.Write(members[n]); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// WalkBundle calls fn for every member of a bundle in order (name without Prefix), streaming: fn
// reads the content of regular members from r (nothing is held in memory).
func WalkBundle(path string, fn func(name string, h *tar.Header, r io.Reader) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := fn(strings.TrimPrefix(h.Name, Prefix), h, tr); err != nil {
			return fmt.Errorf("%s: member %s: %w", path, h.Name, err)
		}
	}
}

// ReadBundle returns the regular members of a bundle (name without Prefix -> content) and every
// member's name in order. It holds the whole bundle: for big ones use WalkBundle.
func ReadBundle(path string) (map[string][]byte, []string, error) {
	m := map[string][]byte{}
	var order []string
	err := WalkBundle(path, func(name string, h *tar.Header, r io.Reader) error {
		order = append(order, h.Name)
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		b, err := io.ReadAll(r)
		m[name] = b
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return m, order, nil
}
