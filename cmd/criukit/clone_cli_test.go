package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/testenv"
)

// TestCloneLintCLI: a real dump with a path-bound unix socket, a listener on 127.0.0.1 and a log
// file open for writing. clone --lint exits non-zero on the refuse line, which names
// --rootfs-overlay and has no NUL after the path (text and JSON); the loopback listener is said to
// stay on 127.0.0.1; the log file gets a warning.
func TestCloneLintCLI(t *testing.T) {
	imgs, sock, logf := dumpLintTree(t)
	out, err := runCLI(t, nil, "clone", "--lint", imgs)
	cloneLintChecks(t, imgs, sock, logf, out, err)
}

// dumpLintTree dumps python3 with a path-bound unix socket, a 127.0.0.1 listener and a log file
// open for appending; it returns the images dir, the socket and the log path.
func dumpLintTree(t *testing.T) (string, string, string) {
	testenv.Root(t)
	criu := harness.Criu(t)
	py := testenv.Command(t, "/usr/bin/python3")
	dir := t.TempDir()
	sock, logf, ready := filepath.Join(dir, "app.sock"), filepath.Join(dir, "app.log"), filepath.Join(dir, "ready")
	cmd := exec.Command("setsid", py, "-c", `import socket, time
u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); u.bind("`+sock+`"); u.listen(1)
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
f = open("`+logf+`", "a"); f.write("started\n"); f.flush()
open("`+ready+`", "w").close()
time.sleep(1000)`)
	pid := startTree(t, cmd, ready, 30*time.Second)
	imgs := dumpTree(t, criu, pid, dir, 2*time.Minute)
	return imgs, sock, logf
}

func cloneLintChecks(t *testing.T, imgs, sock, logf, out string, err error) {
	t.Helper()
	t.Logf("clone --lint:\n%s", out)
	if err == nil {
		t.Error("clone --lint exits 0 while printing refuse lines")
	}
	if strings.Contains(out, "\x00") {
		t.Error("NUL byte in the lint text")
	}
	for _, want := range []string{"refuse  path-bound unix socket: " + sock + " (", "--rootfs-overlay", "listener on loopback: 127.0.0.1:", "regular file open for writing: " + logf} {
		if !strings.Contains(out, want) {
			t.Errorf("lint text lacks %q", want)
		}
	}
	js, _ := runCLI(t, nil, "clone", "--lint", "--json", imgs)
	var res struct {
		Lint []struct{ Level, What, Detail string } `json:"lint"`
	}
	if err := json.Unmarshal([]byte(js[:strings.LastIndexByte(js, '}')+1]), &res); err != nil {
		t.Fatalf("%v\n%s", err, js)
	}
	for _, f := range res.Lint {
		if strings.Contains(f.Detail, "\x00") {
			t.Errorf("NUL in JSON detail %q", f.Detail)
		}
	}
}

// TestCloneStop: `criukit clone stop OUTDIR` stops a running copy (its criu, pid 1 of the copy's
// pid namespace, ignores SIGTERM) and deletes its netns.
func TestCloneStop(t *testing.T) {
	testenv.Root(t)
	testenv.Command(t, "unshare")
	p := harness.Start(t, "sleep")
	d := p.Dump(t)
	out := filepath.Join(t.TempDir(), "clones")
	prefix := "crk-stop-" + strings.TrimPrefix(filepath.Base(filepath.Dir(out)), "TestCloneStop") + "-"
	o, err := runCLI(t, nil, "clone", "--copies", "1", "--out", out, "--netns-prefix", prefix, "--json", d.Dir)
	var res struct {
		Copies []struct {
			CriuPid int    `json:"criu_pid"`
			RootPid int    `json:"root_pid"`
			Netns   string `json:"netns"`
		} `json:"copies"`
	}
	json.Unmarshal([]byte(o), &res)
	t.Cleanup(func() {
		for _, c := range res.Copies {
			if c.CriuPid > 0 {
				syscall.Kill(c.CriuPid, syscall.SIGKILL)
			}
			exec.Command("ip", "netns", "del", filepath.Base(c.Netns)).Run()
		}
	})
	if err != nil {
		t.Fatalf("clone: %v\n%s", err, o)
	}
	if len(res.Copies) != 1 || res.Copies[0].CriuPid <= 0 {
		t.Fatalf("no copy with a criu pid:\n%s", o)
	}
	c := res.Copies[0]
	syscall.Kill(c.CriuPid, syscall.SIGTERM) // what the old help said: ignored by a pid namespace's init
	time.Sleep(300 * time.Millisecond)
	if syscall.Kill(c.CriuPid, 0) != nil {
		t.Log("SIGTERM stopped criu (kernel behaviour changed?)")
	}
	so, err := runCLI(t, nil, "clone", "stop", out)
	if err != nil {
		t.Fatalf("clone stop: %v\n%s", err, so)
	}
	t.Logf("clone stop: %s", so)
	for _, pid := range []int{c.CriuPid, c.RootPid} {
		if b, err := os.ReadFile("/proc/" + itoa(pid) + "/stat"); err == nil && !strings.Contains(string(b), ") Z ") {
			t.Errorf("pid %d still runs after clone stop", pid)
		}
	}
	if _, err := os.Stat(c.Netns); err == nil {
		t.Errorf("netns %s still exists", c.Netns)
	}
	if _, err := runCLI(t, nil, "clone", "stop", out); err == nil {
		t.Error("a second clone stop succeeds: want 'no running copies'")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestNetRewriteKeepsMode: net rewrite writes the files it changes (files.img) with the mode of the
// original, not 0600.
func TestNetRewriteKeepsMode(t *testing.T) {
	imgs, _, _ := dumpLintTree(t)
	orig := filepath.Join(imgs, "files.img")
	if err := os.Chmod(orig, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "moved")
	if o, err := runCLI(t, nil, "net", "rewrite", "--map", "127.0.0.1=127.0.0.2", imgs, out); err != nil {
		t.Fatalf("net rewrite: %v\n%s", err, o)
	}
	a, _ := os.ReadFile(orig)
	b, err := os.ReadFile(filepath.Join(out, "files.img"))
	if err != nil {
		t.Fatal(err)
	}
	if string(a) == string(b) {
		t.Fatal("files.img not rewritten: the test does not exercise the write")
	}
	if st, _ := os.Stat(filepath.Join(out, "files.img")); st.Mode().Perm() != 0o644 {
		t.Errorf("rewritten files.img has mode %v, the original 0644", st.Mode().Perm())
	}
}
