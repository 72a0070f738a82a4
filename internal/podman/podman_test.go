package podman

import (
	"strings"
	"testing"
	"time"
)

// TestCheckpointRestore: a real container is checkpointed in each compression podman offers and one
// archive restores into a running container that kept its shell variable.
func TestCheckpointRestore(t *testing.T) {
	Require(t)
	dir := t.TempDir()
	for _, comp := range []string{"zstd", "gzip", "none"} {
		c := Run(t, Name("ck"), nil, "/bin/sh", "-c", "v=kept-"+comp+"; while :; do echo $v >/tmp/v; sleep 0.2; done")
		time.Sleep(300 * time.Millisecond)
		arch := c.Checkpoint(t, dir, comp)
		if comp != "gzip" {
			continue
		}
		r, err := Restore(t, arch, Name("rs"))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		if !Running(r.Name) {
			t.Fatalf("restored container %s is not running", r.Name)
		}
		out, err := Exec(r.Name, "cat", "/tmp/v")
		if err != nil || !strings.Contains(out, "kept-gzip") {
			t.Fatalf("restored container's state: %q %v", out, err)
		}
	}
}
