package anonymize

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/criukit/criukit/internal/compress"
	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/podman"
	"github.com/criukit/criukit/internal/testenv"
)

// The real-world corpus (issue 11): real programs from Debian packages and real podman checkpoint
// archives, with our own tokens planted in argv, env names and values, cwd (domain-shaped and
// all-digit components), files, socket paths, hostnames (UTS ns), memory, logs, labels and
// annotations. Each is dumped once; every level runs on the same dump (in parallel). For each:
// an output is written, no planted value survives where the level promises to hide it (raw bytes,
// tar members, decoded JSON, file names), the mapping is consistent (one token per value across
// images, memory and logs), and the content level restores (criu restore / podman container
// restore --import) and keeps running.

// plant is a planted value and the first level that hides it outside memory (from) and in
// memory pages (mem).
type plant struct {
	what  string
	value string
	from  Level
	mem   Level
}

// the --secret value planted in every item (gone at every level, memory included)
const rwSecret = "zqSECRETk7m2p9x4w"

var rwLevels = []Level{Content, Identity, Structure, Paranoid}

// rwResult is one cell of the corpus table (printed at the end for the closing note).
type rwResult struct {
	item, level      string
	written, restore string
	leaks            int
}

var rwTable struct {
	sync.Mutex
	rows []rwResult
}

func rwRecord(r rwResult) {
	rwTable.Lock()
	rwTable.rows = append(rwTable.rows, r)
	rwTable.Unlock()
}

func TestRealWorldCorpus(t *testing.T) {
	harness.Criu(t)
	for _, c := range []string{"python3", "busybox", "redis-server", "nginx"} {
		testenv.Command(t, c)
	}
	t.Run("python3", rwPython)
	t.Run("busybox-sh", rwBusyboxSh)
	t.Run("busybox-httpd", rwBusyboxHttpd)
	t.Run("redis-server", rwRedis)
	t.Run("nginx", rwNginx)
	t.Run("podman", rwPodman)
	rwTable.Lock()
	defer rwTable.Unlock()
	sort.Slice(rwTable.rows, func(i, j int) bool {
		a, b := rwTable.rows[i], rwTable.rows[j]
		if a.item != b.item {
			return a.item < b.item
		}
		la, _ := ParseLevel(a.level)
		lb, _ := ParseLevel(b.level)
		return la < lb
	})
	var sb strings.Builder
	sb.WriteString("corpus item x level -> written / leaks / restored\n")
	for _, r := range rwTable.rows {
		fmt.Fprintf(&sb, "  %-22s %-10s %-8s leaks=%d %s\n", r.item, r.level, r.written, r.leaks, r.restore)
	}
	t.Log(sb.String())
}

// rwDir makes a work dir whose path has a domain-shaped and an all-digit component.
func rwDir(t *testing.T, base string) string {
	d := filepath.Join(base, "www.zqdomain7x2.com", "4111111111111111")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// rwCommon are values every program item plants (see rwEnv).
func rwCommon() []plant {
	return []plant{
		{"--secret value", rwSecret, Content, Content},
		{"domain-shaped dir", "zqdomain7x2", Identity, Identity},
		{"all-digit dir", "4111111111111111", Identity, Identity},
		{"env name", "ZQENVNAME_K4T8", Identity, Identity},
		{"env value", "zqenvvalue6h3n", Content, Identity},
		{"numeric env value", "48151623420815", Content, Identity},
		{"IP in env", "10.77.131.29", Identity, Identity},
	}
}

func rwEnv(extra ...string) []string {
	return append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "ZQENVNAME_K4T8=zqenvvalue6h3n",
		"CK_NUM=48151623420815", "CK_ADDR=10.77.131.29", "CK_SECRET=" + rwSecret}, extra...)
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tcpReady(port int) func() bool {
	return func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
}

