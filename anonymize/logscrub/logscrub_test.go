package logscrub

import (
	"bytes"
	"strings"
	"testing"

	"github.com/criukit/criukit/anonymize/dict"
	"github.com/criukit/criukit/anonymize/pseudo"
)

var key = bytes.Repeat([]byte{1}, 32)

func TestLines(t *testing.T) {
	m := pseudo.New(key)
	d := dict.New()
	d.Add("env", []byte("hunter2-password"), []byte(m.Token(pseudo.CatEnv, "hunter2-password")))
	s := &Scrubber{M: m, D: d}
	p := func(x string) string { return m.Path(x, pseudo.PathOptions{}) }
	tests := []struct {
		in, want string
		gone     []string
	}{
		{"(00.000083) Running on secret-host.corp.example Linux 6.18.44-fc-v782 #1 SMP PREEMPT_DYNAMIC @0 x86_64",
			"(00.000083) Running on " + m.Host("secret-host.corp.example") + " Linux 6.18.44-fc-v782 #1 SMP PREEMPT_DYNAMIC @0 x86_64", []string{"secret-host", "corp"}},
		{"(00.010000) Error (criu/files-reg.c:2175): File tmp/xhome/alice/customer-db.sqlite has bad size 28 (expect 42)",
			"(00.010000) Error (criu/files-reg.c:2175): File " + p("tmp/xhome/alice/customer-db.sqlite") + " has bad size 28 (expect 42)", []string{"alice", "customer"}},
		{"(00.020000) unix: 	Collected: ino 26221 peer_ino 0 family    1 type    1 state 10 name /tmp/secret-home/alice/app.sock",
			"(00.020000) unix: 	Collected: ino 26221 peer_ino 0 family    1 type    1 state 10 name " + p("/tmp/secret-home/alice/app.sock"), []string{"alice"}},
		{"(00.030000) Dumping path for 5 fd via self 21 [/tmp/alice/deleted-large.bin (deleted)]",
			"(00.030000) Dumping path for 5 fd via self 21 [" + p("/tmp/alice/deleted-large.bin (deleted)") + "]", []string{"alice", "deleted-large"}},
		{"(00.040000) Remap rpath is tmp/alice/deleted-small.txt.cr.1.ghost",
			"(00.040000) Remap rpath is " + p("tmp/alice/deleted-small.txt.cr.1.ghost"), []string{"alice"}},
		{"(00.050000) Strip ' (deleted)' tag from './memfd:alice-memfd-secret (deleted)'",
			"(00.050000) Strip ' (deleted)' tag from '" + p("./memfd:alice-memfd-secret (deleted)") + "'", []string{"alice"}},
		{"(00.050001) Dumping memfd:alice-memfd-secret contents (id 0x2, shmid: 0x421, size: 20)",
			"(00.050001) Dumping memfd:" + m.Name("alice-memfd-secret") + " contents (id 0x2, shmid: 0x421, size: 20)", []string{"alice"}},
		{"(00.060000) unix:  `- Got id 0x2c ino 26224 type SOCK_DGRAM state TCP_CLOSE peer 0 (name @alice-abstract-sock dir -)",
			"(00.060000) unix:  `- Got id 0x2c ino 26224 type SOCK_DGRAM state TCP_CLOSE peer 0 (name @" + m.Name("alice-abstract-sock") + " dir -)", []string{"alice"}},
		{"(00.070000) inet: 	Collected: ino    0x68f family AF_INET    type SOCK_STREAM    port     2024 state TCP_LISTEN       src_addr 10.20.30.40",
			"", []string{"10.20.30.40"}},
		{"(00.080000) 	type tmpfs source bob-tmpfs-src mnt_id 63 s_dev 0x29 / @ ./mnt/bob-secret-tmpfs flags 0x200000 options size=1024k,mode=700",
			"(00.080000) 	type tmpfs source " + m.Name("bob-tmpfs-src") + " mnt_id 63 s_dev 0x29 / @ " + p("./mnt/bob-secret-tmpfs") + " flags 0x200000 options size=1024k,mode=700", []string{"bob"}},
		{"(00.090000) Dumping task (pid: 7359 comm: alicebot)", "(00.090000) Dumping task (pid: 7359 comm: " + m.Name("alicebot") + ")", []string{"alice"}},
		{"(00.100000) net: Found ll addr 02:42:ac:11:00:02 for veth-alice, net/ipv6/conf/veth-alice/stable_secret nr 200", "", []string{"02:42:ac:11:00:02", "veth-alice"}},
		{"(00.110000) env has hunter2-password inside", "", []string{"hunter2"}},
		{"(00.120000) Handling VMA with the following smaps entry: 55d424052000-55d424053000 r--p 00000000 fe:00 18500   /usr/lib/x86_64-linux-gnu/libffi.so.8.1.2",
			"(00.120000) Handling VMA with the following smaps entry: 55d424052000-55d424053000 r--p 00000000 fe:00 18500   /usr/lib/x86_64-linux-gnu/libffi.so.8.1.2", nil},
		{"(00.130000) Version: 4.2.1 (gitid 0)", "(00.130000) Version: 4.2.1 (gitid 0)", nil},
		{"(00.140000) 7359 fdinfo 15: pos:             0x14 flags:           100002/0x1", "(00.140000) 7359 fdinfo 15: pos:             0x14 flags:           100002/0x1", nil},
	}
	for _, tt := range tests { // harvest pass, as the command does
		s.Line(tt.in)
	}
	for _, p := range m.Pairs() {
		if p.Category == pseudo.CatName {
			d.Add("name", []byte(p.From), []byte(p.To))
		}
	}
	for _, tt := range tests {
		got := s.Line(tt.in)
		if tt.want != "" && got != tt.want {
			t.Errorf("\n in: %s\ngot: %s\nwant: %s", tt.in, got, tt.want)
		}
		for _, g := range tt.gone {
			if strings.Contains(got, g) {
				t.Errorf("%q left in %q", g, got)
			}
		}
		if len(got) > len(tt.in)+40 || !strings.HasPrefix(got, tt.in[:12]) {
			t.Errorf("timestamp/length changed: %q", got)
		}
	}
}

