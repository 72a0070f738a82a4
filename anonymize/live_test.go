package anonymize

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/testenv"
	"github.com/criukit/criukit/internal/workload"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { harness.Main(m) }

var testKey = bytes.Repeat([]byte{42}, 32)

// planted are values the corpus workloads put into their dumps (images.md 2.2 places), with the
// first level that must remove them everywhere (pages included from identity on).
type planted struct {
	what  string
	value []byte
	from  Level // gone from every non-memory file from this level on
	mem   Level // gone from memory pages from this level on
}

func plantedFor(d *harness.Dump) []planted {
	switch d.Workload {
	case "files":
		return []planted{
			{"argv/file/queue secret", []byte(workload.DefaultSecret), Content, Identity},
			{"env secret", []byte(harness.CorpusEnvSecret), Content, Identity},
			{"scratch dir", []byte(strings.Split(d.Dir, "/")[2]), Identity, Identity},
		}
	case "ns":
		mac, _ := net.ParseMAC(workload.NSVethMAC)
		a4 := netip.MustParsePrefix(workload.NSAddr4).Addr().As4()
		a6 := netip.MustParsePrefix(workload.NSAddr6).Addr().As16()
		return []planted{
			{"sysv/pty secret", []byte(workload.DefaultSecret), Content, Structure},
			{"hostname", []byte(workload.NSHostname), Identity, Identity},
			{"MAC", mac, Identity, Structure},
			{"IPv4 binary", a4[:], Identity, Structure},
			{"IPv6 binary", a6[:], Identity, Structure},
			{"IPv4 text", []byte(netip.MustParsePrefix(workload.NSAddr4).Addr().String()), Identity, Identity},
		}
	}
	return nil
}

// scanOut is the test's own leak scan (independent of the package's): raw bytes of every file and
// the decompressed members of every tarball.
func scanOut(t *testing.T, dir string, lvl Level, ps []planted) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		isPages := strings.HasPrefix(e.Name(), "pages-")
		contents := [][]byte{b}
		if strings.HasSuffix(e.Name(), ".tar.gz.img") {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
			tr := tar.NewReader(zr)
			for {
				h, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s: %v", e.Name(), err)
				}
				mb, _ := io.ReadAll(tr)
				contents = append(contents, []byte(h.Name), mb)
			}
		}
		for _, p := range ps {
			need := p.from
			if isPages {
				need = p.mem
			}
			if lvl < need {
				continue
			}
			for _, c := range contents {
				if bytes.Contains(c, p.value) {
					t.Errorf("level %s: %s (%q) left in %s", lvl, p.what, p.value, e.Name())
					break
				}
			}
		}
	}
}

// decodeAll checks every output image decodes with the image package.
func decodeAll(t *testing.T, dir string) int {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	n := 0
	for _, e := range ents {
		d, err := image.Classify(e.Name())
		if err != nil || d.Kind == image.KindRaw {
			continue
		}
		if _, err := image.ReadFile(filepath.Join(dir, e.Name())); err != nil {
			t.Errorf("%s does not decode: %v", e.Name(), err)
		}
		n++
	}
	return n
}

