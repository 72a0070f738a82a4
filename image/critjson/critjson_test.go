package critjson

import (
	"bytes"
	"encoding/base64"
	"errors"
	"math/rand"
	"os/exec"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	ipc_sem "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-sem"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pipe-data"
	sk_inet "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-inet"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/internal/testenv"
	"google.golang.org/protobuf/proto"
)

func u32(v uint32) *uint32 { return &v }
func u64(v uint64) *uint64 { return &v }

func mustMarshal(t *testing.T, img *image.Image, o Options) string {
	t.Helper()
	b, err := Marshal(img, o)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func imgOf(t *testing.T, desc string, extra []byte, msgs ...proto.Message) *image.Image {
	d := image.DescByName(desc)
	if d == nil {
		t.Fatalf("no desc %s", desc)
	}
	img := &image.Image{Name: "x", Desc: d, Head: image.DefaultHead(d)}
	for _, m := range msgs {
		img.Entries = append(img.Entries, &image.Entry{Msg: m, Extra: extra})
	}
	return img
}

// TestPrettyForms checks crit's field-specific representations, and that they parse back.
func TestPrettyForms(t *testing.T) {
	v := &vma.VmaEntry{Start: u64(0x400000), End: u64(0x401000), Pgoff: u64(0), Shmid: u64(0),
		Prot: u32(5), Flags: u32(0x22), Status: u32(1 | 1<<9 | 1<<20), Fd: new(int64)}
	isk := &sk_inet.InetSkEntry{Id: u32(1), Ino: u32(2), Family: u32(10), Type: u32(1), Proto: u32(6), State: u32(99),
		SrcPort: u32(80), DstPort: u32(0), Flags: u32(0x800), Backlog: u32(0),
		SrcAddr: []uint32{0, 0, 0, 0x01000000}, DstAddr: []uint32{0x0100007f}}
	tests := []struct {
		name string
		img  *image.Image
		want []string // substrings of the --pretty output
		not  []string
	}{
		{"vma", imgOf(t, "VMAS", nil, v), []string{`"start": "0x400000"`, `"prot": "PROT_READ | PROT_EXEC"`,
			`"flags": "MAP_PRIVATE | MAP_ANON"`, `"status": "VMA_AREA_REGULAR | VMA_ANON_PRIVATE | 0x100000"`}, nil},
		{"inet", imgOf(t, "INETSK", nil, isk), []string{`"::1"`, `"127.0.0.1"`, `"family": "INET6"`, `"proto": "TCP"`, `"state": 99`, `"flags": "0x800"`}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := mustMarshal(t, tc.img, Options{Pretty: true})
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("missing %q in\n%s", w, out)
				}
			}
			back, err := Unmarshal([]byte(out), "")
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range back.Entries {
				if !proto.Equal(e.Msg, tc.img.Entries[i].Msg) {
					t.Errorf("entry %d: %v != %v", i, e.Msg, tc.img.Entries[i].Msg)
				}
			}
		})
	}
}

// TestLossless: unknown fields, odd padding and unknown enum values survive the JSON.
func TestLossless(t *testing.T) {
	pd := &pipe_data.PipeDataEntry{PipeId: u32(1), Bytes: u32(3), Size: u32(4096)}
	pd.ProtoReflect().SetUnknown([]byte{0xa8, 0x06, 0x07}) // field 101 varint 7
	fe := &fdinfo.FdinfoEntry{Id: u32(1), Flags: u32(0), Type: fdinfo.FdTypes(77).Enum(), Fd: u32(3)}
	sem := &ipc_sem.IpcSemEntry{Desc: nil, Nsems: u32(3)}
	tests := []struct {
		name string
		img  *image.Image
	}{
		{"unknown-field", imgOf(t, "PIPES_DATA", []byte("abc"), pd)},
		{"unknown-enum", imgOf(t, "FDINFO", nil, fe)},
		{"sem-dirty-padding", imgOf(t, "IPCNS_SEM", []byte{1, 0, 2, 0, 3, 0, 0xff, 0xff}, sem)},
		{"head", func() *image.Image {
			i := imgOf(t, "PIPES_DATA", []byte("abc"), pd)
			i.Head = []uint32{0x56453709}
			return i
		}()},
	}
	for _, tc := range tests {
		for _, pretty := range []bool{false, true} {
			js := mustMarshal(t, tc.img, Options{Pretty: pretty})
			back, err := Unmarshal([]byte(js), "")
			if err != nil {
				t.Fatalf("%s: %v\n%s", tc.name, err, js)
			}
			if len(back.Head) != len(tc.img.Head) || back.Head[0] != tc.img.Head[0] {
				t.Errorf("%s: head %v != %v", tc.name, back.Head, tc.img.Head)
			}
			for i, e := range back.Entries {
				o := tc.img.Entries[i]
				if !proto.Equal(e.Msg, o.Msg) || !bytes.Equal(e.Extra, o.Extra) {
					t.Errorf("%s pretty=%v: entry %d differs: %v %q vs %v %q\n%s", tc.name, pretty, i, e.Msg, e.Extra, o.Msg, o.Extra, js)
				}
			}
		}
	}
}

