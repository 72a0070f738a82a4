package anonymize

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mnt"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	"github.com/criukit/criukit/anonymize/dict"
	"github.com/criukit/criukit/anonymize/logscrub"
	"github.com/criukit/criukit/anonymize/pseudo"
	"github.com/criukit/criukit/image"
)

// Sentinel errors.
var (
	// ErrLeak: the verification found a dictionary value in the output (nothing was renamed into place).
	ErrLeak = errors.New("leak found in the anonymized output")
	// ErrVerify: an output image does not decode or a cross reference does not resolve.
	ErrVerify = errors.New("verification of the anonymized output failed")
	// ErrOutExists: OUTDIR already exists (it is never overwritten).
	ErrOutExists = errors.New("output already exists")
	// ErrNotSupported: an input kind criukit cannot anonymize yet.
	ErrNotSupported = errors.New("not supported")
	// ErrNotImageDir: the input directory holds no CRIU images.
	ErrNotImageDir = errors.New("not a CRIU image dir")
	// ErrBadInput: the input or output paths are unsafe (output inside the input, hard links).
	ErrBadInput = errors.New("unsafe input")
)

// KitFile is the restore kit's name in OUTDIR.
const KitFile = "restore-kit.txt"

// Options configure a run.
type Options struct {
	Level   Level
	Key     []byte   // report key; nil = random (unlinkable reports)
	Keep    []string // values never replaced
	Secrets []string // extra words always replaced and scanned for
	Logs    []string // extra CRIU log files to scrub (IMGDIR/*.log are always included)
	MapOut  string   // where to write the mapping (JSON); never inside OUTDIR
	// RestoreKit writes OUTDIR/restore-kit.txt, which recreates the mapped paths (empty files of
	// the recorded sizes) so that the output can be restored (see RestoreKit).
	RestoreKit bool
	Version    string // tool version for the manifest
	// Partial accepts an image dir without inventory.img (what a failed dump leaves, or an empty
	// dir when only logs are bundled): criukit report sets it. Without it such a dir is refused
	// (ErrNotImageDir).
	Partial bool
	// Progress, when set, is called as input bytes are processed (done and total bytes).
	Progress func(done, total int64, file string)
}

// Manifest is written to OUTDIR/MANIFEST.json.
type Manifest struct {
	Tool         string         `json:"tool"`
	Version      string         `json:"version"`
	Level        string         `json:"level"`
	Files        []FileReport   `json:"files"`
	Dropped      []Dropped      `json:"dropped"`
	Counts       map[string]int `json:"counts"`
	Verification Verification   `json:"verification"`
	Notes        []string       `json:"notes,omitempty"`
}

// FileReport says what was done to one output file.
type FileReport struct {
	Name       string   `json:"name"`
	Kind       string   `json:"kind"`
	Transforms []string `json:"transforms"`
}

// Dropped is an input file left out of the output.
type Dropped struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Verification summarizes the checks run on the output before it was renamed into place.
type Verification struct {
	Decoded          int      `json:"images_decoded"`
	CrossRefs        int      `json:"cross_references_checked"`
	DictionaryValues int      `json:"dictionary_values"`
	BinaryForms      int      `json:"binary_forms"`
	ScannedBytes     int64    `json:"scanned_bytes"`
	TarMembers       int      `json:"tar_members_scanned"`
	FieldsChecked    int      `json:"decoded_fields_checked"`
	NotScanned       []string `json:"not_scanned,omitempty"`
	Leaks            []string `json:"-"`
}

