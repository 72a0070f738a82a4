package migrate

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/podman"
)

// seqLines parses /tmp/seq of the test container: lines "i len" with i = 1, 2, 3, ... and len the
// length of a 4 MB shell variable; returns the last i.
func seqLines(t *testing.T, name string) int {
	t.Helper()
	out, err := podman.Exec(name, "cat", "/tmp/seq")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for k, l := range lines {
		f := strings.Fields(l)
		if len(f) != 2 || f[0] != strconv.Itoa(k+1) || f[1] != "4000000" {
			t.Fatalf("container %s: /tmp/seq line %d is %q, want \"%d 4000000\" (lost or repeated state)", name, k+1, l, k+1)
		}
	}
	return len(lines)
}

// TestMigratePodmanContainer: a busybox container counting in a shell variable (and holding a 4 MB
// one) moves in 3 rounds: podman checkpoints with criu's pages relayed (tracked rounds: unwritten
// pages go as PE_PARENT), the receiver flattens the chain into podman's archive and imports it
// under a new name. The restored container continues the same sequence in the same file: no
// number lost or repeated, the big variable intact, and it keeps counting.
func TestMigratePodmanContainer(t *testing.T) {
	t.Run("relay", func(t *testing.T) { testPodmanContainer(t, false) })
	// runc's criu gets --track-mem-uffd and --prev-images-dir through the wrapper's config file
	t.Run("criu-tracking", func(t *testing.T) { testPodmanContainer(t, true) })
}

func testPodmanContainer(t *testing.T, criuTrack bool) {
	podman.Require(t)
	criu, tracking := harness.Criu(t), "relay"
	if criuTrack {
		criu, tracking = patchedCriu(t), "criu"
	}
	src, dst := podman.Name("migsrc"), podman.Name("migdst")
	t.Cleanup(func() { podman.Remove(dst) })
	podman.Run(t, src, nil, "/bin/sh", "-c",
		`big=$(head -c 4000000 /dev/zero | tr '\0' x); i=0; while :; do i=$((i+1)); echo "$i ${#big}" >>/tmp/seq; usleep 20000; done`)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if out, err := podman.Exec(src, "wc", "-l", "/tmp/seq"); err == nil {
			if n, _ := strconv.Atoi(strings.Fields(out + " 0")[0]); n >= 5 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the container did not start counting")
		}
		time.Sleep(100 * time.Millisecond)
	}
	rv := &Receiver{Dir: t.TempDir(), Podman: podman.Global, Log: testLog{t}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Migrate(ctx, Options{Container: src, Podman: podman.Global, ContainerName: dst, Rounds: 3,
		Pause: 300 * time.Millisecond, Dial: Local(rv), Criu: criu, Tracking: tracking})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Rounds {
		t.Logf("round %d: written %d, criu pages %d, sent %d, parent %d, %d bytes", r.Round, r.Written, r.Pages, r.Sent, r.Parent, r.WireBytes)
	}
	if len(res.Rounds) != 3 || res.Container != dst || res.Pid <= 0 || res.Tracking != tracking {
		t.Fatalf("result: %d rounds, container %q, pid %d, tracking %q", len(res.Rounds), res.Container, res.Pid, res.Tracking)
	}
	if criuTrack {
		for _, r := range res.Rounds[1:] {
			// criu read only what it sent; the PE_PARENT pages (the 4 MB variable of the shell)
			// it never read (a usleep child, new every round, is read in full)
			if r.Pages != r.Sent || r.Pages >= res.Rounds[0].Pages || r.Parent < 900 {
				t.Errorf("round %d: criu read %d pages of %d: it did not skip the unwritten ones", r.Round, r.Pages, res.Rounds[0].Pages)
			}
		}
	}
	for _, r := range res.Rounds[1:] {
		if r.Parent == 0 || (!criuTrack && r.Sent >= r.Pages) {
			t.Fatalf("round %d sent %d of %d pages, %d as PE_PARENT: the container's tree was not tracked", r.Round, r.Sent, r.Pages, r.Parent)
		}
	}
	if res.Rounds[0].Pages < 4000000/4096 {
		t.Fatalf("round 0 has %d pages: the 4 MB variable is not in it", res.Rounds[0].Pages)
	}
	if out, _ := podman.Cmd("inspect", "--format", "{{.State.Status}}", src); strings.TrimSpace(out) == "running" {
		t.Fatalf("source container %s still running after the last round", src)
	}
	if !podman.Running(dst) {
		t.Fatalf("restored container %s is not running", dst)
	}
	n0 := seqLines(t, dst)
	time.Sleep(time.Second)
	n1 := seqLines(t, dst)
	if n1 <= n0 {
		t.Fatalf("restored container stopped counting (%d lines, then %d)", n0, n1)
	}
	t.Logf("restored %s (pid %d): %d numbers, then %d; frozen %.2fs", dst, res.Pid, n0, n1, res.FrozenSeconds)
}

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

var _ = fmt.Sprint
