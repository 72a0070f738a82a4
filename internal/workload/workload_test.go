package workload

import (
	"errors"
	"os"
	"slices"
	"testing"
)

func TestNames(t *testing.T) {
	names := Names()
	for _, want := range []string{"files", "ns", "sleep", "tcp"} {
		if !slices.Contains(names, want) {
			t.Errorf("Names() = %v, missing %s", names, want)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("Names() not sorted: %v", names)
	}
	if Namespaces("ns") == 0 || Namespaces("sleep") != 0 {
		t.Errorf("Namespaces: ns=%#x sleep=%#x", Namespaces("ns"), Namespaces("sleep"))
	}
}

func TestRunUnknown(t *testing.T) {
	err := RunConfig("no-such-workload", nil, Config{})
	if !errors.Is(err, ErrUnknown) {
		t.Fatalf("err = %v, want ErrUnknown", err)
	}
}

func TestRunSetupErrorGoesToErrFile(t *testing.T) {
	dir := t.TempDir()
	ready := dir + "/ready"
	// "ns" refuses to run outside a new pid namespace when told it is already inside one.
	t.Setenv(EnvInNS, "1")
	closeInheritedFDs = false // never close the test process's own inherited fds
	defer func() { closeInheritedFDs = true }()
	err := RunConfig("ns", nil, Config{ReadyFile: ready, Dir: dir})
	if err == nil {
		t.Fatal("ns workload ran as pid != 1")
	}
	if b, rerr := readFile(ready + ".err"); rerr != nil || len(b) == 0 {
		t.Fatalf("no error file: %v", rerr)
	}
}

func TestUnescapeMountPath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/a/b", "/a/b"},
		{`/with\040space`, "/with space"},
		{`/tab\011x`, "/tab\tx"},
		{`/trailing\`, `/trailing\`},
		{`/bad\9zz`, `/bad\9zz`},
	} {
		if got := unescapeMountPath(tc.in); got != tc.want {
			t.Errorf("unescapeMountPath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzUnescapeMountPath(f *testing.F) {
	for _, s := range []string{"/", `/a\040b`, `\`, `\0`, `\777`, `/x\12`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got := unescapeMountPath(s); len(got) > len(s) {
			t.Fatalf("unescape grew %q -> %q", s, got)
		}
	})
}

func readFile(p string) ([]byte, error) { return os.ReadFile(p) }
