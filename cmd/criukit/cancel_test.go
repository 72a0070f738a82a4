package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/testenv"
)

// startBigMemory starts python3 holding 256 MiB of written pages (distinct content per page, so
// dedup has work to do) and returns its pid and a temp dir.
func startBigMemory(t *testing.T) (int, string) {
	testenv.Root(t)
	py := testenv.Command(t, "/usr/bin/python3")
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	cmd := exec.Command("setsid", py, "-c", `import time
b = bytearray(256 << 20)
for i in range(0, len(b), 4096):
    b[i:i+8] = i.to_bytes(8, "little")
open("`+ready+`", "w").close()
time.sleep(1000)`)
	pid := startTree(t, cmd, ready, 60*time.Second)
	return pid, dir
}

// dumpBigMemory dumps a startBigMemory process and returns the images directory.
func dumpBigMemory(t *testing.T) string {
	criu := harness.Criu(t)
	pid, dir := startBigMemory(t)
	imgs := dumpTree(t, criu, pid, dir, 3*time.Minute)
	return imgs
}

// leftovers lists the entries of dir whose name contains one of the temp markers.
func leftovers(dir string) []string {
	var out []string
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		for _, m := range []string{".criukit-tmp-", ".partial-", ".tmp"} {
			if strings.Contains(de.Name(), m) {
				out = append(out, de.Name())
			}
		}
	}
	return out
}

// TestLongOpsBigDump runs long operations on one real dump with 256 MiB of pages: report streams
// (bounded RSS), progress lines, and Ctrl-C: cow dedup and anonymize as subprocesses get SIGINT once
// their temporary output exists and must exit non-zero leaving neither output nor temporary file.
func TestLongOpsBigDump(t *testing.T) {
	bin := buildCLI(t)
	imgs := dumpBigMemory(t)
	t.Run("report-streams", func(t *testing.T) { reportStreams(t, bin, imgs) })
	t.Run("progress", func(t *testing.T) { progressLines(t, bin, imgs) })
	for _, c := range []struct {
		name string
		args func(out string) []string
	}{
		{"cow dedup", func(out string) []string { return []string{"cow", "dedup", imgs, out} }},
		{"anonymize", func(out string) []string { return []string{"anonymize", imgs, out} }},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			outDir := t.TempDir()
			out := filepath.Join(outDir, "out")
			cmd := exec.Command(bin, c.args(out)...)
			var buf bytes.Buffer
			err, signalled := interruptWhen(t, cmd, &buf, 2*time.Millisecond, func() bool { return len(leftovers(outDir)) > 0 })
			if !signalled {
				t.Fatalf("%s finished (err %v) before its temporary output appeared: nothing was interrupted\n%s", c.name, err, buf.String())
			}
			if err == nil {
				t.Fatalf("%s exited 0 after SIGINT\n%s", c.name, buf.String())
			}
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 || !strings.Contains(buf.String(), "interrupted") {
				t.Errorf("%s: want exit status 130 and an 'interrupted' message, got %v:\n%s", c.name, err, buf.String())
			}
			if _, err := os.Lstat(out); err == nil {
				t.Errorf("%s: output %s exists after SIGINT", c.name, out)
			}
			if l := leftovers(outDir); len(l) > 0 {
				t.Errorf("%s: temporary files left after SIGINT: %v", c.name, l)
			}
		})
	}
}

// reportStreams: the bundle of a dump holding 256 MiB of pages is written member by member
// from disk (the pages are never all in memory): the report process' peak RSS stays well below the
// pages' size, and ReadBundle's streaming form (WalkBundle) reads it back.
func reportStreams(t *testing.T, bin, imgs string) {
	out := filepath.Join(t.TempDir(), "bundle.tar.gz")
	o, err, rss := runRSS(t, bin, "", "report", imgs, "--no-criu", "--level", "content", "-o", out)
	if err != nil {
		t.Fatalf("report: %v\n%s", err, o)
	}
	t.Logf("report of a dump with 256 MiB of pages: peak RSS %d MiB", rss)
	if rss > 160 {
		t.Errorf("report peak RSS %d MiB: the pages (256 MiB) are held in memory", rss)
	}
	if l := leftovers(filepath.Dir(out)); len(l) > 0 {
		t.Errorf("temporary files left: %v", l)
	}
}

// progressLines: long operations print progress on stderr (forced with CRIUKIT_PROGRESS=1, as
// stderr is not a terminal here) and nothing of it on stdout.
func progressLines(t *testing.T, bin, imgs string) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"cow", "dedup", imgs, filepath.Join(t.TempDir(), "d")}, "pages read"},
		{[]string{"report", imgs, "--no-criu", "--level", "content", "-o", filepath.Join(t.TempDir(), "r.tar.gz")}, "writing bundle"},
		{[]string{"anonymize", "--level", "content", imgs, filepath.Join(t.TempDir(), "a")}, "MiB"},
	} {
		cmd := exec.Command(bin, c.args...)
		cmd.Env = append(os.Environ(), EnvProgress+"=1")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v: %v\n%s", c.args, err, stderr.String())
		}
		if !strings.Contains(stderr.String(), c.want) || !strings.Contains(stderr.String(), "\r\033[K") {
			t.Errorf("%v: no progress line with %q on stderr: %q", c.args[:2], c.want, stderr.String())
		}
		if strings.Contains(stdout.String(), "\r") {
			t.Errorf("%v: progress on stdout", c.args[:2])
		}
	}
}

// TestCowDumpCtrlC: SIGINT to a running `criukit cow dump` (it had no signal handling) stops it with
// a non-zero exit, and the dumped tree is left running (criu detached, not frozen or killed).
func TestCowDumpCtrlC(t *testing.T) {
	bin := buildCLI(t)
	pid, dir := startBigMemory(t)
	imgs := filepath.Join(dir, "images")
	cmd := exec.Command(bin, "cow", "dump", "-t", strconv.Itoa(pid), "-D", imgs, "--network-lock", "skip")
	var buf bytes.Buffer
	// Signal once criu has started writing images (the tree is seized then).
	err, signalled := interruptWhen(t, cmd, &buf, 5*time.Millisecond, func() bool {
		m, _ := filepath.Glob(filepath.Join(imgs, "*.img"))
		return len(m) > 0
	})
	if !signalled {
		t.Fatalf("cow dump finished (err %v) before it wrote an image: nothing interrupted\n%s", err, buf.String())
	}
	if err == nil {
		t.Fatalf("cow dump exited 0 after SIGINT\n%s", buf.String())
	}
	t.Logf("cow dump after SIGINT: %v: %.300s", err, buf.String())
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Errorf("exit %v after SIGINT, want status 130", err)
	}
	for dl := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		b, rerr := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if rerr != nil {
			t.Fatalf("the tree is gone after an interrupted cow dump: %v", rerr)
		}
		st := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))[0]
		if st == "S" || st == "R" {
			break
		}
		if time.Now().After(dl) {
			t.Fatalf("the tree is left in state %s after an interrupted cow dump", st)
		}
	}
}