func TestFormatIP(t *testing.T) {
	// expected strings are Python 3.11's ipaddress.IPv6Address(...).compressed
	for _, want := range []string{"127.0.0.1", "::", "::1", "fe80::42:acff:fe11:2", "::ffff:7f00:1",
		"2001:100:0:0:100::", "1::2:0:0:3:4", "1:2:3:4:5:6:7:0", "0:1::", "10.20.30.40"} {
		w, err := parseIP(want)
		if err != nil {
			t.Fatalf("parseIP(%s): %v", want, err)
		}
		msg := &sk_inet.InetSkEntry{SrcAddr: w}
		l := msg.ProtoReflect().Get(msg.ProtoReflect().Descriptor().Fields().ByName("src_addr")).List()
		if got := formatIP(l); got != want {
			t.Errorf("formatIP(%x) = %s, want %s", w, got, want)
		}
	}
	if w, _ := parseIP("127.0.0.1"); len(w) != 1 || w[0] != 0x0100007f {
		t.Errorf("127.0.0.1 -> %x, want network order 0x0100007f", w)
	}
}

// TestQuotedPrintablePython compares qpEncode/qpDecode with Python's quopri on random names.
func TestQuotedPrintablePython(t *testing.T) {
	py := testenv.Command(t, "python3")
	r := rand.New(rand.NewSource(1))
	alphabet := []byte("ab =.\t\r\n\x00\xff~_")
	var inputs [][]byte
	inputs = append(inputs, []byte("\x00abstract-sock"), []byte("/tmp/x.sock"), []byte(strings.Repeat("a", 200)),
		[]byte("a \n"), []byte("."), []byte("x\r\ny"), []byte(strings.Repeat("=", 40)))
	for i := 0; i < 200; i++ {
		b := make([]byte, r.Intn(120))
		for j := range b {
			if r.Intn(3) == 0 {
				b[j] = byte(r.Intn(256))
			} else {
				b[j] = alphabet[r.Intn(len(alphabet))]
			}
		}
		inputs = append(inputs, b)
	}
	var in strings.Builder
	for _, b := range inputs {
		in.WriteString(base64.StdEncoding.EncodeToString(b) + "\n")
	}
	cmd := exec.Command(py, "-c", `import sys,quopri,base64
for l in sys.stdin:
    print(base64.b64encode(quopri.encodestring(base64.b64decode(l.strip()))).decode())`)
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(inputs) {
		t.Fatalf("python gave %d lines for %d inputs", len(lines), len(inputs))
	}
	for i, b := range inputs {
		want, _ := base64.StdEncoding.DecodeString(lines[i])
		got := qpEncodeMode(b, true)
		if got != string(want) {
			t.Errorf("qpEncode(%q) = %q, python %q", b, got, want)
		}
		if back := qpDecode(qpEncode(b)); !bytes.Equal(back, b) {
			t.Errorf("qpDecode(qpEncode(%q)) = %q", b, back)
		}
	}
}

