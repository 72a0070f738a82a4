package inspect_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/criukit/criukit/ckpt"
	"github.com/criukit/criukit/cow"
	"github.com/criukit/criukit/inspect"
	"github.com/criukit/criukit/internal/testenv"
)

// renderDOM opens an HTML file from disk in headless Chromium and returns the DOM after its
// scripts ran.
func renderDOM(t *testing.T, file string) string {
	t.Helper()
	bin := testenv.Command(t, "chromium")
	home := t.TempDir() // chromium wants a writable profile and HOME
	c := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir="+home,
		"--virtual-time-budget=5000", "--dump-dom", "file://"+file)
	c.Env = append(os.Environ(), "HOME="+home)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("chromium: %v: %s", err, errb.String())
		}
	case <-time.After(90 * time.Second):
		c.Process.Kill()
		<-done
		t.Fatalf("chromium did not finish in 90s: %s", errb.String())
	}
	return out.String()
}

func writeHTML(t *testing.T, p string) (string, *inspect.Report, int) {
	t.Helper()
	c, err := ckpt.Open(p, ckpt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := filepath.Join(t.TempDir(), "report.html")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := inspect.WriteHTML(f, c, inspect.All); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r, err := inspect.Collect(c, inspect.All)
	if err != nil {
		t.Fatal(err)
	}
	im, err := inspect.NewImages(c)
	if err != nil {
		t.Fatal(err)
	}
	tasks, _ := im.Tasks()
	vmas := 0
	for _, tk := range tasks {
		if tk.HasMemory() {
			vmas += len(tk.MM.GetVmas())
		}
	}
	return out, r, vmas
}

// checkHTML renders the report of a real podman archive and of a COW-deduped images directory in
// Chromium and checks that the process tree, the memory map rows and the COW table are on the page.
func checkHTML(t *testing.T, f *fixture) {
	file, r, vmas := writeHTML(t, f.zst)
	raw, _ := os.ReadFile(file)
	if bytes.Contains(raw, []byte("http://")) || bytes.Contains(raw, []byte("https://")) || bytes.Contains(raw, []byte(" src=")) {
		t.Errorf("report is not self-contained (external reference)")
	}
	dom := renderDOM(t, file)
	if !strings.Contains(dom, `data-rendered="yes"`) {
		t.Fatalf("scripts did not run: %.500s", dom)
	}
	pids := regexp.MustCompile(`<li class="proc" data-pid="(\d+)"`).FindAllStringSubmatch(dom, -1)
	want := flat([]*inspect.Process{r.Tree})
	if len(pids) != len(want) || len(want) < 6 {
		t.Errorf("tree shows %d processes, want %d", len(pids), len(want))
	}
	if !strings.Contains(dom, "[1] sh") || !strings.Contains(dom, "SECRET=s3cr3t-token-42") {
		t.Errorf("tree lacks pid 1 or its environment")
	}
	if n := strings.Count(dom, `<tr class="vma">`); n != vmas || vmas == 0 {
		t.Errorf("memory map shows %d VMA rows, want %d", n, vmas)
	}
	if !strings.Contains(dom, `class="present"`) || !strings.Contains(dom, "[heap]") || !strings.Contains(dom, "/tmp/opened-file") || !strings.Contains(dom, "ESTABLISHED") {
		t.Errorf("memory bars, heap, files or sockets missing")
	}

	// COW: dedup the unpacked images (sh's children share its pages) and report that.
	deduped := filepath.Join(t.TempDir(), "cow")
	res, err := cow.Dedup(f.images, deduped, cow.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var shared int64
	for _, p := range res.Procs {
		shared += p.Deduped
	}
	file, _, _ = writeHTML(t, deduped)
	dom = renderDOM(t, file)
	if shared == 0 {
		t.Fatalf("dedup shared nothing: %+v", res)
	}
	if !strings.Contains(dom, `<table class="cow">`) || !strings.Contains(dom, `class="parent"`) {
		t.Errorf("COW sharing not shown (%d pages shared)", shared)
	}
}
