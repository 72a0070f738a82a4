package inspect_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/criukit/criukit/ckpt"
	"github.com/criukit/criukit/inspect"
	"github.com/criukit/criukit/internal/compress"
	"github.com/criukit/criukit/internal/podman"
	"github.com/criukit/criukit/internal/testenv"
)

// Checkpointctl is where scripts/install-checkpointctl puts checkpointctl v1.6.0.
const Checkpointctl = "/opt/criukit/bin/checkpointctl"

func checkpointctl(t *testing.T, args ...string) []byte {
	t.Helper()
	var out, errb bytes.Buffer
	c := exec.Command(Checkpointctl, args...)
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		t.Fatalf("checkpointctl %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.Bytes()
}

// Types of checkpointctl's JSON (what it prints, read back).
type ctlPs struct {
	PID      uint32            `json:"pid"`
	Comm     string            `json:"command"`
	Cmdline  string            `json:"cmdline"`
	State    string            `json:"task_state"`
	Env      map[string]string `json:"environment_variables"`
	Children []ctlPs           `json:"children"`
}

type ctlNode struct {
	Name         string          `json:"container_name"`
	Image        string          `json:"image"`
	ID           string          `json:"id"`
	Runtime      string          `json:"runtime"`
	Created      string          `json:"created"`
	Checkpointed string          `json:"checkpointed"`
	Engine       string          `json:"engine"`
	IP           string          `json:"ip"`
	MAC          string          `json:"mac"`
	Networks     json.RawMessage `json:"networks"`
	Size         struct {
		Total  int64 `json:"total_size"`
		Pages  int64 `json:"memory_pages_size"`
		Rootfs int64 `json:"root_fs_diff_size"`
	} `json:"checkpoint_size"`
	Stats    map[string]uint64 `json:"statistics"`
	Metadata struct {
		Pod         string            `json:"pod_name"`
		Namespace   string            `json:"kubernetes_namespace"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Tree  *ctlPs `json:"process_tree"`
	Files []struct {
		PID   uint32 `json:"pid"`
		Files []struct {
			Type, FD, Path string
		} `json:"open_files"`
	} `json:"file_descriptors"`
	Sockets []struct {
		PID     uint32 `json:"pid"`
		Sockets []struct {
			Protocol string         `json:"protocol"`
			Data     map[string]any `json:"data"`
		} `json:"open_sockets"`
	} `json:"sockets"`
	Mounts []inspect.Mount `json:"mounts"`
}

// fixture is one podman container checkpointed twice, as zstd then as a plain tar, plus the second
// one unpacked (an unpacked container checkpoint and a plain images directory).
type fixture struct {
	zst, tar, unpacked, images string
}

func makeFixture(t *testing.T) *fixture {
	podman.Require(t)
	testenv.File(t, Checkpointctl)
	dir := t.TempDir()
	// A file, a listening socket, an established loopback connection (both ends), a shell loop.
	script := `exec 3>/tmp/opened-file; sleep 1000 | nc -l -p 8080 >/dev/null & sleep 0.5; (echo hello; sleep 1000) | nc 127.0.0.1 8080 >/dev/null & while :; do sleep 1; done`
	c := podman.Run(t, podman.Name("inspect"), []string{"-e", "SECRET=s3cr3t-token-42", "-e", "EMPTY=", "-e", "WEIRD=a=b c"}, "sh", "-c", script)
	time.Sleep(1500 * time.Millisecond)
	f := &fixture{}
	f.zst = c.Checkpoint(t, dir, "zstd", "--leave-running", "--tcp-established")
	os.Rename(f.zst, filepath.Join(dir, "a.tar.zst"))
	f.zst = filepath.Join(dir, "a.tar.zst")
	time.Sleep(1100 * time.Millisecond) // the loop's `sleep 1` child is replaced: the diff sees it
	f.tar = c.Checkpoint(t, dir, "none", "--tcp-established")
	f.unpacked = filepath.Join(dir, "unpacked")
	os.Mkdir(f.unpacked, 0o755)
	if out, err := exec.Command("tar", "-C", f.unpacked, "-xf", f.tar).CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v %s", err, out)
	}
	f.images = filepath.Join(f.unpacked, "checkpoint")
	return f
}

func collect(t *testing.T, p string, o inspect.Options) *inspect.Report {
	t.Helper()
	c, err := inspect.Open(p, true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := inspect.Collect(c, o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func flat(ps []*inspect.Process) map[uint32]*inspect.Process {
	m := map[uint32]*inspect.Process{}
	var walk func([]*inspect.Process)
	walk = func(ps []*inspect.Process) {
		for _, p := range ps {
			m[p.Pid] = p
			walk(p.Children)
		}
	}
	walk(ps)
	return m
}

// TestCheckpointctl runs checkpointctl v1.6.0 and criukit on the same real podman archives and
// checks that criukit's JSON holds every fact checkpointctl prints.
func TestCheckpointctl(t *testing.T) {
	f := makeFixture(t)
	for _, p := range []string{f.zst, f.tar} {
		t.Run("inspect-all/"+filepath.Base(p), func(t *testing.T) { checkInspect(t, p) })
	}
	t.Run("show", func(t *testing.T) { checkShow(t, f) })
	t.Run("memparse-sizes", func(t *testing.T) { checkMemSizes(t, f.zst) })
	t.Run("memparse-hexdump", func(t *testing.T) { checkHexdump(t, f.tar) })
	t.Run("search", func(t *testing.T) { checkSearch(t, f) })
	t.Run("diff", func(t *testing.T) { checkDiff(t, f) })
	t.Run("list", func(t *testing.T) { checkList(t, f) })
	t.Run("images-dir", func(t *testing.T) { checkImagesDir(t, f) })
	t.Run("deep-diff", func(t *testing.T) { checkDeepDiff(t, f) })
	t.Run("html", func(t *testing.T) { checkHTML(t, f) })
}

func checkInspect(t *testing.T, p string) {
	var ctl []ctlNode
	if err := json.Unmarshal(checkpointctl(t, "inspect", p, "--all", "--ps-tree-cmd", "--ps-tree-env", "--format", "json"), &ctl); err != nil || len(ctl) != 1 {
		t.Fatalf("checkpointctl json: %v (%d nodes)", err, len(ctl))
	}
	c := ctl[0]
	r := collect(t, p, inspect.All)
	js, _ := json.Marshal([]*inspect.Report{r})
	var ours []ctlNode
	if err := json.Unmarshal(js, &ours); err != nil {
		t.Fatal(err)
	}
	o := ours[0]
	// container facts
	for _, x := range [][3]string{{"name", c.Name, o.Name}, {"image", c.Image, o.Image}, {"id", c.ID, o.ID}, {"runtime", c.Runtime, o.Runtime},
		{"created", c.Created, o.Created}, {"checkpointed", c.Checkpointed, o.Checkpointed}, {"engine", c.Engine, o.Engine}, {"ip", c.IP, o.IP}, {"mac", c.MAC, o.MAC},
		{"networks", compact(c.Networks), compact(o.Networks)}} {
		if x[1] != x[2] {
			t.Errorf("%s: checkpointctl %q, criukit %q", x[0], x[1], x[2])
		}
	}
	if c.Name == "" || c.Engine != "Podman" {
		t.Errorf("checkpointctl saw no podman container: %+v", c)
	}
	if c.Size != o.Size || c.Size.Pages == 0 {
		t.Errorf("checkpoint_size: checkpointctl %+v, criukit %+v", c.Size, o.Size)
	}
	if len(c.Stats) < 4 {
		t.Errorf("checkpointctl statistics: %v", c.Stats)
	}
	for k, v := range c.Stats {
		if o.Stats[k] != v {
			t.Errorf("statistics %s: checkpointctl %d, criukit %d", k, v, o.Stats[k])
		}
	}
	if fmt.Sprint(c.Metadata) != fmt.Sprint(o.Metadata) || len(c.Metadata.Annotations) == 0 {
		t.Errorf("metadata: checkpointctl %+v, criukit %+v", c.Metadata, o.Metadata)
	}
	for i := range o.Mounts {
		o.Mounts[i].Options = nil // criukit's addition
	}
	if fmt.Sprint(c.Mounts) != fmt.Sprint(o.Mounts) || len(c.Mounts) == 0 {
		t.Errorf("mounts: checkpointctl %v, criukit %v", c.Mounts, o.Mounts)
	}
	// processes, command lines, environments
	var walk func(a ctlPs)
	ourPs := flat([]*inspect.Process{r.Tree})
	n := 0
	walk = func(a ctlPs) {
		n++
		b := ourPs[a.PID]
		if b == nil {
			t.Errorf("pid %d (%s) missing", a.PID, a.Comm)
			return
		}
		if a.Comm != b.Comm || a.State != b.State || strings.TrimSpace(a.Cmdline) != b.Cmdline || fmt.Sprint(a.Env) != fmt.Sprint(b.Env) {
			t.Errorf("pid %d: checkpointctl %q %q %q %v\ncriukit %q %q %q %v", a.PID, a.Comm, a.State, a.Cmdline, a.Env, b.Comm, b.State, b.Cmdline, b.Env)
		}
		if len(a.Children) != len(b.Children) {
			t.Errorf("pid %d: %d children, criukit %d", a.PID, len(a.Children), len(b.Children))
		}
		for _, k := range a.Children {
			walk(k)
		}
	}
	if c.Tree == nil {
		t.Fatal("checkpointctl printed no process tree")
	}
	walk(*c.Tree)
	if n < 6 || ourPs[1].Env["SECRET"] != "s3cr3t-token-42" || ourPs[1].Env["WEIRD"] != "a=b c" || !strings.Contains(ourPs[1].Cmdline, "nc -l -p 8080") {
		t.Errorf("%d processes; pid 1 env %v cmdline %q", n, ourPs[1].Env, ourPs[1].Cmdline)
	}
	// files
	type fk struct {
		pid           uint32
		typ, fd, path string
	}
	set := func(fs []struct {
		PID   uint32                            `json:"pid"`
		Files []struct{ Type, FD, Path string } `json:"open_files"`
	}) map[fk]bool {
		m := map[fk]bool{}
		for _, x := range fs {
			for _, y := range x.Files {
				m[fk{x.PID, y.Type, y.FD, y.Path}] = true
			}
		}
		return m
	}
	cf, of := set(c.Files), set(o.Files)
	for k := range cf {
		if !of[k] {
			t.Errorf("file %+v missing", k)
		}
	}
	if len(cf) < 10 || !cf[fk{1, "REG", "REG 3", "/tmp/opened-file"}] {
		t.Errorf("checkpointctl files: %v", cf)
	}
	// sockets: every field checkpointctl prints, same value
	type sk struct {
		pid uint32
		s   string
	}
	socks := func(n ctlNode) map[sk]bool {
		m := map[sk]bool{}
		for _, x := range n.Sockets {
			for _, y := range x.Sockets {
				keys := []string{}
				for k := range y.Data {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				s := y.Protocol
				for _, k := range keys {
					if _, ours := map[string]bool{"type": true, "address": true, "state": true, "src": true, "src_port": true, "dst": true, "dst_port": true, "send_buf": true, "recv_buf": true}[k]; ours {
						s += fmt.Sprintf(" %s=%v", k, y.Data[k])
					}
				}
				m[sk{x.PID, s}] = true
			}
		}
		return m
	}
	cs, os_ := socks(c), socks(o)
	est := 0
	for k := range cs {
		if !os_[k] {
			t.Errorf("socket %+v missing; criukit has %v", k, os_)
		}
		if strings.Contains(k.s, "ESTABLISHED") {
			est++
		}
	}
	if len(cs) < 2 || est < 2 {
		t.Errorf("checkpointctl sockets: %v", cs)
	}
	// --pid: the subtree of one process (a child of pid 1), with its command line.
	child := c.Tree.Children[len(c.Tree.Children)-1]
	var sub []ctlNode
	if err := json.Unmarshal(checkpointctl(t, "inspect", p, "--pid", fmt.Sprint(child.PID), "--ps-tree-cmd", "--format", "json"), &sub); err != nil || len(sub) != 1 || sub[0].Tree == nil {
		t.Fatalf("checkpointctl --pid: %v", err)
	}
	rp := collect(t, p, inspect.Options{Pid: child.PID, Cmdline: true})
	if rp.Tree == nil || rp.Tree.Pid != sub[0].Tree.PID || rp.Tree.Cmdline != strings.TrimSpace(sub[0].Tree.Cmdline) || len(rp.Tree.Children) != len(sub[0].Tree.Children) {
		t.Errorf("--pid %d: checkpointctl %+v, criukit %+v", child.PID, sub[0].Tree, rp.Tree)
	}
	// The tree view shows the same facts.
	var tree bytes.Buffer
	inspect.WriteTree(&tree, r)
	for _, s := range []string{"SECRET=s3cr3t-token-42", "/tmp/opened-file", "ESTABLISHED", "Podman", "Freezing time", "Destination: /proc", c.Tree.Children[0].Comm} {
		if !strings.Contains(tree.String(), s) {
			t.Errorf("tree view lacks %q", s)
		}
	}
}

// fields splits a checkpointctl table row on runs of 2+ spaces.
var colSep = regexp.MustCompile(`\s{2,}`)

func tableRows(b []byte) [][]string {
	var rows [][]string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "---") || strings.HasPrefix(l, "Displaying") || strings.HasPrefix(l, "Listing") {
			continue
		}
		rows = append(rows, colSep.Split(l, -1))
	}
	return rows
}

func checkShow(t *testing.T, f *fixture) {
	rows := tableRows(checkpointctl(t, "show", f.zst, f.tar))
	if len(rows) != 3 {
		t.Fatalf("checkpointctl show: %q", rows)
	}
	for i, p := range []string{f.zst, f.tar} {
		r := collect(t, p, inspect.Options{})
		id := r.Container.ID[:12]
		want := []string{r.Container.Name, r.Container.Image, id, r.Container.Runtime, r.Container.Created, r.Container.Engine, inspect.ByteSize(r.Sizes.Total), inspect.ByteSize(r.Sizes.RootfsDiff)}
		if fmt.Sprint(rows[i+1]) != fmt.Sprint(want) {
			t.Errorf("show %s:\ncheckpointctl %q\ncriukit       %q", p, rows[i+1], want)
		}
	}
}

func images(t *testing.T, p string) (*inspect.Images, func()) {
	t.Helper()
	c, err := inspect.Open(p, true)
	if err != nil {
		t.Fatal(err)
	}
	im, err := inspect.NewImages(c)
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	return im, func() { c.Close() }
}

func checkMemSizes(t *testing.T, p string) {
	rows := tableRows(checkpointctl(t, "memparse", p))
	im, done := images(t, p)
	defer done()
	ms, err := im.MemSizes()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, m := range ms {
		got[fmt.Sprint([]string{fmt.Sprint(m.Pid), m.Comm, inspect.ByteSize(m.MemoryBytes), inspect.ByteSize(m.SharedBytes)})] = true
	}
	if len(rows) < 4 {
		t.Fatalf("checkpointctl memparse: %q", rows)
	}
	for _, r := range rows[1:] {
		if !got[fmt.Sprint(r)] {
			t.Errorf("memparse row %q not in criukit's %v", r, got)
		}
	}
}

func checkHexdump(t *testing.T, p string) {
	dir := t.TempDir()
	ctlOut := filepath.Join(dir, "ctl.txt")
	checkpointctl(t, "memparse", p, "--pid", "1", "--output", ctlOut)
	want, err := os.ReadFile(ctlOut)
	if err != nil {
		t.Fatal(err)
	}
	im, done := images(t, p)
	defer done()
	var got bytes.Buffer
	if err := im.HexDump(&got, 1, false, false); err != nil {
		t.Fatal(err)
	}
	// checkpointctl's file starts with a 2-line header.
	wl := strings.SplitN(string(want), "\n", 3)
	if len(wl) < 3 || wl[2] != got.String() {
		t.Errorf("hexdump differs: checkpointctl %d bytes, criukit %d bytes\n%.300s\n---\n%.300s", len(want), got.Len(), wl[len(wl)-1], got.String())
	}
	if got.Len() < 1000 {
		t.Errorf("hexdump of %d bytes", got.Len())
	}
}

func search(t *testing.T, p string, o inspect.SearchOptions) []inspect.Hit {
	t.Helper()
	im, done := images(t, p)
	defer done()
	var hits []inspect.Hit
	st, err := im.Search(o, func(h inspect.Hit) error { hits = append(hits, h); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if st.Bytes == 0 {
		t.Errorf("nothing scanned: %+v", st)
	}
	return hits
}

func checkSearch(t *testing.T, f *fixture) {
	for _, c := range []struct {
		flag, pat string
		ctx       int
		lit       bool
	}{{"--search", "SECRET=", 0, true}, {"--search-regex", "s3cr3t-[a-z]+-[0-9]+", 6, false}, {"--search", "no-such-string-in-memory", 0, true}} {
		out := checkpointctl(t, "memparse", f.zst, "--pid", "1", c.flag, c.pat, "--context", fmt.Sprint(c.ctx))
		o := inspect.SearchOptions{Pids: []uint32{1}, Context: c.ctx}
		if c.lit {
			o.Patterns = []string{c.pat}
		} else {
			o.Regexps = []string{c.pat}
		}
		hits := search(t, f.zst, o)
		ours := map[string]bool{}
		for _, h := range hits {
			ours[fmt.Sprintf("%016x %s", h.Vaddr, h.Match)] = true
			if h.Pid != 1 || h.VMA.End <= h.Vaddr || h.VMA.Start > h.Vaddr {
				t.Errorf("hit %+v outside its VMA", h)
			}
		}
		rows := tableRows(out)
		if strings.HasPrefix(c.pat, "no-such") {
			if len(hits) != 0 || !strings.Contains(string(out), "No matches") {
				t.Errorf("no-hit search: criukit %v, checkpointctl %s", hits, out)
			}
			continue
		}
		if len(rows) < 2 {
			t.Fatalf("checkpointctl found nothing for %s: %s", c.pat, out)
		}
		for _, r := range rows[1:] {
			if len(r) < 3 || !ours[r[0]+" "+r[1]] {
				t.Errorf("%s hit %q not found by criukit: %v", c.pat, r, ours)
			}
		}
	}
	// criukit's extras: several patterns in one pass, every process, VMA and protection filters.
	all := search(t, f.zst, inspect.SearchOptions{Patterns: []string{"SECRET=", "opened-file"}})
	pids := map[uint32]bool{}
	pats := map[string]bool{}
	for _, h := range all {
		pids[h.Pid], pats[h.Pattern] = true, true
	}
	if len(pids) < 3 || len(pats) != 2 {
		t.Errorf("multi-pattern search over all processes: pids %v patterns %v", pids, pats)
	}
	stack := search(t, f.zst, inspect.SearchOptions{Patterns: []string{"SECRET="}, VMA: "stack", Prot: "rw"})
	noX := search(t, f.zst, inspect.SearchOptions{Patterns: []string{"SECRET="}, VMA: "heap"})
	for _, h := range stack {
		if h.VMA.Kind != "stack" || !strings.Contains(h.VMA.Prot, "rw") {
			t.Errorf("--vma stack --prot rw hit in %+v", h.VMA)
		}
	}
	for _, h := range noX {
		if h.VMA.Kind != "heap" {
			t.Errorf("--vma heap hit in %+v", h.VMA)
		}
	}
	if len(stack) == 0 {
		t.Errorf("environment not found on the stack")
	}
	// Streaming search of compressed archives (no pages spooled) finds exactly what the random-access
	// search finds: on podman's zstd export, and on the second checkpoint (which carries stale
	// images of the first one: pagemaps of exited tasks naming the same pages ids) recompressed.
	rezst := recompressZstd(t, f.tar)
	for _, c := range [][2]string{{f.zst, f.zst}, {f.tar, rezst}} {
		o := inspect.SearchOptions{Patterns: []string{"SECRET=", "opened-file"}, Regexps: []string{"s3cr3t-[a-z]+"}, Context: 5}
		want := search(t, c[0], o)
		var got []inspect.Hit
		st, err := inspect.SearchPath(c[1], o, func(h inspect.Hit) error { got = append(got, h); return nil })
		if err != nil {
			t.Fatal(err)
		}
		key := func(hs []inspect.Hit) string {
			var ks []string
			for _, h := range hs {
				ks = append(ks, fmt.Sprintf("%d %x %s %s", h.Pid, h.Vaddr, h.Pattern, h.VMA.Kind))
			}
			sort.Strings(ks)
			return strings.Join(ks, "\n")
		}
		if key(want) != key(got) || len(want) == 0 || st.Hits != len(got) {
			t.Errorf("streamed search of %s: %d hits (stats %d), random access %d:\n%s\n---\n%s", c[1], len(got), st.Hits, len(want), key(got), key(want))
		}
	}
	// Tiny windows (many boundaries inside each run, matches across them, the read-ahead path for
	// runs longer than a window) find exactly the same hits, random-access and streamed.
	for i, c := range [][2]string{{f.tar, f.tar}, {f.tar, rezst}, {f.tar, f.tar}, {f.tar, rezst}} {
		o := inspect.SearchOptions{Patterns: []string{"SECRET=", "opened-file"}}
		if i >= 2 {
			o.Regexps = []string{"s3cr3t-[a-z]+"}
		}
		want := search(t, c[0], o)
		restore := inspect.SetChunkSize(64)
		var got []inspect.Hit
		_, err := inspect.SearchPath(c[1], o, func(h inspect.Hit) error { got = append(got, h); return nil })
		restore()
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(len(got)) != fmt.Sprint(len(want)) {
			t.Errorf("64-byte windows on %s: %d hits, want %d", filepath.Base(c[1]), len(got), len(want))
		}
	}
	// inspect of a compressed archive keeps only the argv/env pages, and reads the same.
	ck, err := inspect.OpenFor(rezst, inspect.All)
	if err != nil {
		t.Fatal(err)
	}
	rz, err := inspect.Collect(ck, inspect.All)
	ck.Close()
	if err != nil {
		t.Fatal(err)
	}
	rt := collect(t, f.tar, inspect.All)
	jz, _ := json.Marshal(rz.Tree)
	jt, _ := json.Marshal(rt.Tree)
	if string(jz) != string(jt) || rz.Sizes.Spooled >= rz.Sizes.Pages {
		t.Errorf("zstd inspect: spooled %d of %d pages bytes; tree equal: %v", rz.Sizes.Spooled, rz.Sizes.Pages, string(jz) == string(jt))
	}
	if len(all) > 0 {
		h := all[0]
		in := search(t, f.zst, inspect.SearchOptions{Patterns: []string{h.Pattern}, Pids: []uint32{h.Pid}, From: h.Vaddr, To: h.Vaddr + uint64(h.Length)})
		if len(in) != 1 || in[0].Vaddr != h.Vaddr {
			t.Errorf("address-range search: %v", in)
		}
	}
}

func checkDiff(t *testing.T, f *fixture) {
	var ctl struct {
		Proc struct {
			Added, Removed []struct {
				PID int `json:"pid"`
			}
		} `json:"process_changes"`
		Files struct {
			Added, Removed []struct {
				PID  uint32 `json:"pid"`
				FD   string `json:"fd"`
				Path string `json:"path"`
			}
		} `json:"file_changes"`
		Mem struct {
			Bytes int64 `json:"size_change_bytes"`
		} `json:"memory_changes"`
	}
	if err := json.Unmarshal(checkpointctl(t, "diff", f.zst, f.tar, "--files", "--sockets", "--ps-tree-cmd", "--format", "json"), &ctl); err != nil {
		t.Fatal(err)
	}
	ca, err := inspect.Open(f.zst, true)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	for _, other := range []string{f.tar, f.unpacked, f.images} {
		cb, err := inspect.Open(other, true)
		if err != nil {
			t.Fatal(err)
		}
		d, err := inspect.Compare(ca, cb, inspect.DiffOptions{Memory: true})
		cb.Close()
		if err != nil {
			t.Fatal(err)
		}
		pidSet := func(a []inspect.ProcInfo) string {
			var s []int
			for _, p := range a {
				s = append(s, int(p.PID))
			}
			sort.Ints(s)
			return fmt.Sprint(s)
		}
		ctlSet := func(a []struct {
			PID int `json:"pid"`
		}) string {
			var s []int
			for _, p := range a {
				s = append(s, p.PID)
			}
			sort.Ints(s)
			return fmt.Sprint(s)
		}
		if pidSet(d.ProcessChanges.Added) != ctlSet(ctl.Proc.Added) || pidSet(d.ProcessChanges.Removed) != ctlSet(ctl.Proc.Removed) {
			t.Errorf("%s: processes added %s removed %s; checkpointctl %s %s", other, pidSet(d.ProcessChanges.Added), pidSet(d.ProcessChanges.Removed), ctlSet(ctl.Proc.Added), ctlSet(ctl.Proc.Removed))
		}
		if len(d.FileChanges.Added) != len(ctl.Files.Added) || len(d.FileChanges.Removed) != len(ctl.Files.Removed) {
			t.Errorf("%s: files +%d -%d; checkpointctl +%d -%d", other, len(d.FileChanges.Added), len(d.FileChanges.Removed), len(ctl.Files.Added), len(ctl.Files.Removed))
		}
		if d.MemoryChanges.SizeChangeBytes != ctl.Mem.Bytes {
			t.Errorf("%s: memory change %d, checkpointctl %d", other, d.MemoryChanges.SizeChangeBytes, ctl.Mem.Bytes)
		}
		// Deep: the shell's memory changed between the checkpoints (its loop ran): some VMA has
		// changed pages, found by hash.
		var changed uint64
		for _, pm := range d.MemoryChanges.Processes {
			changed += pm.PagesChanged
		}
		if changed == 0 || len(d.MemoryChanges.Processes) == 0 {
			t.Errorf("%s: no page changes found: %+v", other, d.MemoryChanges)
		}
	}
	// A checkpoint against itself: nothing changed.
	d, err := inspect.Compare(ca, ca, inspect.DiffOptions{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(d.ProcessChanges.Added) + len(d.ProcessChanges.Removed) + len(d.ProcessChanges.Modified) + len(d.FileChanges.Added) + len(d.SocketChanges.Changed); n != 0 {
		t.Errorf("self diff: %d changes: %s", n, d.Summary)
	}
	for _, pm := range d.MemoryChanges.Processes {
		if pm.PagesChanged != 0 || len(pm.VMAs) != 0 {
			t.Errorf("self diff: pid %d %+v", pm.PID, pm.VMAs)
		}
	}
}

func checkList(t *testing.T, f *fixture) {
	dir := t.TempDir()
	data, err := os.ReadFile(f.zst)
	if err != nil {
		t.Fatal(err)
	}
	name := "checkpoint-web_default-app-2026-01-01T00:00:00Z.tar"
	os.WriteFile(filepath.Join(dir, name), data, 0o600)
	rows := tableRows(checkpointctl(t, "list", dir))
	ls, err := inspect.List([]string{dir})
	if err != nil || len(ls) != 1 {
		t.Fatalf("list: %v %v", ls, err)
	}
	if len(rows) != 2 || !strings.Contains(fmt.Sprint(rows[1]), ls[0].Container) || rows[1][len(rows[1])-1] != ls[0].Name || ls[0].Engine != "Podman" {
		t.Errorf("checkpointctl list %q, criukit %+v", rows, ls[0])
	}
}

func checkImagesDir(t *testing.T, f *fixture) {
	a := collect(t, f.tar, inspect.All)
	for _, p := range []string{f.unpacked, f.images} {
		b := collect(t, p, inspect.All)
		ja, _ := json.Marshal(a.Tree)
		jb, _ := json.Marshal(b.Tree)
		if string(ja) != string(jb) {
			t.Errorf("%s: process tree differs from the archive's:\n%s\n%s", p, ja, jb)
		}
		if fmt.Sprint(a.Files) != fmt.Sprint(b.Files) || fmt.Sprint(a.Sockets) != fmt.Sprint(b.Sockets) || fmt.Sprint(a.Memory) != fmt.Sprint(b.Memory) {
			t.Errorf("%s: files/sockets/memory differ from the archive's", p)
		}
		if b.Sizes.Total != a.Sizes.Total || b.Sizes.Pages != a.Sizes.Pages {
			t.Errorf("%s: sizes %+v, archive %+v", p, b.Sizes, a.Sizes)
		}
		if (p == f.images) != (b.Kind == ckpt.KindImageDir) {
			t.Errorf("%s: kind %s", p, b.Kind)
		}
		ha := search(t, f.tar, inspect.SearchOptions{Patterns: []string{"SECRET="}})
		hb := search(t, p, inspect.SearchOptions{Patterns: []string{"SECRET="}})
		if len(ha) == 0 || fmt.Sprint(ha) != fmt.Sprint(hb) {
			t.Errorf("%s: search %d hits, archive %d", p, len(hb), len(ha))
		}
	}
}

func compact(b []byte) string {
	var buf bytes.Buffer
	json.Compact(&buf, b)
	return buf.String()
}

func recompressZstd(t *testing.T, src string) string {
	t.Helper()
	in, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "re.tar.zst")
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	zw, err := compress.NewWriter(out, compress.Zstd)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(in)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}