func TestLevelsOnCorpus(t *testing.T) {
	harness.Criu(t)
	for _, name := range []string{"files", "ns", "tcp", "tcp6"} {
		d := harness.CorpusDump(t, name)
		for _, lvl := range []Level{Content, Identity, Structure, Paranoid} {
			t.Run(name+"/"+lvl.String(), func(t *testing.T) {
				tmp := t.TempDir()
				out := filepath.Join(tmp, "out")
				mapOut := filepath.Join(tmp, "map.json")
				man, err := Run(d.Dir, out, Options{Level: lvl, Key: testKey, Logs: []string{d.Log}, MapOut: mapOut,
					Secrets: []string{workload.DefaultSecret}})
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				if man.Verification.Decoded == 0 || man.Verification.ScannedBytes == 0 {
					t.Errorf("verification did not run: %+v", man.Verification)
				}
				// the log keeps every line (paranoid drops lines about foreign sockets and mounts)
				lin, _ := os.ReadFile(d.Log)
				lout, err := os.ReadFile(filepath.Join(out, filepath.Base(d.Log)))
				if err != nil {
					t.Fatalf("scrubbed log missing: %v", err)
				}
				nin, nout := bytes.Count(lin, []byte("\n")), bytes.Count(lout, []byte("\n"))
				if lvl < Paranoid && nin != nout || lvl == Paranoid && (nout > nin || nout < nin/2) {
					t.Errorf("log has %d lines, input %d", nout, nin)
				}
				if name == "ns" && man.Verification.TarMembers == 0 {
					t.Error("tmpfs tarball members not scanned")
				}
				scanOut(t, out, lvl, plantedFor(d))
				if n := decodeAll(t, out); n < 5 {
					t.Errorf("only %d images in the output", n)
				}
				// the manifest is there, the mapping is not
				mb, err := os.ReadFile(filepath.Join(out, "MANIFEST.json"))
				if err != nil {
					t.Fatal(err)
				}
				var m Manifest
				if err := json.Unmarshal(mb, &m); err != nil || m.Level != lvl.String() {
					t.Errorf("manifest: %v level %q", err, m.Level)
				}
				if _, err := os.Stat(mapOut); err != nil {
					t.Errorf("--map-out not written: %v", err)
				}
				if lvl >= Identity {
					pairs, _ := os.ReadFile(mapOut)
					var ps []struct{ From, To string }
					json.Unmarshal(pairs, &ps)
					for _, p := range ps {
						if len(p.From) >= 8 && strings.ContainsAny(p.From, "-_0123456789/") && bytes.Contains(mb, []byte(p.From)) {
							t.Errorf("manifest holds original value %q", p.From)
						}
					}
				}
				// the input is never modified, and every input file is either output or listed as dropped
				outNames := map[string]bool{}
				ents, _ := os.ReadDir(out)
				for _, e := range ents {
					outNames[e.Name()] = true
				}
				dropped := map[string]bool{}
				for _, x := range m.Dropped {
					dropped[x.Name] = true
				}
				in, _ := os.ReadDir(d.Dir)
				for _, e := range in {
					if !outNames[e.Name()] && !dropped[e.Name()] {
						t.Errorf("%s neither in the output nor in the manifest's dropped list", e.Name())
					}
				}
			})
		}
	}
}

// TestDeterminism: one key gives byte-identical output; images and logs use the same token.
func TestDeterminism(t *testing.T) {
	d := harness.CorpusDump(t, "files")
	var outs []string
	for i := 0; i < 2; i++ {
		out := filepath.Join(t.TempDir(), "out")
		if _, err := Run(d.Dir, out, Options{Level: Identity, Key: testKey, Logs: []string{d.Log}}); err != nil {
			t.Fatal(err)
		}
		outs = append(outs, out)
	}
	ents, _ := os.ReadDir(outs[0])
	for _, e := range ents {
		a, _ := os.ReadFile(filepath.Join(outs[0], e.Name()))
		b, _ := os.ReadFile(filepath.Join(outs[1], e.Name()))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two runs with one key", e.Name())
		}
	}
	// a path of files.img appears with the same token in the log
	files, err := image.ReadFile(filepath.Join(outs[0], "files.img"))
	if err != nil {
		t.Fatal(err)
	}
	log, _ := os.ReadFile(filepath.Join(outs[0], filepath.Base(d.Log)))
	found := 0
	for _, e := range files.Entries {
		s := e.Msg.ProtoReflect()
		_ = s
		js, _ := json.Marshal(e.Msg)
		var v struct {
			Reg *struct{ Name string } `json:"reg"`
		}
		json.Unmarshal(js, &v)
		if v.Reg != nil && strings.Contains(v.Reg.Name, "/work/") {
			found++
			if !bytes.Contains(log, []byte(strings.TrimSuffix(v.Reg.Name, " (deleted)"))) {
				t.Errorf("image path %q not in the scrubbed log", v.Reg.Name)
			}
		}
	}
	if found == 0 {
		t.Error("no work-dir path in files.img")
	}
	// another key gives other tokens
	out3 := filepath.Join(t.TempDir(), "out")
	if _, err := Run(d.Dir, out3, Options{Level: Identity, Key: bytes.Repeat([]byte{1}, 32)}); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(outs[0], "files.img"))
	b, _ := os.ReadFile(filepath.Join(out3, "files.img"))
	if bytes.Equal(a, b) {
		t.Error("two keys gave the same files.img")
	}
}

// TestRestoreContent: a content-level output restores on the same host and keeps running, with
// argv and env rewritten in memory.
func TestRestoreContent(t *testing.T) {
	testenv.Root(t)
	secretEnv := "criukit-restore-env-secret-77"
	p := harness.Start(t, "files", harness.WithArgs("--secret", workload.DefaultSecret), harness.WithEnv("CRIUKIT_SECRET_TOKEN="+secretEnv))
	d := p.Dump(t)
	out := filepath.Join(t.TempDir(), "out")
	if _, err := Run(d.Dir, out, Options{Level: Content, Key: testKey, Logs: []string{d.Log}}); err != nil {
		t.Fatal(err)
	}
	rp := (&harness.Dump{Dir: out, Log: d.Log, Workload: d.Workload}).Restore(t)
	time.Sleep(500 * time.Millisecond)
	if !rp.Alive() {
		t.Fatalf("restored pid %d died", rp.Pid)
	}
	cmdline, _ := os.ReadFile(filepath.Join("/proc", itoa(rp.Pid), "cmdline"))
	environ, _ := os.ReadFile(filepath.Join("/proc", itoa(rp.Pid), "environ"))
	if bytes.Contains(cmdline, []byte(workload.DefaultSecret)) || !bytes.Contains(cmdline, []byte("--secret")) {
		t.Errorf("argv not rewritten in place: %q", cmdline)
	}
	if bytes.Contains(environ, []byte(secretEnv)) || !bytes.Contains(environ, []byte("CRIUKIT_SECRET_TOKEN=")) {
		t.Errorf("env not rewritten in place (keys kept, values replaced)")
	}
	rp.Kill()
}

