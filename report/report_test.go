package report

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseOSRelease(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]string
	}{
		{"ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
			map[string]string{"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"}},
		{"# comment\n\nID='fedora'\nNAME=\"a \\\"q\\\"\"\nbroken\n=x\n", map[string]string{"ID": "fedora", "NAME": `a "q"`}},
		{"", map[string]string{}},
	} {
		if got := ParseOSRelease(strings.NewReader(tc.in)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseOSRelease(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func FuzzParseOSRelease(f *testing.F) {
	f.Add("ID=debian\nVERSION_ID=\"12\"\n")
	f.Add("X='\n=\n\"")
	f.Fuzz(func(t *testing.T, s string) { ParseOSRelease(strings.NewReader(s)) })
}

func TestScanLog(t *testing.T) {
	for _, tc := range []struct {
		name, in   string
		cmds, cfgs []string
	}{
		{"runc", `time="x" level=debug msg="exec /usr/sbin/criu swrk 3"` + "\n", []string{"/usr/sbin/criu swrk 3"}, nil},
		{"shell", "+ criu dump -t 12 -D /tmp/d -v4 --tcp-established\n", []string{"criu dump -t 12 -D /tmp/d -v4 --tcp-established"}, nil},
		{"opts first", "criu -v4 restore -D /x\n", []string{"criu -v4 restore -D /x"}, nil},
		{"config", "Parsing config file /etc/criu/runc.conf\nCRIU_CONFIG_FILE=/root/my.conf criu dump -t 1\n",
			[]string{"criu dump -t 1"}, []string{"/etc/criu/runc.conf", "/root/my.conf"}},
		{"none", "(00.1) Error (criu/x.c:1): criukit is not criu\n(00.2) Version: 4.2.1\n", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmds, cfgs := ScanLog(strings.NewReader(tc.in))
			if !reflect.DeepEqual(cmds, tc.cmds) || !reflect.DeepEqual(cfgs, tc.cfgs) {
				t.Errorf("ScanLog = %q %q, want %q %q", cmds, cfgs, tc.cmds, tc.cfgs)
			}
		})
	}
}

func FuzzScanLog(f *testing.F) {
	f.Add("+ criu dump -t 12 --config /etc/x.conf\n")
	f.Add(strings.Repeat("a", 70000) + "\ncriu restore\n")
	f.Fuzz(func(t *testing.T, s string) { ScanLog(strings.NewReader(s)) })
}

func TestExcerpt(t *testing.T) {
	var log []string
	for i := 0; i < 300; i++ {
		log = append(log, "(00.1) line")
	}
	log[2] = "(00.1) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted"
	log[100] = "(00.2) Error (criu/files-reg.c:1031): Can't dump ghost file /a of 4096 size, increase limit"
	log[110] = "(00.3) Error (criu/cr-dump.c:1975): Dumping FAILED."
	ex, last := Excerpt(strings.Join(log, "\n"), ExcerptBefore, ExcerptAfter)
	if last != log[110] || len(ex) != ExcerptBefore+11+ExcerptAfter || ex[ExcerptBefore] != log[100] {
		t.Fatalf("excerpt: last %q, %d lines, [%d]=%q", last, len(ex), ExcerptBefore, ex[ExcerptBefore])
	}
	log[290] = log[110]
	ex, _ = Excerpt(strings.Join(log, "\n"), ExcerptBefore, ExcerptAfter)
	if len(ex) != ExcerptMax || !strings.Contains(strings.Join(ex, "\n"), "lines left out") || ex[len(ex)-1-ExcerptAfter] != log[290] {
		t.Fatalf("long excerpt: %d lines", len(ex))
	}
	if ex, last := Excerpt(log[2], 5, 5); ex != nil || last != "" {
		t.Fatalf("harmless line is an error: %q", ex)
	}
}

func TestErrorText(t *testing.T) {
	for in, want := range map[string]string{
		"(00.086444) Error (criu/files-reg.c:1031): Can't dump ghost file": "Can't dump ghost file",
		"(00.1) BUG at criu/mem.c:45":                                      "BUG at criu/mem.c:45",
		"plain":                                                            "plain",
	} {
		if got := ErrorText(in); got != want {
			t.Errorf("ErrorText(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEnvTextRoundTrip(t *testing.T) {
	e := &Env{CriuVersion: "Version: 4.2.1", CheckAll: "Looks good.\n\n", Commands: []string{"criu dump -D /x"},
		ConfigFiles: []ConfigFile{{"/etc/criu/default.conf", "tcp-established\n#####-9-#####x\n"}}}
	got, err := parseEnvText(e, envText(e))
	if err != nil {
		t.Fatal(err)
	}
	if got.CheckAll != "Looks good." || got.Commands[0] != e.Commands[0] || got.ConfigFiles[0].Content != "tcp-established\n#####-9-#####x" {
		t.Fatalf("round trip: %+v", got)
	}
	if _, err := parseEnvText(e, "nothing"); err == nil {
		t.Fatal("want an error for a text without sections")
	}
}

func TestWriteTarGzDeterministic(t *testing.T) {
	m := map[string][]byte{"b/x.img": []byte("x"), "a.md": []byte("hello"), "b/c/y": nil}
	names := []string{"a.md", "b/c/y", "b/x.img"}
	var b1, b2 bytes.Buffer
	if err := WriteTarGz(&b1, names, m); err != nil {
		t.Fatal(err)
	}
	if err := WriteTarGz(&b2, names, m); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1.Bytes(), b2.Bytes()) {
		t.Fatal("two writes differ")
	}
	// gzip header: no name flag, mtime 0
	h := b1.Bytes()
	if h[3]&0x08 != 0 || !bytes.Equal(h[4:8], []byte{0, 0, 0, 0}) {
		t.Fatalf("gzip header has a name or mtime: % x", h[:10])
	}
	p := filepath.Join(t.TempDir(), "b.tar.gz")
	os.WriteFile(p, h, 0o644)
	got, order, err := ReadBundle(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{Prefix, Prefix + "a.md", Prefix + "b/", Prefix + "b/c/", Prefix + "b/c/y", Prefix + "b/x.img"}
	if !reflect.DeepEqual(order, want) || string(got["a.md"]) != "hello" {
		t.Fatalf("members %q", order)
	}
}

func TestNewIssueURL(t *testing.T) {
	is := Issue{Title: "criu: Can't dump ghost file", Body: strings.Repeat("line with `code` & ünïcode\n", 2000)}
	u := NewIssueURL("checkpoint-restore/criu", is)
	if len(u) > MaxURLLen {
		t.Fatalf("URL has %d bytes", len(u))
	}
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := pu.Query()
	if pu.Host != "github.com" || pu.Path != "/checkpoint-restore/criu/issues/new" || q.Get("title") != is.Title ||
		!strings.Contains(q.Get("body"), "truncated") || !strings.HasPrefix(is.Body, strings.SplitN(q.Get("body"), "\n\n[...", 2)[0]) {
		t.Fatalf("bad URL %s", u[:200])
	}
	short := NewIssueURL("o/r", Issue{Title: "t", Body: "b"})
	if short != "https://github.com/o/r/issues/new?title=t&body=b" {
		t.Fatal(short)
	}
	if got := GHCommand("o/r", "it's", "-"); got != `gh issue create --repo 'o/r' --title 'it'\''s' --body-file '-'` {
		t.Fatal(got)
	}
}

func TestSubmit(t *testing.T) {
	is := Issue{Title: "criu: Can't dump ghost file", Body: "**Description**\n\nbody"}
	for _, tc := range []struct {
		name   string
		status int
		answer string
		repo   string
		token  string
		ok     bool
	}{
		{"created", http.StatusCreated, `{"number":42,"html_url":"https://github.com/o/r/issues/42"}`, "o/r", "tok123", true},
		{"forbidden", http.StatusForbidden, `{"message":"Resource not accessible by integration"}`, "o/r", "tok123", false},
		{"bad repo", 0, "", "o/r/x", "tok123", false},
		{"no token", 0, "", "o/r", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls++
				if r.Method != http.MethodPost || r.URL.Path != "/repos/"+tc.repo+"/issues" {
					t.Errorf("request %s %s", r.Method, r.URL.Path)
				}
				if got := r.Header.Get("Authorization"); got != "Bearer "+tc.token {
					t.Errorf("Authorization %q", got)
				}
				if ct := r.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
				b, _ := io.ReadAll(r.Body)
				var body map[string]string
				if err := json.Unmarshal(b, &body); err != nil || body["title"] != is.Title || body["body"] != is.Body || len(body) != 2 {
					t.Errorf("body %s (%v)", b, err)
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.answer)
			}))
			defer srv.Close()
			cr, err := Submit(context.Background(), srv.Client(), srv.URL+"/", tc.token, tc.repo, is)
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v", err)
			}
			if tc.ok && (cr.Number != 42 || cr.HTMLURL != "https://github.com/o/r/issues/42") {
				t.Fatalf("created %+v", cr)
			}
			if !tc.ok && tc.status != 0 && !strings.Contains(err.Error(), "Resource not accessible") {
				t.Fatalf("error does not carry GitHub's message: %v", err)
			}
			if want := map[bool]int{true: 1, false: 0}[tc.status != 0]; calls != want {
				t.Fatalf("%d requests, want %d", calls, want)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Build(context.Background(), filepath.Join(dir, "x.tar.gz"), Options{}); err != ErrNoInput {
		t.Fatalf("no input: %v", err)
	}
	exists := filepath.Join(dir, "exists")
	os.WriteFile(exists, nil, 0o644)
	log := filepath.Join(dir, "dump.log")
	os.WriteFile(log, []byte("(00.1) Error (criu/cr-dump.c:1975): Dumping FAILED.\n"), 0o644)
	if _, err := Build(context.Background(), exists, Options{Logs: []string{log}, Level: 2}); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("existing bundle: %v", err)
	}
	if _, err := Build(context.Background(), filepath.Join(dir, "y"), Options{Logs: []string{filepath.Join(dir, "nope.log")}, Level: 2}); err == nil {
		t.Fatal("missing log: no error")
	}
}

func FuzzExcerpt(f *testing.F) {
	f.Add("(00.1) Error (criu/a.c:1): x\n(00.2) line\n")
	f.Add("BUG at criu/mem.c:45\n\n\n")
	f.Fuzz(func(t *testing.T, s string) {
		ex, last := Excerpt(s, ExcerptBefore, ExcerptAfter)
		if len(ex) > ExcerptMax || (last == "") != (ex == nil) {
			t.Fatalf("excerpt of %d lines, last %q", len(ex), last)
		}
		ErrorText(last)
	})
}

// TestBuildLogsOnly: a logs-only bundle (no criu run: Env given) maps a path the same way in the
// log and in the command line and config file, and names the known issue.
func TestBuildLogsOnly(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "dump.log")
	const secretPath = "/home/alice-private/app/ghost-data.bin"
	os.WriteFile(log, []byte("(00.000214) Running on somehost Linux 6.18 #1 x86_64\n"+
		"(00.086442) Dumping path for 8 fd via self 24 ["+secretPath+" (deleted)]\n"+
		"(00.086444) Error (criu/files-reg.c:1031): Can't dump ghost file "+secretPath+" of 4096 size, increase limit\n"+
		"(00.087137) Error (criu/cr-dump.c:1975): Dumping FAILED.\n"), 0o644)
	env := &Env{CriuVersion: "Version: 4.2.1", CheckAll: "Looks good.", KernelRelease: "6.18.0", KernelVersion: "#1 SMP", Arch: "x86_64",
		Commands:    []string{"criu dump -t 1 -D /home/alice-private/app/imgs --ghost-limit 1K"},
		ConfigFiles: []ConfigFile{{"/home/alice-private/app/criu.conf", "images-dir " + secretPath + "\n"}}}
	out := filepath.Join(dir, "r.tar.gz")
	res, err := Build(context.Background(), out, Options{Logs: []string{log, log}, Level: 2, Key: bytes.Repeat([]byte("x"), 32), Env: env})
	if err != nil {
		t.Fatal(err)
	}
	members, _, err := ReadBundle(out)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range members {
		for _, w := range []string{"alice-private", "somehost"} {
			if bytes.Contains(b, []byte(w)) {
				t.Errorf("%s leaks %q", name, w)
			}
		}
	}
	se := res.Summary.Env
	logText := string(members["logs/dump.log"])
	tok := strings.TrimSuffix(strings.Fields(se.ConfigFiles[0].Content)[1], "\n")
	if len(tok) != len(secretPath) || !strings.Contains(logText, tok) {
		t.Errorf("config file path token %q is not the log's (%q)", tok, logText)
	}
	if res.Summary.Findings[0].ID != "ghost-limit" || !strings.Contains(string(members["ISSUE.md"]), "`ghost-limit`") {
		t.Errorf("findings %+v", res.Summary.Findings)
	}
	if len(res.Summary.Logs) != 1 || len(res.Manifest.Dropped) != 0 || env.CriuVersion != "Version: 4.2.1" {
		t.Errorf("logs %v dropped %v", res.Summary.Logs, res.Manifest.Dropped)
	}
}