const rwPy = `import os, socket, sys, time
socket.sethostname("zqhost8v3w")
host = socket.gethostname()
s = socket.socket(socket.AF_UNIX)
s.bind(os.path.join(os.getcwd(), "zqsock5n1.sock"))
s.listen(1)
r, w = os.pipe()
os.write(w, b"zqpayload-pipe-bytes-3k9")
f = open("key.pem", "w")
f.write("x")
f.flush()
keep = [os.environ["CK_SECRET"], os.environ["CK_SECRET"].encode("utf-16-le"), sys.argv, host]
open(os.environ["CK_READY"], "w").close()
time.sleep(1000)
`

func rwPython(t *testing.T) {
	base := t.TempDir()
	dir := rwDir(t, base)
	ready := filepath.Join(base, "ready")
	p := harness.StartProgram(t, harness.Program{Name: "python3", Dir: dir, Cloneflags: syscall.CLONE_NEWUTS,
		Argv: []string{"/usr/bin/python3", "-c", rwPy, "--zqoptname3j7", "-pzqshortval9f2", "zqargvword5k8"},
		Env:  rwEnv("CK_READY=" + ready), Ready: harness.FileExists(ready)})
	d := p.Dump(t)
	ps := append(rwCommon(),
		plant{"argv option", "zqoptname3j7", Identity, Identity},
		plant{"argv -pVALUE", "zqshortval9f2", Identity, Identity},
		plant{"argv word", "zqargvword5k8", Identity, Identity},
		plant{"hostname (UTS ns)", "zqhost8v3w", Identity, Identity},
		plant{"unix socket path", "zqsock5n1", Identity, Identity},
		plant{"pipe payload", "zqpayload-pipe-bytes-3k9", Content, Identity},
	)
	rwLevelsDir(t, "python3", d, ps)
	// every planted value given with --secret (argv option, plain word, numeric env value, env
	// name, IP also in env, domain-shaped folder...): written, and gone everywhere, memory included
	var secrets []string
	for _, p := range ps {
		secrets = append(secrets, p.value)
	}
	for _, lvl := range []Level{Content, Identity} {
		t.Run("all-secrets/"+lvl.String(), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			res := rwResult{item: "python3 (all --secret)", level: lvl.String(), written: "written", restore: "-"}
			defer func() { rwRecord(res) }()
			if _, err := Run(d.Dir, out, Options{Level: lvl, Key: testKey, Logs: []string{d.Log}, Secrets: secrets}); err != nil {
				res.written = "REFUSED"
				t.Fatal(err)
			}
			var all []plant
			for _, p := range ps {
				all = append(all, plant{p.what + " (--secret)", p.value, Content, Content})
			}
			res.leaks = rwCheck(t, lvl, rwBlobs(t, out, false), all)
		})
	}
}

func rwBusyboxSh(t *testing.T) {
	base := t.TempDir()
	dir := rwDir(t, base)
	ready := filepath.Join(base, "ready")
	p := harness.StartProgram(t, harness.Program{Name: "busybox-sh", Dir: dir,
		Argv: []string{"busybox", "sh", "-c", `zqshvar=zqshellword8m1; touch "$CK_READY"; while :; do busybox sleep 1; done`},
		Env:  rwEnv("CK_READY=" + ready), Ready: harness.FileExists(ready)})
	d := p.Dump(t)
	ps := append(rwCommon(), plant{"sh variable (argv script)", "zqshellword8m1", Identity, Identity})
	rwLevelsDir(t, "busybox-sh", d, ps)
}

func rwBusyboxHttpd(t *testing.T) {
	base := t.TempDir()
	dir := rwDir(t, base)
	root := filepath.Join(dir, "zqhttpdroot4k")
	os.MkdirAll(root, 0o755)
	os.WriteFile(filepath.Join(root, "index.html"), []byte("zqhtmlpage"), 0o644)
	port := freePort(t)
	p := harness.StartProgram(t, harness.Program{Name: "busybox-httpd", Dir: dir,
		Argv: []string{"busybox", "httpd", "-f", "-p", fmt.Sprintf("127.0.0.1:%d", port), "-h", root},
		Env:  rwEnv(), Ready: tcpReady(port)})
	d := p.Dump(t)
	ps := append(rwCommon(), plant{"document root", "zqhttpdroot4k", Identity, Identity})
	rwLevelsDir(t, "busybox-httpd", d, ps)
}

