package tcplab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGolden(t *testing.T) {
	dir := t.TempDir()
	mk := func(second string) []Result {
		return []Result{
			{Name: "E01/v4", Status: "pass", Trace: []string{"A>B [S] seq=0 len=0", "B>A [S.] seq=0 ack=1 len=0", "* checkpoint A", second}},
			{Name: "E05/v4", Status: "pass", TraceVaries: true, Trace: []string{"anything " + second}},
			{Name: "E11/v4", Status: "skip"},
		}
	}
	rep, err := Golden(dir, mk("A>B [.] seq=1 ack=1 len=5"), false)
	if err != nil || rep.Mode != "record" || rep.Recorded != 2 {
		t.Fatalf("record: %+v %v", rep, err)
	}
	rep, err = Golden(dir, mk("A>B [.] seq=1 ack=1 len=5"), false)
	if err != nil || rep.Mode != "compare" || rep.Compared != 2 || len(rep.Diffs) != 0 {
		t.Fatalf("same traces: %+v %v", rep, err)
	}
	rep, err = Golden(dir, mk("A>B [.] seq=1 ack=1 len=6"), false)
	if err != nil || len(rep.Diffs) != 1 || rep.Diffs[0].Name != "E01/v4" || rep.Diffs[0].Line != 4 ||
		!strings.Contains(rep.Diffs[0].Got, "len=6") || !strings.Contains(rep.String(), "first difference at line 4") {
		t.Fatalf("changed packet: %+v %v\n%s", rep, err, rep)
	}
	// Another kernel release: move this release's traces aside and run again.
	rel := KernelRelease()
	if err := os.Rename(filepath.Join(dir, rel), filepath.Join(dir, "0.0-older")); err != nil {
		t.Fatal(err)
	}
	rep, err = Golden(dir, mk("A>B [.] seq=1 ack=1 len=6"), false)
	if err != nil || rep.Mode != "review" || rep.Against != "0.0-older" || len(rep.Diffs) != 1 || rep.Recorded != 2 {
		t.Fatalf("review: %+v %v", rep, err)
	}
	if _, err := os.Stat(filepath.Join(dir, rel, "index.json")); err != nil {
		t.Fatalf("review mode must record this release: %v", err)
	}
	// A corrupt index is an error that says what to do.
	os.WriteFile(filepath.Join(dir, rel, "index.json"), []byte("{"), 0o644)
	if _, err := Golden(dir, mk("x"), false); err == nil || !strings.Contains(err.Error(), "delete the directory") {
		t.Fatalf("corrupt index: %v", err)
	}
}
