package criurun

import (
	"reflect"
	"strings"
	"testing"
)

func TestCutHasArg(t *testing.T) {
	for _, tc := range []struct {
		in, want []string
		found    bool
	}{
		{[]string{"-t", "1", "--cow", "-D", "d"}, []string{"-t", "1", "-D", "d"}, true},
		{[]string{"-t", "1", "-D", "d"}, []string{"-t", "1", "-D", "d"}, false},
		{[]string{"--cow=x", "--cow"}, []string{"--cow=x"}, true},
	} {
		got, found := CutArg(tc.in, "--cow")
		if !reflect.DeepEqual(got, tc.want) || found != tc.found {
			t.Errorf("CutArg(%q) = %q, %v; want %q, %v", tc.in, got, found, tc.want, tc.found)
		}
	}
	if !HasArg([]string{"--ghost-limit=4M"}, "--ghost-limit") || HasArg([]string{"--ghost-limits"}, "--ghost-limit") {
		t.Error("HasArg long")
	}
	if !HasArg([]string{"-t1234"}, "-t") || HasArg([]string{"--tree"}, "-t") {
		t.Error("HasArg short")
	}
}

// TestParseArgs: the one parser of criu command lines (dump, cow dump) reads every spelling criu
// accepts for -t/-D/-o, keeps criukit's own options apart and passes the rest through in order.
func TestParseArgs(t *testing.T) {
	own := map[string]bool{"--via": true, "--json": false}
	for _, args := range [][]string{
		{"-t", "42", "-D", "d", "-o", "l", "--tcp-established", "--via", "post-dump", "--json", "-v4", "--ext-unix-sk"},
		{"--tree=42", "--images-dir=d", "--log-file=l", "--tcp-established", "--via=post-dump", "--json", "-vvv", "--ext-unix-sk"},
		{"-t42", "-Dd", "-ol", "--tcp-established", "--verbosity", "4", "--via", "post-dump", "--json", "--ext-unix-sk"},
	} {
		p, err := ParseArgs(args, own)
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		if p.Pid != 42 || p.ImagesDir != "d" || p.LogFile != "l" || p.Own["--via"] != "post-dump" || len(p.Own) != 2 ||
			!reflect.DeepEqual(p.Pass, []string{"--tcp-established", "--ext-unix-sk"}) {
			t.Errorf("%q: %+v", args, p)
		}
	}
	for _, bad := range [][]string{{"-t"}, {"-t", "x"}, {"--via"}, {"--json=1"}, {"-t", "0"}} {
		if _, err := ParseArgs(bad, own); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if p, _ := ParseArgs([]string{"--help"}, nil); !p.Help {
		t.Error("--help")
	}
}

// FuzzParseArgs: any command line parses or errors, never panics, and nothing is lost: every
// argument ends up read or passed through.
func FuzzParseArgs(f *testing.F) {
	f.Add("-t 1 -D d --via x --json --tcp-established -v4")
	f.Add("-t1 --images-dir=d --log-file l --verbosity 4 --via=")
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Fields(line)
		p, err := ParseArgs(args, map[string]bool{"--via": true, "--json": false})
		if err != nil {
			return
		}
		if len(p.Pass) > len(args) {
			t.Fatalf("%q: more passed through than given: %q", args, p.Pass)
		}
	})
}

// A relative -o is relative to the work dir, which defaults to the images dir (as CRIU reads it):
// zdtm passes `-D DIR -o dump.log` and reads DIR/dump.log.
func TestRelativeLogFile(t *testing.T) {
	for _, tc := range []struct {
		args []string
		log  string
		want string
	}{
		{nil, "dump.log", "/imgs/dump.log"},
		{nil, "/var/log/x.log", "/var/log/x.log"},
		{[]string{"-W", "/work"}, "dump.log", "/work/dump.log"},
		{[]string{"--work-dir=/w2"}, "d.log", "/w2/d.log"},
		{nil, "", "/imgs/restore.log"},
	} {
		o := Opts{ImagesDir: "/imgs", LogFile: tc.log, Args: tc.args}
		if err := o.prepare("restore.log"); err != nil {
			t.Fatal(err)
		}
		if o.LogFile != tc.want {
			t.Errorf("-o %q with %v: log at %q, want %q", tc.log, tc.args, o.LogFile, tc.want)
		}
	}
}