func rwRedis(t *testing.T) {
	base := t.TempDir()
	dir := rwDir(t, base)
	port := freePort(t)
	p := harness.StartProgram(t, harness.Program{Name: "redis-server", Dir: dir,
		Argv: []string{"redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--requirepass", "zqredispass8d2", "--logfile", filepath.Join(dir, "zqredislog.log")},
		Env: rwEnv(), Ready: tcpReady(port)})
	d := p.Dump(t)
	// redis rewrites its argv/env area (setproctitle): its heap copies of argv values are found
	// by nothing in the dump (docs/anonymize.md, "limits"); env copies are found by their shape
	ps := append(rwCommon(),
		plant{"requirepass value", "zqredispass8d2", Identity, Structure},
		plant{"log file name", "zqredislog", Identity, Structure})
	rwLevelsDir(t, "redis-server", d, ps)
}

func rwNginx(t *testing.T) {
	base := t.TempDir()
	dir := rwDir(t, base)
	port := freePort(t)
	for _, s := range []string{"tmp", "zqwebroot6p"} {
		os.MkdirAll(filepath.Join(dir, s), 0o755)
	}
	// user root: the worker of another uid cannot be dumped here (no CAP_SYS_RESOURCE for prlimit)
	conf := fmt.Sprintf(`user root; daemon off; master_process on; worker_processes 1; pid %[1]s/nginx.pid; error_log %[1]s/error.log;
events { worker_connections 64; }
http { access_log off; client_body_temp_path %[1]s/tmp; proxy_temp_path %[1]s/tmp; fastcgi_temp_path %[1]s/tmp;
 uwsgi_temp_path %[1]s/tmp; scgi_temp_path %[1]s/tmp;
 server { listen 127.0.0.1:%[2]d; server_name zqnginxname3; root %[1]s/zqwebroot6p; } }
`, dir, port)
	cf := filepath.Join(dir, "zqnginxconf.conf")
	os.WriteFile(cf, []byte(conf), 0o644)
	p := harness.StartProgram(t, harness.Program{Name: "nginx", Dir: dir,
		Argv: []string{"nginx", "-c", cf, "-p", dir + "/", "-e", filepath.Join(dir, "error.log")},
		Env:  rwEnv(), Ready: tcpReady(port)})
	time.Sleep(300 * time.Millisecond) // the worker
	d := p.Dump(t)
	ps := append(rwCommon(),
		plant{"config file name", "zqnginxconf", Identity, Identity},
		// the config file's contents are not part of the dump: what nginx parsed from it is only in
		// its memory, where nothing in the dump names it (docs/anonymize.md, "limits")
		plant{"server_name (config in memory)", "zqnginxname3", Identity, Structure},
		plant{"web root", "zqwebroot6p", Identity, Structure})
	rwLevelsDir(t, "nginx", d, ps)
}