type run struct {
	ctx          context.Context // RunContext's: checked between files and page chunks
	o            Options
	lvl          Level
	in, tmp      string
	m            *pseudo.Mapper
	po           pseudo.PathOptions
	macs         [][]byte
	changedIPs   map[netip.Addr]bool
	ipFinal      map[netip.Addr]netip.Addr
	changedUIDs  map[uint32]bool
	kept         map[string]bool
	counts       map[string]int
	notes        map[string]bool
	man          *Manifest
	imgs         map[string]*image.Image // decoded inputs (transformed in place)
	argv         []areaPatch             // argv/env rewrites per pages file
	payloads     [][]byte                // samples of payloads replaced (content-level leak scan)
	d            *dict.Dict
	dlog         *dict.Dict // logs: every category but path components, plus whole paths
	bin          *dict.Dict // binary forms (detect only)
	fullPaths    map[string]string
	pagesScanned map[string]int64 // pages files leak-scanned while written
	doneBytes    int64
	totalBytes   int64
	pagesLeaks   []string
	roots        map[string]bool
	netPrefix    map[netip.Addr]int // network addresses of routes and their prefix lengths
	pubWords     map[string]bool    // see policy.go
	pubText      string
	pathText     string          // every absolute path of the input images, NUL separated
	schemaWords  map[string]bool // enum values of runtime JSON (kept at every level)
	harvesting   bool            // harvestEnv: guesses from memory map values, they never make a string "kept"
	schemaText   string          // public annotation keys (io.podman.*), NUL separated
	sec          *dict.Dict      // --secret values and their pieces
	logs, pages  []string        // inputs found by scan
	archive      bool            // input is a checkpoint archive (checkpoint/descriptors.json is metadata)
	metaLogs     [][2]string     // archive logs next to checkpoint/ (input, output path)
	raws, names  []string
}

func (r *run) count(k string, n int) {
	if n == 0 {
		n = 1
	}
	r.counts[k] += n
}

func (r *run) note(format string, args ...any) { r.notes[fmt.Sprintf(format, args...)] = true }

func (r *run) keepString(s string) {
	if len(s) >= dict.MinLen && !r.harvesting {
		r.kept[s] = true
	}
}

func (r *run) drop(name, reason string) {
	r.man.Dropped = append(r.man.Dropped, Dropped{r.dropName(name), r.scrubSecrets(reason)})
}

func (r *run) report(name, kind string, tr ...string) {
	r.man.Files = append(r.man.Files, FileReport{name, kind, tr})
}

// Run anonymizes the image dir in into the new directory out (see Options). out is written under
// a temporary name, verified, then renamed; on error nothing is left at out.
func Run(in, out string, o Options) (*Manifest, error) {
	return RunContext(context.Background(), in, out, o)
}

// RunContext is Run that stops when ctx is done (between files and page chunks), leaving nothing at
// out and no temporary directory.
func RunContext(ctx context.Context, in, out string, o Options) (*Manifest, error) {
	st, err := os.Stat(in)
	if err != nil {
		return nil, fmt.Errorf("anonymize: input %s: %w", in, err)
	}
	if err := checkPaths(in, out, o.MapOut, st.IsDir()); err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return runArchive(ctx, in, out, o)
	}
	if o.Level == Inventory {
		return nil, fmt.Errorf("anonymize: level inventory writes no images: use InventoryReport()")
	}
	if _, err := os.Lstat(out); err == nil {
		return nil, fmt.Errorf("anonymize: %s: %w (pick a new name; it is never overwritten)", out, ErrOutExists)
	}
	var sfx [6]byte
	rand.Read(sfx[:])
	tmp := strings.TrimSuffix(out, "/") + ".partial-" + hex.EncodeToString(sfx[:])
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("anonymize: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	r, err := newRun(in, tmp, o)
	if err != nil {
		return nil, err
	}
	r.ctx = ctx
	if err := r.process(); err != nil {
		return r.man, err
	}
	if err := r.verify(); err != nil {
		return r.man, err
	}
	if err := r.finish(); err != nil {
		return r.man, err
	}
	if err := os.Rename(tmp, out); err != nil {
		return r.man, fmt.Errorf("anonymize: rename %s -> %s: %w", tmp, out, err)
	}
	ok = true
	return r.man, nil
}

