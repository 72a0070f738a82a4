package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/testenv"
)

// dumpOddTree dumps a real tree holding what zdtm found x choking on: a zombie (no ids-PID.img), a
// task with an empty fd table, and a packet socket.
func dumpOddTree(t *testing.T) string {
	testenv.Root(t)
	criu := harness.Criu(t)
	py := testenv.Command(t, "/usr/bin/python3")
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	script := py + ` -c 'import os; os.closerange(0, 65536); os.execv("/bin/sleep", ["sleep", "1000"])' &
` + py + ` -c 'import socket,time,os
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
open("` + ready + `", "w").close()
time.sleep(1000)' &
while [ ! -e ` + ready + ` ]; do sleep 0.05; done
true & exec sleep 1000`
	cmd := exec.Command("setsid", "sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: false}
	pid := startTree(t, cmd, ready, 20*time.Second)
	time.Sleep(300 * time.Millisecond) // the exec of sleep, the zombie's exit
	return dumpTree(t, criu, pid, dir, 2*time.Minute)
}

// TestExploreZombieEmptyFdsPacket: x fds|mems|rss|sk show the zombie as one, handle the task with no
// fds, and x sk shows no inode for packet sockets (the image has none; it printed the file id).
func TestExploreZombieEmptyFdsPacket(t *testing.T) {
	imgs := dumpOddTree(t)
	for _, what := range []string{"ps", "fds", "mems", "rss", "sk"} {
		out, err := runCLI(t, nil, "x", imgs, what)
		if err != nil {
			t.Fatalf("x %s: %v\n%s", what, err, out)
		}
		if what == "ps" && !strings.Contains(out, "Zombie") && !strings.Contains(out, "true") {
			t.Logf("x ps:\n%s", out)
		}
		if what != "ps" && !strings.Contains(out, "(zombie)") {
			t.Errorf("x %s shows no zombie:\n%s", what, out)
		}
		if what == "sk" {
			if !strings.Contains(out, "packet") || !strings.Contains(out, "ifindex") {
				t.Errorf("x sk: no packet socket line with ifindex:\n%s", out)
			}
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, "packet") && strings.Contains(l, " ino ") {
					t.Errorf("x sk prints an ino for a packet socket: %q", l)
				}
			}
		}
	}
	out, err := runCLI(t, nil, "x", imgs, "fds", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var tasks []struct {
		Pid    int               `json:"pid"`
		Zombie bool              `json:"zombie"`
		FDs    []json.RawMessage `json:"fds"`
	}
	if err := json.Unmarshal([]byte(out), &tasks); err != nil {
		t.Fatal(err)
	}
	var zombies, emptyFds int
	for _, tk := range tasks {
		if tk.Zombie {
			zombies++
		} else if len(tk.FDs) == 2 { // only cwd and root
			emptyFds++
		}
	}
	if zombies != 1 || emptyFds != 1 {
		t.Errorf("want 1 zombie and 1 task with only cwd/root, got %d and %d:\n%s", zombies, emptyFds, out)
	}
}
