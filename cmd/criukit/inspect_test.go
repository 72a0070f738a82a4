package main

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/criukit/criukit/internal/compress"
	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/testenv"
)

// tarDir packs an images directory as a container checkpoint archive (checkpoint/...) with compression k.
func tarDir(t *testing.T, dir string, k compress.Kind) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ckpt"+k.Ext())
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw, err := compress.NewWriter(f, k)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	err = filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		st, err := de.Info()
		if err != nil || !st.Mode().IsRegular() {
			return err
		}
		h, _ := tar.FileInfoHeader(st, "")
		h.Name = "checkpoint/" + rel
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	tw.Close()
	zw.Close()
	return out
}

// TestCommandsOnArchives runs the image-reading commands on a real dump and on the same dump packed
// as a plain tar and a zstd archive: the outputs must be the same.
func TestCommandsOnArchives(t *testing.T) {
	testenv.Root(t)
	d := harness.CorpusDump(t, "files")
	plain, zst := tarDir(t, d.Dir, compress.None), tarDir(t, d.Dir, compress.Zstd)
	out := func(args ...string) string {
		t.Helper()
		s, err := runCLI(t, nil, args...)
		if err != nil {
			t.Fatalf("criukit %s: %v", strings.Join(args, " "), err)
		}
		return s
	}
	ps := out("x", d.Dir, "ps", "--json")
	var procs []struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(ps), &procs); err != nil || len(procs) == 0 {
		t.Fatalf("x ps: %v %s", err, ps)
	}
	pid := procs[0].Pid
	addr := fmt.Sprintf("%#x", firstPresentVaddr(t, d.Dir, pid))
	for _, a := range []string{plain, zst} {
		for _, args := range [][]string{
			{"ls", "%s", "--json"}, {"x", "%s", "ps"}, {"x", "%s", "fds"}, {"x", "%s", "sk", "--json"}, {"x", "%s", "rss"},
			{"pages", "%s", "--pid", fmt.Sprint(pid), "--addr", addr, "--len", "4096"},
			{"show", "%s/pstree.img"}, {"info", "%s/inventory.img"}, {"decode", "-i", "%s/" + fmt.Sprintf("mm-%d.img", pid)},
			{"inspect", "%s", "--all", "--json"},
			{"inspect", "memparse", "%s", "--search", harness.CorpusEnvSecret, "--context", "8", "--json"},
		} {
			ref, arc := make([]string, len(args)), make([]string, len(args))
			for i, x := range args {
				ref[i], arc[i] = strings.ReplaceAll(x, "%s", d.Dir), strings.ReplaceAll(x, "%s", a)
			}
			want, got := out(ref...), out(arc...)
			if args[0] == "inspect" {
				// paths, kinds and sizes name the source; everything else must match
				want, got = stripSource(t, want), stripSource(t, got)
			}
			if args[0] == "ls" {
				got = strings.ReplaceAll(got, "\"kind\": \"dir\"", "")
			}
			if want != got {
				t.Errorf("criukit %s differs on %s:\n%.600s\n---\n%.600s", strings.Join(args, " "), filepath.Base(a), want, got)
			}
		}
	}
	if s := out("inspect", zst, "--ps-tree-env", "--json"); !strings.Contains(s, harness.CorpusEnvSecret) {
		t.Errorf("environment from a zstd archive lacks the planted secret")
	}
	if s := out("inspect", "diff", d.Dir, zst, "--json"); !strings.Contains(s, `"pages_changed": 0`) || strings.Contains(s, `"added"`) {
		t.Errorf("diff of a dump with its own archive shows changes:\n%.800s", s)
	}
	if _, err := runCLI(t, nil, "ls", filepath.Join(t.TempDir(), "nope.tar")); err == nil {
		t.Error("ls of a missing archive succeeded")
	}
}

// stripSource removes what names the source (path, kind, compression, archive/spool sizes, the
// elapsed time of a search) from inspect's JSON.
func stripSource(t *testing.T, s string) string {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%v: %.300s", err, s)
	}
	var strip func(any)
	strip = func(x any) {
		switch x := x.(type) {
		case map[string]any:
			for _, k := range []string{"path", "kind", "compression", "archive_size", "spooled_size", "elapsed_ns"} {
				delete(x, k)
			}
			for _, y := range x {
				strip(y)
			}
		case []any:
			for _, y := range x {
				strip(y)
			}
		}
	}
	strip(v)
	b, _ := json.Marshal(v)
	return string(b)
}