// rwLevelsDir runs every level on one dump in parallel, checks each output, and restores the
// content level.
func rwLevelsDir(t *testing.T, item string, d *harness.Dump, ps []plant) {
	t.Run("levels", func(t *testing.T) {
		t.Run("inventory", func(t *testing.T) {
			t.Parallel()
			rwInventory(t, item, d.Dir, Options{Key: testKey, Logs: []string{d.Log}, Secrets: []string{rwSecret}})
		})
		for _, lvl := range rwLevels {
			lvl := lvl
			t.Run(lvl.String(), func(t *testing.T) {
				t.Parallel()
				tmp := t.TempDir()
				out, mapOut := filepath.Join(tmp, "out"), filepath.Join(tmp, "map.json")
				res := rwResult{item: item, level: lvl.String(), written: "written", restore: "-"}
				defer func() { rwRecord(res) }()
				man, err := Run(d.Dir, out, Options{Level: lvl, Key: testKey, Logs: []string{d.Log}, Secrets: []string{rwSecret},
					MapOut: mapOut, RestoreKit: lvl >= Identity})
				if err != nil {
					res.written = "REFUSED"
					t.Fatalf("%s %s: %v", item, lvl, err)
				}
				in := rwBlobs(t, d.Dir, false)
				if lb, err := os.ReadFile(d.Log); err == nil {
					in = append(in, rwFileBlobs(filepath.Base(d.Log), lb)...)
				}
				blobs := rwBlobs(t, out, false)
				res.leaks = rwCheck(t, lvl, blobs, ps)
				if res.leaks > 0 {
					t.Logf("not scanned: %v", man.Verification.NotScanned)
				}
				if lvl == Identity {
					rwConsistent(t, in, blobs, mapOut, ps)
				}
				if lvl == Content {
					res.restore = "restored+running"
					if err := rwRestore(t, d, out); err != nil {
						res.restore = "RESTORE FAILED"
						t.Error(err)
					}
				}
			})
		}
	})
}

// rwInventory: the inventory level writes nothing and reports a verified identity output.
func rwInventory(t *testing.T, item, in string, o Options) {
	res := rwResult{item: item, level: "inventory", written: "reported", restore: "-"}
	defer func() { rwRecord(res) }()
	rep, err := InventoryReport(in, o)
	if err != nil || !rep.Verified {
		res.written = "REFUSED"
		if err == nil {
			err = fmt.Errorf("%s", rep.Problem)
		}
		t.Fatalf("%s inventory: %v", item, err)
	}
}

func rwRestore(t *testing.T, d *harness.Dump, out string) error {
	rd := &harness.Dump{Dir: out, Log: d.Log, Workload: d.Workload, WorkDir: d.WorkDir}
	p := rd.Restore(t)
	time.Sleep(time.Second)
	if !p.Alive() {
		return fmt.Errorf("restored %s (pid %d) died", d.Workload, p.Pid)
	}
	p.Kill()
	return nil
}

// blob is one piece of an output to scan: a file's bytes, a tar member's name or bytes, a decoded
// JSON string, a file name.
type blob struct {
	where string
	mem   bool
	b     []byte
}

// rwBlobs reads every file under dir (recursively), its name, the members of tarballs (nested
// included) and the strings and keys of JSON runtime files.
func rwBlobs(t *testing.T, dir string, _ bool) []blob {
	var out []blob
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, blob{rel + " (name)", false, []byte(fi.Name())})
		if !fi.Mode().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Error(err)
			return nil
		}
		out = append(out, rwFileBlobs(rel, b)...)
		return nil
	})
	return out
}

func rwFileBlobs(rel string, b []byte) []blob {
	base := filepath.Base(rel)
	out := []blob{{rel, strings.HasPrefix(base, "pages-"), b}}
	if strings.Contains(base, ".tar") {
		zr, _, err := compress.NewReader(bytes.NewReader(b))
		if err == nil {
			tr := tar.NewReader(zr)
			for {
				h, err := tr.Next()
				if err != nil {
					break
				}
				mb, _ := io.ReadAll(tr)
				out = append(out, blob{rel + ":" + h.Name + " (name)", false, []byte(h.Name + "\x00" + h.Linkname)})
				out = append(out, rwFileBlobs(rel+":"+h.Name, mb)...)
			}
			zr.Close()
		}
	}
	if metaKind(base) == "json" {
		var v any
		if json.Unmarshal(b, &v) == nil {
			var walk func(v any)
			walk = func(v any) {
				switch x := v.(type) {
				case map[string]any:
					for k, e := range x {
						out = append(out, blob{rel + " (JSON key)", false, []byte(k)})
						walk(e)
					}
				case []any:
					for _, e := range x {
						walk(e)
					}
				case string:
					out = append(out, blob{rel + " (JSON string)", false, []byte(x)})
				}
			}
			walk(v)
		}
	}
	return out
}

