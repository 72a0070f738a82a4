package report

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/criukit/criukit/anonymize"
	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/testenv"
	"github.com/criukit/criukit/internal/workload"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { harness.Main(m) }

var planted = []string{workload.DefaultSecret, harness.CorpusEnvSecret}

// TestRealFailureBundle is the proof: a real failing criu dump yields a bundle that holds what
// CRIU's issue template asks for, names the right known issue, leaks no planted secret in any
// member (decompressed), and is byte-identical when built twice with one key.
func TestRealFailureBundle(t *testing.T) {
	criu := harness.Criu(t)
	key := bytes.Repeat([]byte("k"), 32)
	cases := []struct {
		name, rule string
		secretIn   bool // the failing dump's images or log hold a planted secret (the scan is not vacuous)
		start      func(t *testing.T) (pid int, env []string, cfg string)
	}{
		{"files-ghost-limit", "ghost-limit", true, func(t *testing.T) (int, []string, string) {
			p := harness.Start(t, "files", harness.WithArgs("--secret", workload.DefaultSecret),
				harness.WithEnv("CRIUKIT_SECRET_TOKEN="+harness.CorpusEnvSecret))
			// the ghost limit comes from a config file whose path holds a secret (CRIU_CONFIG_FILE)
			dir := filepath.Join(t.TempDir(), "home-"+workload.DefaultSecret)
			os.Mkdir(dir, 0o700)
			cfg := filepath.Join(dir, "criu.conf")
			os.WriteFile(cfg, []byte("# CRIU config of "+dir+"\nghost-limit 1K\n"), 0o600)
			return p.Pid, []string{"CRIU_CONFIG_FILE=" + cfg}, cfg
		}},
		{"kvm", "kvm", false, func(t *testing.T) (int, []string, string) {
			testenv.File(t, "/dev/kvm")
			p := harness.Start(t, "doctor-kvm", harness.WithEnv("CRIUKIT_SECRET_TOKEN="+harness.CorpusEnvSecret))
			return p.Pid, nil, ""
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pid, env, cfg := tc.start(t)
			dir := t.TempDir()
			imgs, log := filepath.Join(dir, "images"), filepath.Join(dir, "dump.log")
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			err := criurun.Dump(ctx, pid, criurun.Opts{Criu: criu, ImagesDir: imgs, LogFile: log, Env: env,
				Args: []string{"--leave-running", "--network-lock", "skip"}})
			if err == nil {
				t.Fatalf("criu dump of %s succeeded; want a failure", tc.name)
			}
			if tc.secretIn && !containsSecret(t, append(files(t, imgs), log)) {
				t.Fatalf("no planted secret in the failed dump's images or log: the leak scan would prove nothing")
			}
			if cfg != "" {
				t.Setenv("CRIU_CONFIG_FILE", cfg)
			}
			var bundles [][]byte
			var res *Result
			for i := 0; i < 2; i++ {
				out := filepath.Join(dir, "report"+string(rune('a'+i))+".tar.gz")
				res, err = Build(context.Background(), out, Options{Images: imgs, Logs: []string{log}, Level: anonymize.Identity,
					Key: key, Criu: criu, Version: "test", MapOut: filepath.Join(dir, "map.json")})
				if err != nil {
					t.Fatalf("build: %v", err)
				}
				b, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				bundles = append(bundles, b)
			}
			if !bytes.Equal(bundles[0], bundles[1]) {
				t.Errorf("two bundles built with one key differ (%d vs %d bytes)", len(bundles[0]), len(bundles[1]))
			}
			members, _, err := ReadBundle(res.Bundle)
			if err != nil {
				t.Fatal(err)
			}
			// no planted secret, no host name, no original temp path, in any member (also gzip'ed ones)
			var uts unix.Utsname
			unix.Uname(&uts)
			host := unix.ByteSliceToString(uts.Nodename[:])
			words := append([]string{dir}, planted...)
			if len(host) >= 6 {
				words = append(words, host)
			}
			for name, b := range members {
				for _, data := range [][]byte{b, gunzip(b)} {
					for _, w := range words {
						if bytes.Contains(data, []byte(w)) {
							t.Errorf("bundle member %s leaks %q", name, w)
						}
					}
				}
			}
			for _, m := range []string{"ISSUE.md", "summary.json", "MANIFEST.json", "logs/dump.log"} {
				if members[m] == nil {
					t.Errorf("bundle has no %s", m)
				}
			}
			issue := string(members["ISSUE.md"])
			e := res.Summary.Env
			want := []string{"**Description**", "**Steps to reproduce the issue:**", "**Describe the results you received:**",
				"**Describe the results you expected:**", "**Additional information you deem important",
				"CRIU full dump/restore logs:", "Output of `criu --version`:", "Output of `criu check --all`:",
				"**Additional environment details:**", "Version: 4.", e.CheckAll, e.KernelRelease, e.KernelVersion, e.Arch,
				"CONFIG_CHECKPOINT_RESTORE=", "| soft-dirty |", "`" + tc.rule + "`", "Dumping FAILED."}
			if e.DistroID != "" {
				want = append(want, "Distribution: "+e.DistroID)
			}
			for _, rt := range e.Runtimes {
				want = append(want, rt.Version)
			}
			for _, w := range want {
				if !strings.Contains(issue, w) {
					t.Errorf("ISSUE.md lacks %q", w)
				}
			}
			if len(res.Summary.Findings) == 0 || res.Summary.Findings[0].ID != tc.rule {
				t.Errorf("first known issue: %+v, want %s", res.Summary.Findings, tc.rule)
			}
			if cfg != "" {
				if len(e.ConfigFiles) != 1 || !strings.Contains(e.ConfigFiles[0].Content, "ghost-limit 1K") ||
					!strings.Contains(issue, "ghost-limit 1K") || strings.Contains(e.ConfigFiles[0].Path, workload.DefaultSecret) {
					t.Errorf("config file not reported (anonymized): %+v", e.ConfigFiles)
				}
			}
			var sum Summary
			if err := json.Unmarshal(members["summary.json"], &sum); err != nil || sum.Title != res.Issue.Title || len(sum.Members) != len(members) {
				t.Errorf("summary.json: %v (%d members listed, %d in the bundle)", err, len(sum.Members), len(members))
			}
			if b, err := os.ReadFile(filepath.Join(dir, "map.json")); err != nil || !bytes.Contains(b, []byte(`"`)) {
				t.Errorf("--map-out not written: %v", err)
			}
			t.Logf("%s: %d bytes, %d members, title %q", tc.name, len(bundles[0]), len(members), res.Issue.Title)
		})
	}
}

func files(t *testing.T, dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, filepath.Join(dir, e.Name()))
	}
	return out
}

func containsSecret(t *testing.T, paths []string) bool {
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, s := range planted {
			if bytes.Contains(b, []byte(s)) {
				return true
			}
		}
	}
	return false
}

// gunzip returns the decompressed member when it is gzip data (tmpfs tarballs), else nil.
func gunzip(b []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil
	}
	out, _ := io.ReadAll(io.LimitReader(zr, 256<<20))
	return out
}