// TestRestoreStructure: CRIU's restore of a structure-level output runs to the end.
func TestRestoreStructure(t *testing.T) {
	testenv.Root(t)
	criu := harness.Criu(t)
	p := harness.Start(t, "files")
	d := p.Dump(t)
	out := filepath.Join(t.TempDir(), "out")
	if _, err := Run(d.Dir, out, Options{Level: Structure, Key: testKey, RestoreKit: true}); err != nil {
		t.Fatal(err)
	}
	kitRestore(t, out)
	log := filepath.Join(t.TempDir(), "restore.log")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	// --leave-stopped: with zero memory and registers the tasks cannot run; without it a
	// multi-threaded task may die (SIGSEGV kills the group) before CRIU detached its last thread
	pid, err := criurun.Restore(ctx, criurun.Opts{Criu: criu, ImagesDir: out, LogFile: log, Args: []string{"--leave-stopped"}})
	if pid > 0 {
		t.Cleanup(func() {
			unix.Kill(pid, unix.SIGKILL)
			var ws unix.WaitStatus
			unix.Wait4(pid, &ws, 0, nil)
		})
	}
	lb, _ := os.ReadFile(log)
	if !bytes.Contains(lb, []byte("Restore finished successfully")) {
		t.Fatalf("restore of the structure output did not finish (err %v); log tail:\n%s", err, tail(lb, 15))
	}
}