// rwCheck fails for every planted value left where the level hides it; it returns the count.
func rwCheck(t *testing.T, lvl Level, blobs []blob, ps []plant) int {
	t.Helper()
	n := 0
	for _, p := range ps {
		need := p.from
		forms := [][]byte{[]byte(p.value)}
		if p.value == rwSecret {
			forms = append(forms, utf16le(p.value), []byte(p.value[:8]), []byte(p.value[len(p.value)-8:]))
		}
		seen := map[string]bool{}
		for _, b := range blobs {
			need = p.from
			if b.mem {
				need = p.mem
			}
			if lvl < need {
				continue
			}
			for _, f := range forms {
				if bytes.Contains(b.b, f) && !seen[b.where] {
					seen[b.where] = true
					n++
					t.Errorf("level %s: %s (%q) left in %s", lvl, p.what, f, b.where)
					if os.Getenv("CRIUKIT_DEBUG_LEAK") != "" {
						i := bytes.Index(b.b, f)
						t.Logf("context: %q", b.b[max(0, i-100):min(len(b.b), i+60)])
					}
				}
			}
		}
	}
	return n
}

// rwConsistent (identity): each planted value that was replaced as a whole maps to one token, and
// every output file whose input held the value holds that token (images, memory, logs agree).
func rwConsistent(t *testing.T, in, out []blob, mapOut string, ps []plant) {
	t.Helper()
	mb, err := os.ReadFile(mapOut)
	if err != nil {
		t.Fatal(err)
	}
	var pairs []struct{ Category, From, To string }
	json.Unmarshal(mb, &pairs)
	tok := map[string]map[string]bool{}
	for _, p := range pairs {
		if tok[p.From] == nil {
			tok[p.From] = map[string]bool{}
		}
		if p.Category != "ip" && p.Category != "uid" && p.Category != "mac" {
			tok[p.From][p.To] = true
		}
	}
	for from, tos := range tok {
		if len(tos) > 1 {
			t.Errorf("value of %d bytes maps to %d different tokens", len(from), len(tos))
		}
	}
	outBy := map[string][]byte{}
	for _, b := range out {
		outBy[b.where] = append(outBy[b.where], b.b...)
	}
	for _, p := range ps {
		var to string
		for x := range tok[p.value] {
			to = x
		}
		if to == "" || strings.Contains(p.what, "payload") || strings.Contains(p.what, "contents") {
			continue // mapped as part of a bigger value (a path component's stem); payloads are filled
		}
		for _, b := range in {
			if !bytes.Contains(b.b, []byte(p.value)) || strings.HasSuffix(b.where, "(name)") {
				continue
			}
			if ob, ok := outBy[b.where]; ok && !bytes.Contains(ob, []byte(to)) {
				t.Errorf("identity: %s maps to %q elsewhere but not in %s", p.what, to, b.where)
			}
		}
	}
}

