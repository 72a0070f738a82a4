package harness

import (
	"bytes"
	"fmt"
	"path/filepath"

	"github.com/criukit/criukit/internal/workload"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

// TestCleanup: processes started or restored in a (sub)test are gone when it ends, and a dump can be
// restored again once the previous restore was cleaned up (its pid was reaped).
func TestCleanup(t *testing.T) {
	Criu(t)
	var started, restored int
	d := Start(t, "sleep").Dump(t)
	t.Run("first", func(t *testing.T) {
		p := Start(t, "sleep")
		started = p.Pid
		restored = d.Restore(t).Pid
	})
	for _, pid := range []int{started, restored} {
		if alive(pid) {
			t.Errorf("pid %d still alive after its test ended", pid)
		}
	}
	t.Run("again", func(t *testing.T) {
		if r := d.Restore(t); r.Pid != restored {
			t.Errorf("second restore got pid %d, want %d", r.Pid, restored)
		}
	})
}

func TestNetnsWorkload(t *testing.T) {
	ns := NewNetns(t)
	p := Start(t, "tcp", WithNetns(ns))
	if !strings.HasPrefix(p.Info, "port=") {
		t.Errorf("info %q", p.Info)
	}
	r := p.Dump(t).Restore(t)
	r.Check(t)
}

func TestCorpus(t *testing.T) {
	t0 := time.Now()
	ds := Corpus(t)
	t.Logf("corpus made in %v", time.Since(t0).Round(time.Millisecond))
	if len(ds) != len(CorpusNames) {
		t.Fatalf("got %d dumps, want %d", len(ds), len(CorpusNames))
	}
	for i, d := range ds {
		if d.Workload != CorpusNames[i] {
			t.Errorf("dump %d is %s, want %s", i, d.Workload, CorpusNames[i])
		}
		ents, err := os.ReadDir(d.Dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Logf("%s: %d files: %s", d.Workload, len(names), strings.Join(names, " "))
	}
	// The planted secrets are in the files dump's memory (argv, env, heap), for anonymizer tests.
	var pages []byte
	files, _ := filepath.Glob(filepath.Join(ds[0].Dir, "pages-*.img"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, b...)
	}
	for _, secret := range []string{CorpusEnvSecret, workload.DefaultSecret} {
		if !bytes.Contains(pages, []byte(secret)) {
			t.Errorf("files dump pages lack %q", secret)
		}
	}
	// Corpus dumps stay restorable (their workload dirs are kept with them).
	for _, name := range []string{"files", "tcp"} {
		r := CorpusDump(t, name).Restore(t)
		t.Logf("restored corpus %s: %s", name, r.Check(t))
		r.Kill()
	}
	if again := Corpus(t); again[0] != ds[0] {
		t.Errorf("Corpus not cached")
	}
}

func TestGCScratch(t *testing.T) {
	dead := filepath.Join(os.TempDir(), fmt.Sprintf("%s%d-test%d", scratchPrefix, 1<<30, os.Getpid()))
	live := filepath.Join(os.TempDir(), fmt.Sprintf("%s%d-test%d", scratchPrefix, os.Getppid(), os.Getpid()))
	for _, d := range []string{dead, live} {
		if err := os.MkdirAll(filepath.Join(d, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { os.RemoveAll(dead); os.RemoveAll(live) })
	gcScratch()
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("scratch dir of a dead process kept: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("scratch dir of a live process removed: %v", err)
	}
}