// checkPaths refuses an output inside the input dir (it would be read as input next time and
// bundles nothing useful) and a mapping file inside the output (it would undo the anonymization).
// Paths are compared absolute and cleaned, so "OUT/../OUT/x", relative spellings and symlinked
// parents cannot slip through.
func checkPaths(in, out, mapOut string, inIsDir bool) error {
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			return filepath.Clean(p)
		}
		// resolve the longest existing prefix (symlinked parents)
		dir, rest := a, ""
		for {
			if r, err := filepath.EvalSymlinks(dir); err == nil {
				return filepath.Join(r, rest)
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				return a
			}
			rest = filepath.Join(filepath.Base(dir), rest)
			dir = parent
		}
	}
	inside := func(p, dir string) bool {
		rel, err := filepath.Rel(dir, p)
		return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
	}
	ai, ao := abs(in), abs(out)
	if inIsDir && inside(ao, ai) {
		return fmt.Errorf("anonymize: OUTDIR %s is inside IMGDIR %s: %w (write it next to the image dir)", out, in, ErrBadInput)
	}
	if mapOut != "" {
		am := abs(mapOut)
		if inside(am, ao) || strings.HasPrefix(filepath.Base(am), filepath.Base(ao)+".partial-") {
			return fmt.Errorf("anonymize: --map-out %s is inside OUTDIR %s: the mapping must never be bundled", mapOut, out)
		}
	}
	return nil
}

func newRun(in, tmp string, o Options) (*run, error) {
	key := o.Key
	if key == nil {
		key = pseudo.NewKey()
	}
	r := &run{ctx: context.Background(), o: o, lvl: o.Level, in: in, tmp: tmp, m: pseudo.New(key),
		changedIPs: map[netip.Addr]bool{}, ipFinal: map[netip.Addr]netip.Addr{}, changedUIDs: map[uint32]bool{}, kept: map[string]bool{},
		counts: map[string]int{}, notes: map[string]bool{}, imgs: map[string]*image.Image{},
		fullPaths: map[string]string{}, roots: map[string]bool{}, netPrefix: map[netip.Addr]int{}, pagesScanned: map[string]int64{},
		man: &Manifest{Tool: "criukit anonymize", Version: o.Version, Level: o.Level.String(), Files: []FileReport{}, Dropped: []Dropped{}}}
	if r.lvl >= Paranoid {
		r.po.All = true
	}
	if r.lvl == Structure {
		r.note("restore with criu restore --leave-stopped: memory and registers are zero, so the tasks cannot run (a multi-threaded task would die while CRIU still detaches its threads)")
	}
	for _, k := range o.Keep {
		r.m.Keep(k)
	}
	r.pubWords, r.schemaWords = map[string]bool{}, map[string]bool{}
	for _, s := range o.Secrets {
		r.m.Token(pseudo.CatSecret, s) // secrets first: every other kind maps them alike
	}
	r.buildSecrets() // rebuilt after scan, when the dump's paths are known
	r.m.SetPublic(r.public)
	return r, nil
}

// process writes every output file into r.tmp.
func (r *run) process() error {
	if err := r.scan(); err != nil {
		return err
	}
	return r.write()
}