func FuzzLine(f *testing.F) {
	for _, s := range []string{"(00.1) x /a/b/c (deleted) name @q", "Running on h.d Linux", "10.0.0.1/24 fe80::1 aa:bb:cc:dd:ee:ff", "memfd:x comm: y source a:/b mnt_id", "net/ipv4/conf/vx0/forwarding"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if strings.Contains(line, "\n") {
			return
		}
		s := &Scrubber{M: pseudo.New(key)}
		a := s.Line(line)
		if b := (&Scrubber{M: pseudo.New(key)}).Line(line); a != b {
			t.Fatalf("not deterministic: %q %q", a, b)
		}
		var out bytes.Buffer
		if err := (&Scrubber{M: pseudo.New(key)}).Scrub(strings.NewReader(line+"\n"+line), &out); err != nil || out.String() != a+"\n"+a {
			t.Fatalf("Scrub != Line: %q vs %q (%v)", out.String(), a, err)
		}
	})
}

func TestPortsMapped(t *testing.T) {
	m := pseudo.New([]byte("0123456789abcdef0123456789abcdef"))
	s := &Scrubber{M: m, D: dict.New(), Port: func(p uint32) uint32 { return p + 1 }}
	var out strings.Builder
	in := "(00.226244) inet: \tDumping: ino 0x13bdbf family AF_INET    type SOCK_STREAM    port    16999 state TCP_LISTEN\n" +
		"(00.1) sk dst_port=443 src_port: 80\n"
	if err := s.Scrub(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if strings.Contains(got, "16999") || !strings.Contains(got, "port    17000") || !strings.Contains(got, "dst_port=444") || !strings.Contains(got, "src_port: 81") {
		t.Errorf("ports not mapped: %q", got)
	}
}
