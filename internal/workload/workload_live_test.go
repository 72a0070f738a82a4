package workload_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/workload"
)

func TestMain(m *testing.M) { harness.Main(m) }

// TestWorkloadsDumpRestore dumps every workload with the real CRIU, checks that the images of the
// objects it sets up are there, and for the restorable ones restores it and asks the restored
// process to verify its objects (SIGUSR1 check: file contents, queued data, a TCP ping-pong).
func TestWorkloadsDumpRestore(t *testing.T) {
	harness.Criu(t)
	for _, tc := range []struct {
		name, workload string
		args           []string
		netns          bool     // run in a fresh named netns (workload and criu via nsenter)
		images         []string // globs that must match in the dump
		restore        bool
	}{
		{name: "sleep", workload: "sleep", images: []string{"core-*.img", "pstree.img", "pages-*.img"}, restore: true},
		{name: "sleep-tree", workload: "sleep", args: []string{"-children", "2"}, images: []string{"core-*.img"}, restore: true},
		{name: "files", workload: "files", images: []string{"ghost-file-*.img", "pipes-data.img", "fifo-data.img",
			"sk-queues.img", "memfd.img", "pagemap-shmem-*.img", "remap-fpath.img"}, restore: true},
		{name: "tcp", workload: "tcp", images: []string{"tcp-stream-*.img"}, restore: true},
		{name: "tcp6", workload: "tcp", args: []string{"-6"}, images: []string{"tcp-stream-*.img"}, restore: true},
		{name: "tcp-in-netns", workload: "tcp", netns: true, images: []string{"tcp-stream-*.img"}, restore: true},
		{name: "ns", workload: "ns", images: []string{"netdev-*.img", "ifaddr-*.img", "route-*.img", "route6-*.img",
			"utsns-*.img", "ipcns-shm-*.img", "ipcns-msg-*.img", "ipcns-sem-*.img", "tty-info.img", "tty-data.img",
			"mountpoints-*.img", "tmpfs-dev-*.tar.gz.img", "nftables-*.img"}},
		{name: "ns-noveth", workload: "ns", args: []string{"-veth=false"}, images: []string{"utsns-*.img"}, restore: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []harness.Option
			opts = append(opts, harness.WithArgs(tc.args...))
			if tc.netns {
				opts = append(opts, harness.WithNetns(harness.NewNetns(t)))
			}
			t0 := time.Now()
			p := harness.Start(t, tc.workload, opts...)
			t1 := time.Now()
			d := p.Dump(t)
			t2 := time.Now()
			if p.Alive() {
				t.Errorf("pid %d still alive after the dump", p.Pid)
			}
			for _, g := range tc.images {
				if m, _ := filepath.Glob(filepath.Join(d.Dir, g)); len(m) == 0 {
					t.Errorf("dump of %s has no %s", tc.name, g)
				}
			}
			if ents, _ := os.ReadDir(d.Dir); len(ents) == 0 || strings.Contains(d.Log, d.Dir+"/") {
				t.Errorf("images dir %s: %d entries, log %s (must be outside)", d.Dir, len(ents), d.Log)
			}
			msg := fmtTimes(t0, t1, t2, time.Time{})
			if tc.restore {
				r := d.Restore(t)
				t3 := time.Now()
				if r.Pid != p.Pid && workload.Namespaces(tc.workload)&syscall.CLONE_NEWPID == 0 {
					t.Errorf("restored pid %d, dumped %d", r.Pid, p.Pid)
				}
				msg = fmtTimes(t0, t1, t2, t3) + "; check: " + r.Check(t)
				r.Kill()
				if r.Alive() {
					t.Errorf("restored pid %d survived Kill", r.Pid)
				}
			}
			t.Logf("%s: %s", tc.name, msg)
		})
	}
}

func fmtTimes(t0, t1, t2, t3 time.Time) string {
	s := "start " + t1.Sub(t0).Round(time.Millisecond).String() + " dump " + t2.Sub(t1).Round(time.Millisecond).String()
	if !t3.IsZero() {
		s += " restore " + t3.Sub(t2).Round(time.Millisecond).String()
	}
	return s
}

// TestCheckAnswersOnlyWhileAlive: the check answers repeatedly (the first one drains the queued
// data, later ones only ping-pong), and Kill really ends the process.
func TestCheckAnswersOnlyWhileAlive(t *testing.T) {
	harness.Criu(t)
	p := harness.Start(t, "tcp")
	if got := p.Check(t); !strings.Contains(got, "both ways") {
		t.Fatalf("check = %q", got)
	}
	// A second check must still work (queued data was drained by the first one).
	if got := p.Check(t); !strings.HasPrefix(got, "ok") {
		t.Fatalf("second check = %q", got)
	}
	p.Kill()
	if err := syscall.Kill(p.Pid, 0); err == nil {
		t.Fatalf("pid %d alive after Kill", p.Pid)
	}
	if _, err := os.Stat(filepath.Join(p.Dir, workload.CheckFile)); err != nil {
		t.Fatalf("check file: %v", err)
	}
}