// scan lists and classifies the input files, decodes every protobuf image and collects what the
// policy needs before any value is mapped (the dump's public vocabulary).
func (r *run) scan() error {
	ents, err := os.ReadDir(r.in)
	if err != nil {
		return fmt.Errorf("anonymize: read %s: %w", r.in, err)
	}
	var logs, pages, raws []string
	var names []string
	for _, e := range ents {
		name := e.Name()
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			r.totalBytes += fi.Size()
		}
		switch {
		case e.Type()&os.ModeSymlink != 0:
			r.drop(name, "symlink (e.g. the parent images link of incremental dumps); PE_PARENT pages are not bundled")
			continue
		case e.IsDir():
			r.drop(name+"/", "directory")
			continue
		case !e.Type().IsRegular():
			r.drop(name, "not a regular file")
			continue
		case hardLinked(filepath.Join(r.in, name)):
			r.drop(name, "hard link (more than one name): never copied, it may be any file of the system (e.g. /etc/shadow)")
			continue
		case strings.HasSuffix(name, ".log"):
			logs = append(logs, filepath.Join(r.in, name))
			continue
		case r.archive && name == "descriptors.json":
			continue // runtime metadata (archiveMeta)
		}
		d, err := image.Classify(name)
		if err != nil {
			r.drop(name, "unknown file (default deny: not a CRIU image of a known kind)")
			continue
		}
		switch {
		case d.Kind == image.KindRaw && d.Raw == image.RawPages:
			pages = append(pages, name)
		case d.Kind == image.KindRaw:
			raws = append(raws, name)
		case d.Kind == image.KindProto || d.Kind == image.KindPagemap || d.Kind == image.KindGhost:
			names = append(names, name)
		default:
			r.drop(name, "unknown image kind")
		}
	}
	for _, l := range r.o.Logs {
		logs = append(logs, l)
	}
	// pass 1: decode every protobuf image; collect what other transforms need (MACs)
	for _, name := range names {
		img, err := image.ReadFile(filepath.Join(r.in, name))
		if err != nil {
			r.drop(name, fmt.Sprintf("does not decode (default deny): %v", err))
			continue
		}
		r.imgs[name] = img
	}
	r.dropStale()
	if r.imgs["inventory.img"] == nil && !r.o.Partial {
		return fmt.Errorf("anonymize: %s: %w: no inventory.img (a CRIU image dir holds inventory.img, pstree.img, core-*.img)", r.in, ErrNotImageDir)
	}
	r.collectMACs()
	r.collectPublic()
	r.buildSecrets()
	r.logs, r.pages, r.raws, r.names = logs, pages, raws, names
	return nil
}

// dropStale drops per-task images of tasks that are not in pstree.img: left over from an earlier
// dump into the same dir (podman reuses its checkpoint dir: a --leave-running checkpoint's
// pagemap-6.img stays next to the next checkpoint's pagemap-7.img, both naming pages-2.img).
func (r *run) dropStale() {
	ps := r.imgs["pstree.img"]
	if ps == nil {
		return
	}
	ids := map[uint32]bool{}
	for _, e := range ps.Entries {
		if p, ok := e.Msg.(*pstree.PstreeEntry); ok {
			ids[p.GetPid()] = true
			for _, t := range p.GetThreads() {
				ids[t] = true
			}
		}
	}
	for name := range r.imgs {
		for _, pfx := range []string{"core-", "mm-", "pagemap-", "ids-", "fs-"} {
			rest, ok := strings.CutPrefix(name, pfx)
			if !ok || strings.HasPrefix(rest, "shmem") {
				continue
			}
			n, err := strconv.ParseUint(strings.TrimSuffix(rest, ".img"), 10, 32)
			if err == nil && !ids[uint32(n)] {
				delete(r.imgs, name)
				r.drop(name, "task not in pstree.img (stale image of an earlier dump in the same dir)")
			}
		}
	}
}

