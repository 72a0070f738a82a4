package clone

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/criukit/criukit/internal/procfs"
)

// StateFile is written into Options.Out when the copies run: what StopDir needs to stop them.
const StateFile = "clone-state.json"

type copyState struct {
	Index     int    `json:"index"`
	CriuPid   int    `json:"criu_pid"`
	CriuStart uint64 `json:"criu_start"` // /proc/PID/stat starttime: a reused pid is never killed
	InitPid   int    `json:"init_pid"`
	InitStart uint64 `json:"init_start"`
	Netns     string `json:"netns"` // name under /run/netns
}

// saveState records the running copies in out/StateFile.
func saveState(out string, copies []*Copy) error {
	var st []copyState
	for _, c := range copies {
		st = append(st, copyState{Index: c.Index, CriuPid: c.CriuPid, CriuStart: procfs.StartTime(c.CriuPid),
			InitPid: c.InitPid, InitStart: procfs.StartTime(c.InitPid), Netns: c.netnsNam})
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, StateFile), append(b, '\n'), 0o644)
}

// ErrNoState: the directory holds no running copies (not a clone output, or already stopped).
var ErrNoState = errors.New("no running copies recorded")

// StopDir stops the copies that Clone started with output directory out: SIGKILL to each copy's
// criu (pid 1 of its pid namespace: SIGTERM is ignored there, SIGKILL takes the whole namespace
// with it), then its network namespace is deleted. Pids are checked against their recorded start
// time, so a pid reused since is never signalled. It returns one line per copy.
func StopDir(out string) ([]string, error) {
	p := filepath.Join(out, StateFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w (no %s)", out, ErrNoState, StateFile)
	}
	if err != nil {
		return nil, err
	}
	var st []copyState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	var lines []string
	for _, c := range st {
		what := "already gone"
		for _, pr := range []struct {
			pid   int
			start uint64
		}{{c.CriuPid, c.CriuStart}, {c.InitPid, c.InitStart}} {
			if pr.pid > 0 && pr.start != 0 && procfs.StartTime(pr.pid) == pr.start {
				syscall.Kill(pr.pid, syscall.SIGKILL)
				what = fmt.Sprintf("killed criu pid %d", c.CriuPid)
			}
		}
		for dl := time.Now().Add(10 * time.Second); time.Now().Before(dl); time.Sleep(20 * time.Millisecond) {
			if (c.CriuPid <= 0 || procfs.StartTime(c.CriuPid) != c.CriuStart) && (c.InitPid <= 0 || procfs.StartTime(c.InitPid) != c.InitStart) {
				break
			}
		}
		if c.Netns != "" {
			if err := exec.Command("ip", "netns", "del", c.Netns).Run(); err == nil {
				what += ", deleted netns " + c.Netns
			}
		}
		lines = append(lines, fmt.Sprintf("copy %d: %s", c.Index, what))
	}
	if err := os.Remove(p); err != nil {
		return lines, err
	}
	return lines, nil
}
