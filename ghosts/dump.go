package ghosts

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/criukit/criukit/internal/criurun"
)

// Environment variables honoured by Dump (criukit dump).
const (
	EnvGhostLimit = "CRIUKIT_GHOST_LIMIT" // per-file ghost limit passed to criu (CRIU syntax: 4M, 512K, bytes)
	EnvCopyBudget = "CRIUKIT_COPY_BUDGET" // total bytes of copies of file data, enforced by criukit
	EnvCriuConfig = "CRIU_CONFIG_FILE"    // CRIU's own: one extra config file
)

// Ways the ghost limit reaches criu.
const (
	ViaFlag   = "flag"   // --ghost-limit N on the command line
	ViaConfig = "config" // a generated config file named by CRIU_CONFIG_FILE ("ghost-limit N")
)

// DumpConfig configures Dump.
type DumpConfig struct {
	Pid        int
	ImagesDir  string
	LogFile    string   // "" = ImagesDir/dump.log
	Args       []string // other criu dump arguments, passed as they are
	Criu       string   // "" = criurun.Find
	GhostLimit int64    // < 0: not set (CRIU's default 1 MiB applies)
	CopyBudget int64    // < 0: no budget
	Via        string   // ViaFlag (default) or ViaConfig
	// NoPreflight skips the prediction (and so the early ghost-limit and budget refusals); the
	// post-dump audit still runs when a budget is set.
	NoPreflight bool
	Netns       string
}

// DumpResult tells what Dump did.
type DumpResult struct {
	Report     *Report `json:"prediction,omitempty"`
	Audit      *Audit  `json:"audit,omitempty"`
	GhostLimit int64   `json:"ghost_limit"` // effective limit (CRIU's default when not set)
	Via        string  `json:"via,omitempty"`
	ConfigFile string  `json:"config_file,omitempty"`
	Log        string  `json:"log"`
}

// LimitsFromEnv reads CRIUKIT_GHOST_LIMIT and CRIUKIT_COPY_BUDGET (-1 when unset).
func LimitsFromEnv(getenv func(string) string) (ghostLimit, budget int64, err error) {
	ghostLimit, budget = -1, -1
	if v := getenv(EnvGhostLimit); v != "" {
		if ghostLimit, err = ParseSize(v); err != nil {
			return -1, -1, fmt.Errorf("%s: %w", EnvGhostLimit, err)
		}
	}
	if v := getenv(EnvCopyBudget); v != "" {
		if budget, err = ParseSize(v); err != nil {
			return -1, -1, fmt.Errorf("%s: %w", EnvCopyBudget, err)
		}
	}
	return ghostLimit, budget, nil
}

// GhostLimitError is the preflight's refusal: ghosts CRIU would reject with this limit.
type GhostLimitError struct {
	Limit int64
	Over  []Item
	Need  int64 // smallest limit that lets the dump pass
}

func (e *GhostLimitError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "preflight: %d deleted file(s) over the ghost limit %s; criu would fail with \"Can't dump ghost file ... increase limit\"", len(e.Over), FormatSize(e.Limit))
	for _, it := range e.Over {
		fmt.Fprintf(&b, "\n  pid %d %s %s: %s bytes allocated", it.Pid, it.Where, it.Path, FormatSize(it.Allocated))
	}
	fmt.Fprintf(&b, "\nWhat to do: set --ghost-limit %d (or %s=%d), use --link-remap, or close the deleted files; --no-preflight lets criu decide.", e.Need, EnvGhostLimit, e.Need)
	return b.String()
}

func (e *GhostLimitError) Unwrap() error { return ErrOverGhostLimt }

// Dump runs the preflight (prediction vs ghost limit and copy budget), criu dump with the ghost
// limit passed by flag or by a generated CRIU_CONFIG_FILE, and the post-dump audit of the copies.
func Dump(ctx context.Context, c DumpConfig) (*DumpResult, error) {
	res := &DumpResult{GhostLimit: c.GhostLimit}
	if res.GhostLimit < 0 {
		res.GhostLimit = DefaultGhostLimit
	}
	if !c.NoPreflight {
		r, err := Scan(c.Pid)
		if err != nil {
			return res, fmt.Errorf("preflight: %w", err)
		}
		res.Report = r
		if over := r.OverLimit(res.GhostLimit); len(over) > 0 {
			return res, &GhostLimitError{Limit: res.GhostLimit, Over: over, Need: r.MinGhostLimit}
		}
		if err := r.CheckBudget(c.CopyBudget); err != nil {
			return res, err
		}
	}
	o := criurun.Opts{Criu: c.Criu, ImagesDir: c.ImagesDir, LogFile: c.LogFile, Netns: c.Netns, Args: append([]string(nil), c.Args...)}
	if c.GhostLimit >= 0 {
		res.Via = c.Via
		switch c.Via {
		case ViaFlag, "":
			res.Via = ViaFlag
			o.Args = append(o.Args, "--ghost-limit", strconv.FormatInt(c.GhostLimit, 10))
		case ViaConfig:
			cfg, cleanup, err := writeConfig(c.GhostLimit)
			if err != nil {
				return res, err
			}
			defer cleanup()
			res.ConfigFile = cfg
			o.Env = append(o.Env, EnvCriuConfig+"="+cfg)
		default:
			return res, fmt.Errorf("unknown way %q to pass the ghost limit (want %s or %s)", c.Via, ViaFlag, ViaConfig)
		}
	}
	res.Log = o.LogFile
	if res.Log == "" {
		if abs, err := filepath.Abs(c.ImagesDir); err == nil {
			res.Log = filepath.Join(abs, "dump.log")
		}
	}
	if err := criurun.Dump(ctx, c.Pid, o); err != nil {
		return res, err
	}
	if c.CopyBudget >= 0 {
		a, err := AuditDir(c.ImagesDir)
		if err != nil {
			return res, err
		}
		res.Audit = a
		if err := a.CheckBudget(c.CopyBudget); err != nil {
			return res, err
		}
	}
	return res, nil
}

// writeConfig writes a CRIU config file with the ghost limit. CRIU reads only one
// CRIU_CONFIG_FILE, so a file the user already named there is copied in first (ours comes last
// and wins).
func writeConfig(limit int64) (string, func(), error) {
	f, err := os.CreateTemp("", "criukit-criu-*.conf")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.Remove(f.Name()) }
	var b strings.Builder
	if prev := os.Getenv(EnvCriuConfig); prev != "" {
		old, err := os.ReadFile(prev)
		if err != nil {
			f.Close()
			cleanup()
			return "", nil, fmt.Errorf("%s=%s: %w", EnvCriuConfig, prev, err)
		}
		fmt.Fprintf(&b, "# from %s\n%s\n", prev, strings.TrimRight(string(old), "\n"))
	}
	fmt.Fprintf(&b, "# written by criukit dump (%s)\nghost-limit %d\n", EnvGhostLimit, limit)
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		cleanup()
		return "", nil, err
	}
	if err := f.Close(); err != nil {
		cleanup()
		return "", nil, err
	}
	return f.Name(), cleanup, nil
}