func TestParseJSON(t *testing.T) {
	tests := []struct {
		in  string
		ok  bool
		str string // for string results
	}{
		{`{"a": [1, -2, 3.5e3, true, false, null, "x"]}`, true, ""},
		{`"\u00e9\ud83d\ude00"`, true, "é😀"},
		{`"\udcff\udc80"`, true, "\xff\x80"},
		{`"\ud800"`, false, ""},
		{`"\udc00"`, false, ""},
		{`{"a" 1}`, false, ""},
		{`[1,]`, false, ""},
		{`01`, false, ""},
		{"\"a\x01\"", false, ""},
		{`{} x`, false, ""},
		{strings.Repeat("[", 600) + strings.Repeat("]", 600), false, ""},
	}
	for _, tc := range tests {
		v, err := parseJSON([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("%.40q: err %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if err != nil && !errors.Is(err, ErrSyntax) {
			t.Errorf("%q: error %v is not ErrSyntax", tc.in, err)
		}
		if tc.str != "" && v != tc.str {
			t.Errorf("%q: got %q want %q", tc.in, v, tc.str)
		}
	}
}

// TestStringEscapes: ensure_ascii escaping and invalid UTF-8 round trip.
func TestStringEscapes(t *testing.T) {
	for _, s := range []string{"plain", "é😀\"\\\n\t\x7f\x01", "\xff\xfe bad utf8 \xc3", "\xed\xa0\x80"} {
		w := &writer{}
		w.str(s)
		for _, c := range w.buf {
			if c >= 0x80 {
				t.Errorf("%q: non-ASCII byte in output %q", s, w.buf)
				break
			}
		}
		v, err := parseJSON(w.buf)
		if err != nil || v != s {
			t.Errorf("%q: round trip %q, %v", s, v, err)
		}
	}
	w := &writer{}
	w.str("é\x7f")
	if string(w.buf) != `"\u00e9\u007f"` {
		t.Errorf("got %s", w.buf)
	}
}

// FuzzUnmarshal: arbitrary JSON never panics; whatever parses re-marshals to JSON that parses to
// the same binary image.
func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte(`{"magic": "PSTREE", "entries": [{"pid": 1, "ppid": 0, "pgid": 1, "sid": 1, "threads": [1]}]}`))
	f.Add([]byte(`{"magic": "PIPES_DATA", "entries": [{"pipe_id": 1, "bytes": 3, "extra": "YWJj\n"}]}`))
	f.Add([]byte(`{"magic": "TCP_STREAM", "entries": [{"inq_len": 1, "inq_seq": 1, "outq_len": 1, "outq_seq": 2, "opt_mask": "0x3", "snd_wscale": 7, "mss_clamp": 65495, "extra": {"inq": "YQ==", "outq": "Yg=="}}]}`))
	f.Add([]byte(`{"magic": "IPCNS_SEM", "entries": [{"desc": {"key": 1, "uid": 0, "gid": 0, "cuid": 0, "cgid": 0, "mode": 438, "id": 0}, "nsems": 2, "extra": [1, 2]}]}`))
	f.Add([]byte(`{"magic": "IPCNS_MSG", "entries": [{"desc": {"key": 1, "uid": 0, "gid": 0, "cuid": 0, "cgid": 0, "mode": 438, "id": 0}, "qbytes": 16384, "qnum": 1, "extra": [{"mtype": 1, "msize": 2}, "aGk=\n"]}]}`))
	f.Add([]byte(`{"magic": "GHOST_FILE", "entries": [{"uid": 0, "gid": 0, "mode": 33188, "chunks": true, "size": 8}, {"len": 8, "off": 0, "extra": "YWJjZGVmZ2g=\n"}]}`))
	f.Add([]byte(`{"magic": "VMAS", "entries": [{"start": "0x1000", "end": "0x2000", "pgoff": 0, "shmid": 0, "prot": "PROT_READ", "flags": "MAP_PRIVATE | 0x40", "status": "VMA_AREA_REGULAR", "fd": -1}]}`))
	f.Add([]byte(`{"magic": "RAW", "file": "iptables-9.img", "raw": "KmZpbHRlcgo=\n"}`))
	f.Add([]byte(`{"magic": "FDINFO", "_head": [1414939417, 1445017394], "entries": [{"id": 1, "flags": 0, "type": 77, "fd": 0, "_unknown": "qAYH\n"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := Unmarshal(data, "")
		if err != nil {
			return
		}
		var bin bytes.Buffer
		if err := img.Encode(&bin); err != nil {
			return // e.g. extras inconsistent with their message: refused by the codec
		}
		for _, pretty := range []bool{false, true} {
			js, err := Marshal(img, Options{Pretty: pretty})
			if err != nil {
				t.Fatalf("marshal of a parsed image: %v", err)
			}
			img2, err := Unmarshal(js, "")
			if err != nil {
				t.Fatalf("re-parse: %v\n%s", err, js)
			}
			var bin2 bytes.Buffer
			if err := img2.Encode(&bin2); err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			if !bytes.Equal(bin.Bytes(), bin2.Bytes()) {
				t.Fatalf("pretty=%v: JSON round trip changed the image\n%s", pretty, js)
			}
		}
	})
}

// FuzzDecodeMarshal: any bytes that image.Decode accepts convert to JSON and back byte-exactly.
func FuzzDecodeMarshal(f *testing.F) {
	f.Add("pstree.img", []byte("\x19CVT0 'P\x0e\x00\x00\x00\x08\x8a\x49\x10\x00\x18\x8a\x49\x20\x8a\x49\x28\x8a\x49"))
	f.Add("pipes-data.img", []byte("\x19CVT\x097EV\x06\x00\x00\x00\x08\x01\x10\x03\x18\x00abc"))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		img, err := image.Decode(bytes.NewReader(data), name)
		if err != nil || img.Desc.Raw == image.RawPages {
			return
		}
		js, err := Marshal(img, Options{})
		if err != nil {
			return
		}
		back, err := Unmarshal(js, img.Name)
		if err != nil {
			t.Fatalf("unmarshal of our own JSON: %v\n%s", err, js)
		}
		var a, b bytes.Buffer
		errA, errB := img.Encode(&a), back.Encode(&b)
		if (errA == nil) != (errB == nil) || !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Fatalf("JSON changed the image: %v %v", errA, errB)
		}
	})
}

// FuzzStreamVsTree: the streaming decoder (documents starting with "magic") and the tree decoder
// (any key order) agree.
func FuzzStreamVsTree(f *testing.F) {
	f.Add([]byte(`{"magic": "PSTREE", "entries": [{"pid": 1, "ppid": 0, "pgid": 1, "sid": 1, "threads": [1, 2]}]}`))
	f.Add([]byte(`{"magic": "INETSK", "entries": [{"id": 1, "ino": 2, "family": "INET6", "type": "STREAM", "proto": "TCP", "state": 10, "src_port": 1, "dst_port": 0, "flags": "0x0", "backlog": 0, "src_addr": ["::1"], "dst_addr": [0, 0, 0, 0], "fown": {"uid": 0, "euid": 0, "signum": 0, "pid_type": 0, "pid": 0}, "opts": {"so_sndbuf": 1, "so_rcvbuf": 2, "so_snd_tmo_sec": 0, "so_snd_tmo_usec": 0, "so_rcv_tmo_sec": 0, "so_rcv_tmo_usec": 0}}]}`))
	f.Add([]byte(`{"magic": "VMAS", "entries": [{"start": "0x1000", "end": 8192, "pgoff": 0, "shmid": 0, "prot": "PROT_READ | PROT_WRITE", "flags": "MAP_PRIVATE", "status": "VMA_AREA_REGULAR | 0x10", "fd": -1, "_unknown": "qAYH\n"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, errA := unmarshalStream(data, "")
		if errA == errNotStreamable {
			return
		}
		b, errB := unmarshalTree(data, "")
		if errA != nil || errB != nil {
			return
		}
		var x, y bytes.Buffer
		ea, eb := a.Encode(&x), b.Encode(&y)
		if (ea == nil) != (eb == nil) || !bytes.Equal(x.Bytes(), y.Bytes()) {
			t.Fatalf("stream and tree decoders disagree: %v %v\n%q\n%q", ea, eb, x.Bytes(), y.Bytes())
		}
	})
}
