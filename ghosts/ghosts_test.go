package ghosts

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"1048576", 1 << 20, true}, {"4M", 4 << 20, true}, {"512K", 512 << 10, true},
		{"2G", 2 << 30, true}, {" 7 ", 7, true}, {"", 0, false}, {"-1", 0, false}, {"1.5M", 0, false},
		{"M", 0, false}, {"10X", 0, false}, {"99999999999999999999", 0, false}, {"9999999999999G", 0, false},
	} {
		got, err := ParseSize(c.in)
		if (err == nil) != c.ok || c.ok && got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d ok=%v", c.in, got, err, c.want, c.ok)
		}
		if err != nil && !errors.Is(err, ErrBadSize) {
			t.Errorf("ParseSize(%q): error %v is not ErrBadSize", c.in, err)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"4M", "0", "12K", "1G", "x", "-5", "123456789"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err == nil && n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
	})
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/plain`: "/plain", `/x\011\134`: "/x\t\\", `/bad\09`: `/bad\09`, `\`: `\`} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzUnescapeMount(f *testing.F) {
	f.Add(`/a\040b`)
	f.Add(`\\\`)
	f.Fuzz(func(t *testing.T, s string) {
		if len(unescapeMount(s)) > len(s) {
			t.Fatal("grew")
		}
	})
}

func TestLimitsFromEnv(t *testing.T) {
	env := map[string]string{EnvGhostLimit: "8M", EnvCopyBudget: "1G"}
	g, b, err := LimitsFromEnv(func(k string) string { return env[k] })
	if err != nil || g != 8<<20 || b != 1<<30 {
		t.Fatalf("%d %d %v", g, b, err)
	}
	g, b, err = LimitsFromEnv(func(string) string { return "" })
	if err != nil || g != -1 || b != -1 {
		t.Fatalf("unset: %d %d %v", g, b, err)
	}
	env[EnvCopyBudget] = "lots"
	if _, _, err := LimitsFromEnv(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), EnvCopyBudget) {
		t.Fatalf("bad budget accepted or unnamed: %v", err)
	}
}

// TestWriteConfig: the generated config keeps a CRIU_CONFIG_FILE the user set and adds the limit last.
func TestWriteConfig(t *testing.T) {
	user := filepath.Join(t.TempDir(), "user.conf")
	if err := os.WriteFile(user, []byte("tcp-established\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvCriuConfig, user)
	path, cleanup, err := writeConfig(12345)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	cleanup()
	s := string(b)
	if !strings.Contains(s, "tcp-established\n") || !strings.HasSuffix(s, "ghost-limit 12345\n") {
		t.Fatalf("config:\n%s", s)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("config not removed")
	}
	t.Setenv(EnvCriuConfig, filepath.Join(t.TempDir(), "missing"))
	if _, _, err := writeConfig(1); err == nil {
		t.Fatal("missing user config accepted")
	}
}

// TestPredictGhostLocal checks the prediction on a local sparse file against the extents the
// filesystem reports (no CRIU needed): chunk data equals the allocated data.
func TestPredictGhostLocal(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sparse")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, 4096), 1<<20); err != nil {
		t.Fatal(err)
	}
	_ = f.Sync()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	g, err := PredictGhost(p, &st)
	if err != nil {
		t.Fatal(err)
	}
	if !g.Chunked || g.Chunks < 1 || g.DataBytes > st.Blocks*512 || g.DataBytes < 4096 {
		t.Fatalf("prediction %+v for a 1 MiB sparse file with 4 KiB of data (blocks %d)", g, st.Blocks)
	}
	small := filepath.Join(t.TempDir(), "small")
	_ = os.WriteFile(small, []byte("hello"), 0o644)
	_ = unix.Stat(small, &st)
	g, err = PredictGhost(small, &st)
	if err != nil || g.Chunked || g.DataBytes != 5 {
		t.Fatalf("small: %+v %v", g, err)
	}
}

func TestAuditBadDir(t *testing.T) {
	if _, err := AuditDir(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Fatal("audit of a missing dir succeeded")
	}
	a, err := AuditDir(t.TempDir())
	if err != nil || a.Total != 0 || a.CheckBudget(0) != nil {
		t.Fatalf("empty dir: %+v %v", a, err)
	}
}

func TestScanNoProcess(t *testing.T) {
	if _, err := Scan(1 << 30); !errors.Is(err, ErrNoProcess) {
		t.Fatalf("got %v", err)
	}
}