// rwPodman: one busybox container with planted values, checkpointed as zstd, gzip and none.
func rwPodman(t *testing.T) {
	podman.Require(t)
	name := podman.Name("rw")
	c := podman.Run(t, name, []string{"-e", "ZQENVNAME_K4T8=zqenvvalue6h3n", "-e", "CK_SECRET=" + rwSecret,
		"--hostname", "zqhost8v3w", "--label", "zqlabelkey5=zqlabelval5", "--annotation", "zqannkey6=zqannval6"},
		"sh", "-c", "echo zqfilebody9 > /tmp/zqrootfile4.txt; echo x > /tmp/$CK_SECRET.txt; zqvar=zqctrword7; while sleep 1; do :; done")
	time.Sleep(500 * time.Millisecond)
	dir := t.TempDir()
	archives := map[string]string{
		"zstd": c.Checkpoint(t, dir, "zstd", "--leave-running"),
		"gzip": c.Checkpoint(t, dir, "gzip", "--leave-running"),
	}
	archives["none"] = c.Checkpoint(t, dir, "none")
	podman.Remove(name)
	ps := []plant{
		{"--secret value (env)", rwSecret, Content, Content},
		{"env name", "ZQENVNAME_K4T8", Identity, Identity},
		{"env value", "zqenvvalue6h3n", Content, Identity},
		{"hostname", "zqhost8v3w", Identity, Identity},
		{"label key", "zqlabelkey5", Identity, Identity},
		{"label value", "zqlabelval5", Content, Identity},
		{"annotation key", "zqannkey6", Identity, Identity},
		{"annotation value", "zqannval6", Content, Identity},
		{"rootfs file name", "zqrootfile4", Identity, Identity},
		{"rootfs file contents", "zqfilebody9", Content, Identity},
		{"command word", "zqctrword7", Identity, Identity},
	}
	var restoreMu sync.Mutex
	for _, comp := range []string{"zstd", "gzip", "none"} {
		arch := archives[comp]
		item := "podman-" + comp
		t.Run(comp, func(t *testing.T) {
			t.Run("inventory", func(t *testing.T) {
				t.Parallel()
				rwInventory(t, item, arch, Options{Key: testKey, Secrets: []string{rwSecret}})
			})
			for _, lvl := range rwLevels {
				lvl := lvl
				t.Run(lvl.String(), func(t *testing.T) {
					t.Parallel()
					res := rwResult{item: item, level: lvl.String(), written: "written", restore: "-"}
					defer func() { rwRecord(res) }()
					tmp := t.TempDir()
					out := filepath.Join(tmp, "out"+strings.TrimPrefix(filepath.Base(arch), strings.Split(filepath.Base(arch), ".")[0]))
					if _, err := Run(arch, out, Options{Level: lvl, Key: testKey, Secrets: []string{rwSecret}}); err != nil {
						res.written = "REFUSED"
						t.Fatalf("%s %s: %v", item, lvl, err)
					}
					// the output keeps the input's compression
					h := make([]byte, 4)
					f, _ := os.Open(out)
					io.ReadFull(f, h)
					f.Close()
					h0 := make([]byte, 4)
					f, _ = os.Open(arch)
					io.ReadFull(f, h0)
					f.Close()
					if compress.Detect(h) != compress.Detect(h0) {
						t.Errorf("output compression %s, input %s", compress.Detect(h), compress.Detect(h0))
					}
					b, _ := os.ReadFile(out)
					blobs := rwFileBlobs(filepath.Base(out), b)
					// members are files of their own: memory pages are those of checkpoint/pages-*
					for i := range blobs {
						if strings.Contains(blobs[i].where, ":checkpoint/pages-") && !strings.HasSuffix(blobs[i].where, "(name)") {
							blobs[i].mem = true
						}
					}
					for i := range blobs {
						if i == 0 {
							blobs[i].mem = true // the raw archive holds the pages too
						}
					}
					res.leaks = rwCheck(t, lvl, blobs, ps)
					if lvl == Content {
						restoreMu.Lock()
						defer restoreMu.Unlock()
						res.restore = "restored+running"
						nn := podman.Name("rwr")
						if _, err := podman.Restore(t, out, nn); err != nil {
							res.restore = "RESTORE FAILED"
							t.Fatalf("podman restore of the content level: %v", err)
						}
						time.Sleep(2 * time.Second)
						if !podman.Running(nn) {
							res.restore = "RESTORED, NOT RUNNING"
							t.Errorf("restored container %s is not running", nn)
						}
						podman.Remove(nn)
					}
				})
			}
		})
	}
}

var _ = exec.Command