func tail(b []byte, n int) string {
	l := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

func itoa(n int) string { return strconv.Itoa(n) }

// kitRestore applies the restore kit of an output dir and removes what it created at cleanup.
// With a mapping (--map-out), files whose original exists get the original contents (a
// maintainer would put equivalent files there).
func kitRestore(t *testing.T, out string, mapOut ...string) {
	t.Helper()
	ents, err := ReadKit(filepath.Join(out, KitFile))
	if err != nil || len(ents) == 0 {
		t.Fatalf("restore kit: %v (%d entries)", err, len(ents))
	}
	created, err := ApplyRestoreKit(ents)
	t.Cleanup(func() {
		// the restore adds files of its own (bound sockets, ghost remaps) under what the kit made
		for i := len(created) - 1; i >= 0; i-- {
			os.RemoveAll(created[i])
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(mapOut) == 0 {
		return
	}
	b, err := os.ReadFile(mapOut[0])
	if err != nil {
		t.Fatal(err)
	}
	var pairs []struct{ Category, From, To string }
	json.Unmarshal(b, &pairs)
	rev := map[string]string{}
	for _, p := range pairs {
		if p.Category == "path" {
			rev[p.To] = p.From
		}
	}
	for _, e := range ents {
		if e.Kind != "file" {
			continue
		}
		parts := strings.Split(e.Path, "/")
		for i, c := range parts {
			stem, ext, _ := strings.Cut(c, ".")
			if o, ok := rev[stem]; ok {
				parts[i] = o
				if ext != "" {
					parts[i] += "." + ext
				}
			}
		}
		orig := strings.Join(parts, "/")
		if data, err := os.ReadFile(orig); err == nil && int64(len(data)) == e.Size {
			os.WriteFile(e.Path, data, 0o644)
		}
	}
}

// TestRestoreIdentity: an identity output restores when the restore kit recreates the mapped paths.
func TestRestoreIdentity(t *testing.T) {
	testenv.Root(t)
	p := harness.Start(t, "files")
	d := p.Dump(t)
	out := filepath.Join(t.TempDir(), "out")
	mapOut := filepath.Join(t.TempDir(), "map.json")
	if _, err := Run(d.Dir, out, Options{Level: Identity, Key: testKey, RestoreKit: true, MapOut: mapOut}); err != nil {
		t.Fatal(err)
	}
	kitRestore(t, out, mapOut)
	rp := (&harness.Dump{Dir: out, Log: d.Log, Workload: d.Workload}).Restore(t)
	time.Sleep(300 * time.Millisecond)
	if !rp.Alive() {
		t.Fatalf("restored pid %d died", rp.Pid)
	}
	rp.Kill()
}

// TestBadInput: truncated images, plugin images and stray files are dropped and listed (default
// deny); nothing panics and the input is not modified.
func TestBadInput(t *testing.T) {
	d := harness.CorpusDump(t, "files")
	in := filepath.Join(t.TempDir(), "in")
	os.Mkdir(in, 0o755)
	ents, _ := os.ReadDir(d.Dir)
	var core string
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(d.Dir, e.Name()))
		if strings.HasPrefix(e.Name(), "core-") && core == "" {
			core = e.Name()
			b = b[:len(b)/2]
		}
		os.WriteFile(filepath.Join(in, e.Name()), b, 0o600)
	}
	os.WriteFile(filepath.Join(in, "amdgpu-pages-1.img"), []byte("plugin data"), 0o600)
	os.WriteFile(filepath.Join(in, "pages-999.img"), make([]byte, 4096), 0o600)
	os.Symlink("/nonexistent", filepath.Join(in, "parent"))
	before, _ := os.ReadFile(filepath.Join(in, "files.img"))
	out := filepath.Join(t.TempDir(), "out")
	man, err := Run(in, out, Options{Level: Identity, Key: testKey})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := map[string]bool{core: true, "amdgpu-pages-1.img": true, "pages-999.img": true, "parent": true}
	for _, x := range man.Dropped {
		delete(want, x.Name)
	}
	if len(want) > 0 {
		t.Errorf("not listed as dropped: %v (dropped: %+v)", want, man.Dropped)
	}
	for n := range map[string]bool{core: true, "amdgpu-pages-1.img": true} {
		if _, err := os.Stat(filepath.Join(out, n)); err == nil {
			t.Errorf("%s copied through", n)
		}
	}
	after, _ := os.ReadFile(filepath.Join(in, "files.img"))
	if !bytes.Equal(before, after) {
		t.Error("input modified")
	}
	if _, err := Run(in, out, Options{Level: Identity}); err == nil {
		t.Error("an existing OUTDIR was overwritten")
	}
	if _, err := Run(filepath.Join(in, "nope"), out+"2", Options{Level: Identity}); err == nil {
		t.Error("missing input accepted")
	}
}

// TestLogNamedAfterPrivateValue: a log whose file name holds a private value of the dump (the
// process name, as `criukit report` or a wrapper may name logs) is written at every level with that
// value mapped in its name, as in its text: rewriter and verifier agree on names too.
func TestLogNamedAfterPrivateValue(t *testing.T) {
	harness.Criu(t)
	d := harness.CorpusDump(t, "files")
	tmp := t.TempDir()
	for _, lvl := range []Level{Identity, Structure, Paranoid} {
		// find a private value of this dump: the first mapped pair of a plain run's map
		mapOut := filepath.Join(tmp, lvl.String()+"-map.json")
		if _, err := Run(d.Dir, filepath.Join(tmp, lvl.String()+"-probe"), Options{Level: lvl, Key: testKey, MapOut: mapOut}); err != nil {
			t.Fatalf("%s: probe run: %v", lvl, err)
		}
		pairs, _ := os.ReadFile(mapOut)
		var ps []struct{ From, To string }
		json.Unmarshal(pairs, &ps)
		private := ""
		for _, p := range ps {
			if len(p.From) >= 6 && !strings.ContainsAny(p.From, "/.\x00 ") && p.From != p.To {
				private = p.From
				break
			}
		}
		if private == "" {
			t.Fatalf("%s: no private value in the map of %s", lvl, d.Dir)
		}
		logName := private + "-app.log"
		logPath := filepath.Join(tmp, logName)
		if err := os.WriteFile(logPath, []byte("started "+private+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(tmp, lvl.String()+"-out")
		if _, err := Run(d.Dir, out, Options{Level: lvl, Key: testKey, Logs: []string{logPath}}); err != nil {
			t.Fatalf("%s: a log named after private value %q refused: %v", lvl, private, err)
		}
		ents, _ := os.ReadDir(out)
		logs := 0
		for _, e := range ents {
			if strings.Contains(e.Name(), private) {
				t.Errorf("%s: output file name %q keeps the private value", lvl, e.Name())
			}
			if strings.HasSuffix(e.Name(), ".log") {
				logs++
			}
		}
		if logs == 0 {
			t.Errorf("%s: the log is not in the output", lvl)
		}
		mb, _ := os.ReadFile(filepath.Join(out, "MANIFEST.json"))
		if bytes.Contains(mb, []byte(private)) {
			t.Errorf("%s: MANIFEST.json keeps the private value %q", lvl, private)
		}
	}
}