// write transforms and writes every output file.
func (r *run) write() error {
	logs, pages, raws, names := r.logs, r.pages, r.raws, r.names
	// pass 2: transform and write protobuf images
	sort.Strings(names)
	for _, name := range names {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		img := r.imgs[name]
		if img == nil {
			continue
		}
		r.progressFile(name)
		tr, err := r.transformImage(img)
		if err != nil {
			r.drop(name, err.Error())
			delete(r.imgs, name)
			continue
		}
		if err := writeImage(filepath.Join(r.tmp, name), img); err != nil {
			return err
		}
		r.report(name, img.Desc.Kind.String(), tr...)
	}
	// argv/env areas (need mm + pagemap + input pages); registers their tokens in the dictionary
	if err := r.planArgvEnv(); err != nil {
		return err
	}
	// raw images
	sort.Strings(raws)
	for _, name := range raws {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		if err := r.rawFile(name); err != nil {
			return err
		}
	}
	// logs: harvest pass, then the dictionary, then the real pass
	if r.lvl >= Identity {
		for _, l := range logs {
			if err := r.scrubLog(l, "", true); err != nil {
				return err
			}
		}
		for _, l := range r.metaLogs {
			if err := r.scrubLog(l[0], l[1], true); err != nil {
				return err
			}
		}
	}
	r.buildDict()
	if r.lvl < Structure {
		d := r.d
		if r.lvl < Identity {
			d = r.sec
		}
		for _, name := range r.rewriteRegisters(d) {
			os.Remove(filepath.Join(r.tmp, name))
			if err := writeImage(filepath.Join(r.tmp, name), r.imgs[name]); err != nil {
				return err
			}
		}
	}
	seen := map[string]bool{}
	for _, l := range logs {
		base := filepath.Base(l)
		if seen[base] {
			r.drop(l, "second log with the same base name")
			continue
		}
		seen[base] = true
		if err := r.scrubLog(l, "", false); err != nil {
			return err
		}
	}
	for _, l := range r.metaLogs {
		if err := r.scrubLog(l[0], l[1], false); err != nil {
			return err
		}
	}
	if r.o.RestoreKit && r.lvl >= Identity && r.imgs["files.img"] != nil {
		ents, err := RestoreKit(r.tmp)
		if err != nil {
			return fmt.Errorf("anonymize: restore kit: %w", err)
		}
		if err := os.WriteFile(filepath.Join(r.tmp, KitFile), []byte(KitText(ents)), 0o644); err != nil {
			return err
		}
		r.report(KitFile, "restore-kit", fmt.Sprintf("recreates %d mapped paths", len(ents)))
	}
	// pages last: they use the full dictionary
	sort.Strings(pages)
	for _, name := range pages {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		if err := r.pagesFile(name); err != nil {
			return err
		}
	}
	return nil
}

// progressFile accounts a whole input file as done; progressBytes accounts bytes of a big one.
func (r *run) progressFile(name string) {
	if st, err := os.Stat(filepath.Join(r.in, name)); err == nil {
		r.progressBytes(name, st.Size())
	}
}

func (r *run) progressBytes(file string, n int64) {
	r.doneBytes += n
	if r.o.Progress != nil {
		r.o.Progress(r.doneBytes, r.totalBytes, file)
	}
}

// EnvironmentLog is the name of the environment log criukit's report writes (kernel, CRIU, criukit
// versions and config): a name of the tool's own, kept like CRIU's log names.
const EnvironmentLog = "criukit-environment.log"

// criuLogs are CRIU's own log names and criukit's (public); other log base names are mapped
// (pieces of private values below paranoid, whole at paranoid).
var criuLogs = map[string]bool{"dump.log": true, "restore.log": true, "pre-dump.log": true, "criu.log": true,
	"page-server.log": true, "lazy-pages.log": true, "check.log": true, "cpuinfo.log": true, EnvironmentLog: true}

// logName is a log's output name: --secret pieces replaced; mapped at paranoid unless CRIU's own.
func (r *run) logName(base string) string {
	base = r.scrubSecrets(base)
	if criuLogs[base] {
		return base
	}
	if r.lvl >= Paranoid {
		return strings.TrimSuffix(r.m.Component(base, r.po), ".log") + ".log"
	}
	return r.mapKnown(base)
}

// mapKnown replaces, below paranoid, the private values of the level's dictionary that stand in a
// name the input chose (a log's or a dropped file's base name) by their pseudonyms, as in the
// logs' text: the verifier scans those names with the same dictionary. Before the dictionary is
// built (harvest pass) the name is returned as is.
func (r *run) mapKnown(name string) string {
	if r.lvl < Identity {
		return name
	}
	return replaceIn(r.d, name)
}

// droppedName is how a dropped input's name appears in MANIFEST.json: --secret pieces replaced;
// at paranoid only CRIU's own names stay (others are mapped like paths).
func (r *run) dropName(name string) string {
	name = r.scrubSecrets(name)
	if r.lvl >= Paranoid {
		if _, err := image.Classify(strings.TrimSuffix(name, "/")); err != nil && !criuLogs[name] {
			return r.m.Path(name, r.po)
		}
	}
	return name
}

func hardLinked(path string) bool {
	var st syscall.Stat_t
	return syscall.Lstat(path, &st) != nil || st.Nlink != 1
}

func writeImage(path string, img *image.Image) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("anonymize: %w", err)
	}
	if err := img.Encode(f); err != nil {
		f.Close()
		return fmt.Errorf("anonymize: encode %s: %w", img.Name, err)
	}
	return f.Close()
}

func (r *run) scrubLog(path, outPath string, harvest bool) error {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("anonymize: log %s: %w", path, err)
	}
	defer f.Close()
	base := r.logName(filepath.Base(path))
	if outPath == "" {
		outPath = filepath.Join(r.tmp, base)
	}
	if r.lvl < Identity {
		if harvest {
			return nil
		}
		out, err := os.OpenFile(outPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		defer out.Close()
		n, err := r.sec.Stream(f, out, true, nil)
		tr := "kept (level " + r.lvl.String() + " keeps logs)"
		if n > 0 {
			tr += fmt.Sprintf("; %d --secret values replaced", n)
		}
		r.report(base, "log", tr)
		return err
	}
	roots := map[string]bool{}
	for k := range logscrub.DefaultRoots {
		roots[k] = true
	}
	for k := range r.roots {
		roots[k] = true
	}
	s := &logscrub.Scrubber{M: r.m, D: r.dlog, Path: r.po, Roots: roots, IP: r.mapIP}
	if r.lvl >= Paranoid {
		s.Drop = r.foreignLine()
		s.Port = r.port // the same map as inet_sk_entry ports
	}
	var w io.Writer = io.Discard
	if !harvest {
		out, err := os.OpenFile(outPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		defer out.Close()
		w = out
	}
	if err := s.Scrub(f, w); err != nil {
		return fmt.Errorf("anonymize: log %s: %w", path, err)
	}
	if !harvest {
		var fams []string
		for k, n := range s.Counts {
			if k != "" && n > 0 {
				fams = append(fams, fmt.Sprintf("%s:%d", k, n))
				r.counts["log-"+k] += n
			}
		}
		sort.Strings(fams)
		r.report(base, "log", "scrubbed ("+strings.Join(fams, " ")+")")
	}
	return nil
}

// buildDict turns every replaced value into a dictionary entry (same-length replacement) and
// adds detect-only binary forms of IPs and MACs.
func (r *run) buildDict() {
	d, bin, dlog := dict.New(), dict.New(), dict.New()
	if r.lvl >= Identity {
		for from, to := range r.fullPaths {
			d.Add("path", []byte(from), []byte(to))
			dlog.Add("path", []byte(from), []byte(to))
			if rel := strings.TrimPrefix(from, "/"); rel != from {
				dlog.Add("path", []byte(rel), []byte(strings.TrimPrefix(to, "/")))
			}
		}
		for _, p := range r.m.Pairs() {
			switch p.Category {
			case pseudo.CatIP: // from ipFinal below (the mapper also saw masked prefixes)
			case pseudo.CatMAC:
				d.Add("mac", []byte(p.From), []byte(p.To))
				dlog.Add("mac", []byte(p.From), []byte(p.To))
				if hw, err := parseMAC(p.From); err == nil {
					bin.Add("mac-binary", hw, nil)
				}
			case pseudo.CatUID:
			case pseudo.CatPath:
				d.Add(dict.Kind(p.Category), []byte(p.From), []byte(p.To))
			default:
				d.Add(dict.Kind(p.Category), []byte(p.From), []byte(p.To))
				dlog.Add(dict.Kind(p.Category), []byte(p.From), []byte(p.To))
			}
		}
		// payload samples (pipes, queues, tty, ghost and tmpfs files): their copies in memory
		// (buffers of the program that wrote them) are filled like the payloads
		for _, pl := range r.payloads {
			d.Add("payload", pl, filler(pl))
		}
		for a, b := range r.ipFinal {
			from, to := a.String(), sameLenIP(a.String(), b.String())
			d.Add("ip", []byte(from), []byte(to))
			dlog.Add("ip", []byte(from), []byte(to))
			bin.Add("ip-binary", a.AsSlice(), nil)
		}
	} else {
		// content: argv/env values and --secret words (the rest of memory is kept at this level)
		for _, p := range r.m.Pairs() {
			if p.Category == pseudo.CatEnv || p.Category == pseudo.CatSecret {
				d.Add(dict.Kind(p.Category), []byte(p.From), []byte(p.To))
				dlog.Add(dict.Kind(p.Category), []byte(p.From), []byte(p.To))
			}
		}
		for _, pl := range r.payloads {
			d.Add("payload", pl, nil)
		}
	}
	// --secret values and their pieces: at every level, in every file
	for _, e := range r.sec.Entries() {
		d.Add(e.Kind, e.From, e.To)
		dlog.Add(e.Kind, e.From, e.To)
	}
	// values that are also part of kept strings cannot be told apart from them: not scanned
	var excluded []string
	for _, e := range d.Entries() {
		if strings.HasPrefix(string(e.Kind), "secret") {
			continue
		}
		for k := range r.kept {
			if strings.Contains(k, string(e.From)) {
				excluded = append(excluded, fmt.Sprintf("%s value of %d bytes (also part of a kept system string)", e.Kind, len(e.From)))
				d.Remove(string(e.From))
				dlog.Remove(string(e.From))
				break
			}
		}
	}
	for _, k := range r.o.Keep {
		d.Remove(k)
		dlog.Remove(k)
	}
	sort.Strings(excluded)
	r.man.Verification.NotScanned = append(r.man.Verification.NotScanned, excluded...)
	d.Compile()
	bin.Compile()
	dlog.Compile()
	r.d, r.bin, r.dlog = d, bin, dlog
}

func sameLenIP(from, to string) string {
	if len(to) == len(from) {
		return to
	}
	if len(to) < len(from) && !strings.Contains(to, ":") {
		// pad octets with leading zeros, from the last one
		oct := strings.Split(to, ".")
		need := len(from) - len(to)
		for i := len(oct) - 1; i >= 0 && need > 0; i-- {
			for len(oct[i]) < 3 && need > 0 {
				oct[i] = "0" + oct[i]
				need--
			}
		}
		if need == 0 {
			return strings.Join(oct, ".")
		}
	}
	// cannot be written with the same length: blank the digits
	b := []byte(from)
	for i, c := range b {
		if c != '.' && c != ':' {
			b[i] = 'x'
		}
	}
	return string(b)
}

func (r *run) finish() error {
	if r.lvl < Paranoid {
		for i := range r.man.Dropped {
			r.man.Dropped[i].Name = r.mapKnown(r.man.Dropped[i].Name)
		}
	}
	r.man.Counts = map[string]int{}
	for c, n := range r.m.Counts() {
		r.man.Counts[string(c)] = n
	}
	for k, n := range r.counts {
		r.man.Counts[k] += n
	}
	for n := range r.notes {
		r.man.Notes = append(r.man.Notes, n)
	}
	sort.Strings(r.man.Notes)
	sort.Slice(r.man.Files, func(i, j int) bool { return r.man.Files[i].Name < r.man.Files[j].Name })
	sort.Slice(r.man.Dropped, func(i, j int) bool { return r.man.Dropped[i].Name < r.man.Dropped[j].Name })
	b, err := json.MarshalIndent(r.man, "", "  ")
	if err != nil {
		return err
	}
	// the manifest and the output's file names are output too
	var leaks []string
	names := []string{}
	filepath.WalkDir(r.tmp, func(p string, e os.DirEntry, err error) error {
		if err == nil && p != r.tmp {
			names = append(names, e.Name())
		}
		return nil
	})
	// (the manifest's own words are the tool's; what comes from the input is its names)
	for _, f := range r.man.Files {
		names = append(names, f.Name)
	}
	for _, d := range r.man.Dropped {
		names = append(names, d.Name)
	}
	var own []string // names from the input; CRIU's and the runtimes' fixed names are vocabulary
	for _, n := range names {
		base := filepath.Base(strings.TrimSuffix(n, "/"))
		if _, err := image.Classify(base); err == nil || metaKind(base) != "" && !strings.HasSuffix(base, ".log") || criuLogs[base] ||
			base == "MANIFEST.json" || base == KitFile || base == "checkpoint" || base == "artifacts" {
			continue
		}
		own = append(own, n)
	}
	for what, data := range map[string][]byte{"MANIFEST.json or output file names": []byte(strings.Join(own, "\x00"))} {
		r.d.Find(data, len(data), 0, func(h dict.Hit) bool {
			leaks = append(leaks, fmt.Sprintf("%s offset %d: %s value (%d bytes)", what, h.Offset, h.Entry.Kind, len(h.Entry.From)))
			return len(leaks) < 20
		})
	}
	if len(leaks) > 0 {
		sort.Strings(leaks)
		return fmt.Errorf("%w (nothing was written to the output):\n  %s", ErrLeak, strings.Join(leaks, "\n  "))
	}
	if err := os.WriteFile(filepath.Join(r.tmp, "MANIFEST.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if r.o.MapOut != "" {
		mb, err := json.MarshalIndent(r.m.Pairs(), "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(r.o.MapOut, append(mb, '\n'), 0o600); err != nil {
			return fmt.Errorf("anonymize: --map-out: %w", err)
		}
	}
	return nil
}

var (
	unixCollected = regexp.MustCompile(`unix:\s+Collected: ino (\d+)`)
	inetCollected = regexp.MustCompile(`inet:\s+Collected: ino\s+0x([0-9a-f]+)`)
	mountLine     = regexp.MustCompile(`^\(\d+\.\d+\)\s+type \S+ source \S+ mnt_id (\d+)`)
)

// foreignLine (paranoid) matches log lines about sockets and mounts that are not part of the
// dump: CRIU logs every socket of the netns and the whole mount table of the mntns.
func (r *run) foreignLine() func(string) bool {
	inos, mnts := map[uint64]bool{}, map[uint64]bool{}
	if files := r.imgs["files.img"]; files != nil {
		for _, e := range files.Entries {
			if fe, ok := e.Msg.(*fdinfo.FileEntry); ok {
				if u := fe.GetUsk(); u != nil {
					inos[uint64(u.GetIno())] = true
				}
				if i := fe.GetIsk(); i != nil {
					inos[uint64(i.GetIno())] = true
				}
			}
		}
	}
	for _, img := range r.imgs {
		if img.Desc.Name == "MNTS" {
			for _, e := range img.Entries {
				if me, ok := e.Msg.(*mnt.MntEntry); ok {
					mnts[uint64(me.GetMntId())] = true
				}
			}
		}
	}
	num := func(s string, base int) uint64 {
		n, _ := strconv.ParseUint(s, base, 64)
		return n
	}
	return func(line string) bool {
		if m := unixCollected.FindStringSubmatch(line); m != nil {
			return !inos[num(m[1], 10)]
		}
		if m := inetCollected.FindStringSubmatch(line); m != nil {
			return !inos[num(m[1], 16)]
		}
		if m := mountLine.FindStringSubmatch(line); m != nil {
			return !mnts[num(m[1], 10)]
		}
		return false
	}
}
