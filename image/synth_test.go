package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	bpfmap_data "github.com/checkpoint-restore/go-criu/v8/crit/images/bpfmap-data"
	ghost_file "github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	ipc_desc "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-desc"
	ipc_msg "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-msg"
	ipc_sem "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-sem"
	ipc_shm "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-shm"
	pagemap "github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	pipe_data "github.com/checkpoint-restore/go-criu/v8/crit/images/pipe-data"
	sk_packet "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-packet"
	tcp_stream "github.com/checkpoint-restore/go-criu/v8/crit/images/tcp-stream"
	"google.golang.org/protobuf/proto"
)

// builder lays out image bytes by hand, the way CRIU writes them, independently of Encode.
type builder struct{ bytes.Buffer }

func (b *builder) u32(v uint32) *builder {
	binary.Write(&b.Buffer, binary.LittleEndian, v)
	return b
}
func (b *builder) head(magic uint32) *builder { return b.u32(MagicImgCommon).u32(magic) }
func (b *builder) msg(m proto.Message) *builder {
	p, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	b.u32(uint32(len(p)))
	b.Write(p)
	return b
}
func (b *builder) raw(p []byte) *builder { b.Write(p); return b }
func (b *builder) zeros(n int) *builder  { b.Write(make([]byte, n)); return b }

func u32p(v uint32) *uint32 { return &v }
func u64p(v uint64) *uint64 { return &v }
func bp(v bool) *bool       { return &v }

func desc(id uint32) *ipc_desc.IpcDescEntry {
	return &ipc_desc.IpcDescEntry{Key: u32p(0x1234), Uid: u32p(0), Gid: u32p(0), Cuid: u32p(0), Cgid: u32p(0), Mode: u32p(0o600), Id: u32p(id)}
}

func seq(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

type synth struct {
	name string
	data []byte
	// check inspects the decoded image (typed views).
	check func(t *testing.T, img *Image)
}

// synthImages returns hand-built images covering the codec edge cases.
func synthImages() []synth {
	var out []synth
	add := func(name string, b *builder, check func(t *testing.T, img *Image)) {
		out = append(out, synth{name, b.Bytes(), check})
	}
	for _, n := range []uint32{4, 3} {
		n := n
		b := new(builder).head(0x59573019).msg(&ipc_sem.IpcSemEntry{Desc: desc(1), Nsems: &n})
		for i := uint32(0); i < n; i++ {
			binary.Write(b, binary.LittleEndian, uint16(100+i))
		}
		b.zeros(int((8 - (2*n)%8) % 8)) // round_up(nsems*2, 8)
		add("ipcns-sem-11.img", b, func(t *testing.T, img *Image) {
			v, err := SemValues(img.Entries[0].Msg.(*ipc_sem.IpcSemEntry), img.Entries[0].Extra)
			if err != nil || len(v) != int(n) || v[n-1] != uint16(100+n-1) {
				t.Errorf("SemValues = %v, %v", v, err)
			}
			if !bytes.Equal(EncodeSemValues(v), img.Entries[0].Extra) {
				t.Errorf("EncodeSemValues differs")
			}
		})
	}
	{
		b := new(builder).head(0x55453737).msg(&ipc_msg.IpcMsgEntry{Desc: desc(2), Qbytes: u32p(16384), Qnum: u32p(2)})
		for _, ms := range []uint32{8, 27} {
			b.msg(&ipc_msg.IpcMsg{Mtype: u64p(uint64(ms)), Msize: u32p(ms)}).raw(seq(int(ms), 'a'))
			b.zeros(int((8 - ms%8) % 8))
		}
		// a second, empty queue
		b.msg(&ipc_msg.IpcMsgEntry{Desc: desc(3), Qbytes: u32p(16384), Qnum: u32p(0)})
		add("ipcns-msg-11.img", b, func(t *testing.T, img *Image) {
			if len(img.Entries) != 2 {
				t.Fatalf("%d entries, want 2", len(img.Entries))
			}
			ms, err := IPCMessages(img.Entries[0].Msg.(*ipc_msg.IpcMsgEntry), img.Entries[0].Extra)
			if err != nil || len(ms) != 2 || len(ms[1].Text) != 27 || ms[1].Text[26] != 'a'+26 || len(ms[1].Pad) != 5 {
				t.Errorf("IPCMessages = %+v, %v", ms, err)
			}
			x, err := EncodeIPCMessages(ms)
			if err != nil || !bytes.Equal(x, img.Entries[0].Extra) {
				t.Errorf("EncodeIPCMessages differs: %v", err)
			}
		})
	}
	{
		b := new(builder).head(0x46283044)
		b.msg(&ipc_shm.IpcShmEntry{Desc: desc(4), Size: u64p(8)}).raw(seq(8, 1))           // inline, no padding
		b.msg(&ipc_shm.IpcShmEntry{Desc: desc(5), Size: u64p(5)}).raw(seq(5, 1)).zeros(3)  // inline, padded to 4
		b.msg(&ipc_shm.IpcShmEntry{Desc: desc(6), Size: u64p(4096), InPagemaps: bp(true)}) // current CRIU: no extra
		b.msg(&ipc_shm.IpcShmEntry{Desc: desc(7), Size: u64p(3)}).raw(seq(3, 9)).zeros(1)
		add("ipcns-shm-11.img", b, func(t *testing.T, img *Image) {
			if len(img.Entries) != 4 {
				t.Fatalf("%d entries, want 4", len(img.Entries))
			}
			d, err := ShmData(img.Entries[1].Msg.(*ipc_shm.IpcShmEntry), img.Entries[1].Extra)
			if err != nil || !bytes.Equal(d, seq(5, 1)) {
				t.Errorf("ShmData = %v, %v", d, err)
			}
			if d, err := ShmData(img.Entries[2].Msg.(*ipc_shm.IpcShmEntry), img.Entries[2].Extra); err != nil || d != nil {
				t.Errorf("in_pagemaps ShmData = %v, %v", d, err)
			}
		})
	}
	{
		in, outq := seq(10, 'i'), seq(7, 'o')
		b := new(builder).head(0x51465506).msg(&tcp_stream.TcpStreamEntry{InqLen: u32p(10), InqSeq: u32p(1), OutqLen: u32p(7), OutqSeq: u32p(2),
			OptMask: u32p(7), SndWscale: u32p(7), MssClamp: u32p(65483), UnsqLen: u32p(3)}).raw(in).raw(outq)
		add("tcp-stream-2a5f.img", b, func(t *testing.T, img *Image) {
			q, err := TCPStreamQueues(img.Entries[0].Msg.(*tcp_stream.TcpStreamEntry), img.Entries[0].Extra)
			if err != nil || !bytes.Equal(q.In, in) || !bytes.Equal(q.Out, outq) {
				t.Errorf("TCPStreamQueues = %q %q, %v", q.In, q.Out, err)
			}
		})
	}
	{
		b := new(builder).head(0x56453709)
		b.msg(&pipe_data.PipeDataEntry{PipeId: u32p(5), Bytes: u32p(0), Size: u32p(65536)}) // 0-byte entry
		b.msg(&pipe_data.PipeDataEntry{PipeId: u32p(6), Bytes: u32p(11), Size: u32p(65536)}).raw([]byte("hello pipe!"))
		add("pipes-data.img", b, func(t *testing.T, img *Image) {
			if len(img.Entries) != 2 || img.Entries[0].Extra != nil || string(img.Entries[1].Extra) != "hello pipe!" {
				t.Errorf("pipes-data entries wrong")
			}
		})
		add("fifo-data.img", new(builder).head(0x59333054).msg(&pipe_data.PipeDataEntry{PipeId: u32p(9), Bytes: u32p(3)}).raw([]byte("abc")), nil)
	}
	{
		b := new(builder).head(0x56264026)
		b.msg(&sk_packet.SkPacketEntry{IdFor: u32p(3), Length: u32p(4)}).raw([]byte("ping"))
		b.msg(&sk_packet.SkPacketEntry{IdFor: u32p(3), Length: u32p(0), Scm: []*sk_packet.ScmEntry{{Type: u32p(1), Rights: []uint32{7, 8}}}})
		add("sk-queues.img", b, nil)
	}
	{
		b := new(builder).head(0x64324033).msg(&bpfmap_data.BpfmapDataEntry{MapId: u32p(1), KeysBytes: u32p(8), ValuesBytes: u32p(16), Count: u32p(2)})
		b.raw(seq(8, 0)).raw(seq(16, 100))
		add("bpfmap-data.img", b, func(t *testing.T, img *Image) {
			m := img.Entries[0].Msg.(*bpfmap_data.BpfmapDataEntry)
			d, err := BPFMap(m, img.Entries[0].Extra)
			k, v := d.Pairs(m.GetCount())
			if err != nil || len(k) != 2 || !bytes.Equal(v[1], seq(16, 100)[8:]) {
				t.Errorf("BPFMap = %v %v, %v", k, v, err)
			}
		})
	}
	{
		// chunked ghost file with a hole between the chunks
		b := new(builder).head(0x52583605).msg(&ghost_file.GhostFileEntry{Uid: u32p(0), Gid: u32p(0), Mode: u32p(0o100644), Chunks: bp(true), Size: u64p(3 * 4096 * 4)})
		b.msg(&ghost_file.GhostChunkEntry{Len: u64p(4096), Off: u64p(0)}).raw(seq(4096, 1))
		b.msg(&ghost_file.GhostChunkEntry{Len: u64p(100), Off: u64p(40000)}).raw(seq(100, 2))
		add("ghost-file-2.img", b, func(t *testing.T, img *Image) {
			g, cs, err := GhostChunks(img)
			if err != nil || !g.GetChunks() || len(cs) != 2 || cs[1].Off != 40000 || len(cs[1].Data) != 100 {
				t.Errorf("GhostChunks = %v %v, %v", g, cs, err)
			}
		})
		// raw ghost file: content to EOF
		b = new(builder).head(0x52583605).msg(&ghost_file.GhostFileEntry{Uid: u32p(0), Gid: u32p(0), Mode: u32p(0o100600), Size: u64p(36)})
		b.raw([]byte("the content of a deleted small file\n"))
		add("ghost-file-1.img", b, func(t *testing.T, img *Image) {
			_, cs, err := GhostChunks(img)
			if err != nil || len(cs) != 1 || string(cs[0].Data) != "the content of a deleted small file\n" {
				t.Errorf("GhostChunks(raw) = %v, %v", cs, err)
			}
		})
		// ghost directory: header only
		add("ghost-file-a.img", new(builder).head(0x52583605).msg(&ghost_file.GhostFileEntry{Uid: u32p(0), Gid: u32p(0), Mode: u32p(0o40755)}), nil)
	}
	{
		// pagemap, 4.2 encoding (field 5) and <= 4.1 encoding (field 2), legacy in_parent
		b := new(builder).head(0x56084025).msg(&pagemap.PagemapHead{PagesId: u32p(1)})
		b.msg(&pagemap.PagemapEntry{Vaddr: u64p(0x400000), CompatNrPages: u32p(0), NrPages: u64p(3), Flags: u32p(PEPresent)})
		b.msg(&pagemap.PagemapEntry{Vaddr: u64p(0x500000), CompatNrPages: u32p(2), Flags: u32p(PEPresent)})
		b.msg(&pagemap.PagemapEntry{Vaddr: u64p(0x600000), CompatNrPages: u32p(1), InParent: bp(true)})
		add("pagemap-42.img", b, func(t *testing.T, img *Image) {
			n := []uint64{3, 2, 1}
			f := []uint32{PEPresent, PEPresent, PEParent}
			for i, e := range img.Entries[1:] {
				pe := e.Msg.(*pagemap.PagemapEntry)
				if NrPages(pe) != n[i] || PagemapFlags(pe) != f[i] {
					t.Errorf("entry %d: nr_pages %d flags %#x", i+1, NrPages(pe), PagemapFlags(pe))
				}
			}
		})
	}
	add("inventory.img", new(builder).u32(0x58313116).raw(nil), nil)
	add("seccomp.img", new(builder).head(0x64413049).u32(0), nil)
	add("stats-dump", new(builder).u32(MagicImgService).u32(0x57093306).u32(0), nil)
	add("pages-1.img", new(builder).raw(seq(8192, 0)), nil)
	add("nftables-10.img", new(builder), nil)
	add("iptables-10.img", new(builder).raw([]byte("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n")), nil)
	add("dump.log", new(builder).raw([]byte("(00.000000) Version: 4.2.1\n")), nil)
	return out
}

func TestSynthRoundTrip(t *testing.T) {
	for _, s := range synthImages() {
		t.Run(s.name, func(t *testing.T) {
			img, err := Decode(bytes.NewReader(s.data), s.name)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			var out bytes.Buffer
			if err := img.Encode(&out); err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if !bytes.Equal(out.Bytes(), s.data) {
				t.Fatalf("round trip differs: %d bytes in, %d out", len(s.data), out.Len())
			}
			// the same through a plain stream (no ReaderAt)
			img2, err := Decode(struct{ *bytes.Buffer }{bytes.NewBuffer(s.data)}, s.name)
			if err != nil {
				t.Fatalf("Decode(stream): %v", err)
			}
			out.Reset()
			if err := img2.Encode(&out); err != nil || !bytes.Equal(out.Bytes(), s.data) {
				t.Fatalf("stream round trip differs (%v)", err)
			}
			if s.check != nil {
				s.check(t, img)
			}
		})
	}
}

// TestTruncatedEverywhere cuts every synthesized image at every offset: Decode must either fail with
// a *FormatError naming the file, or (at an entry boundary) give an image that re-encodes to the prefix.
func TestTruncatedEverywhere(t *testing.T) {
	for _, s := range synthImages() {
		for cut := 0; cut < len(s.data); cut++ {
			if len(s.data) > 5000 && cut > 64 && cut < len(s.data)-64 && cut%97 != 0 {
				continue // big bodies: sample the middle
			}
			p := s.data[:cut]
			for _, src := range []func() any{
				func() any { return bytes.NewReader(p) },
				func() any { return struct{ *bytes.Buffer }{bytes.NewBuffer(p)} },
			} {
				img, err := Decode(src().(interfaceReader), s.name)
				if err != nil {
					var fe *FormatError
					if !errors.As(err, &fe) || fe.File != s.name {
						t.Fatalf("%s cut at %d: error is not a *FormatError for the file: %v", s.name, cut, err)
					}
					continue
				}
				var out bytes.Buffer
				if err := img.Encode(&out); err != nil || !bytes.Equal(out.Bytes(), p) {
					t.Fatalf("%s cut at %d: decoded without error but does not round-trip (%v)", s.name, cut, err)
				}
			}
		}
	}
}

type interfaceReader interface{ Read([]byte) (int, error) }

func TestGarbage(t *testing.T) {
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"core-1.img", new(builder).u32(0xdeadbeef).Bytes(), ErrBadMagic},
		{"core-1.img", new(builder).head(0x56213732).Bytes(), ErrBadMagic}, // fdinfo magic in a core file
		{"core-1.img", new(builder).head(0x55053847).u32(0xfffffff0).Bytes(), ErrTooLarge},
		{"core-1.img", new(builder).head(0x55053847).u32(100).raw([]byte{1, 2}).Bytes(), ErrTruncated},
		{"core-1.img", new(builder).head(0x55053847).u32(3).raw([]byte{0xff, 0xff, 0xff}).Bytes(), ErrBadPayload},
		{"core-1.img", new(builder).head(0x55053847).u32(1).Bytes(), ErrTruncated},
		{"pipes-data.img", new(builder).head(0x56453709).msg(&pipe_data.PipeDataEntry{PipeId: u32p(1), Bytes: u32p(1 << 30)}).Bytes(), ErrTruncated},
		{"ipcns-msg-1.img", new(builder).head(0x55453737).msg(&ipc_msg.IpcMsgEntry{Desc: desc(1), Qbytes: u32p(1), Qnum: u32p(1 << 31)}).Bytes(), ErrTruncated},
	}
	for i, c := range cases {
		for _, r := range []interfaceReader{bytes.NewReader(c.data), struct{ *bytes.Buffer }{bytes.NewBuffer(c.data)}} {
			_, err := Decode(r, c.name)
			var fe *FormatError
			if !errors.Is(err, c.want) || !errors.As(err, &fe) {
				t.Errorf("case %d: err = %v, want %v in a *FormatError", i, err, c.want)
			}
		}
	}
}

func TestEncodeChecksExtras(t *testing.T) {
	d, _ := Classify("ipcns-sem-1.img")
	n := uint32(3)
	img := &Image{Name: "ipcns-sem-1.img", Desc: d, Head: DefaultHead(d),
		Entries: []*Entry{{Msg: &ipc_sem.IpcSemEntry{Desc: desc(1), Nsems: &n}, Extra: make([]byte, 6)}}}
	if err := img.Encode(new(bytes.Buffer)); !errors.Is(err, ErrExtraMismatch) {
		t.Errorf("unpadded sem extra: err = %v, want ErrExtraMismatch", err)
	}
	img.Entries[0].Extra = EncodeSemValues([]uint16{1, 2, 3})
	if err := img.Encode(new(bytes.Buffer)); err != nil {
		t.Errorf("padded sem extra: %v", err)
	}
	img.Entries[0].Msg = &ipc_shm.IpcShmEntry{}
	if err := img.Encode(new(bytes.Buffer)); !errors.Is(err, ErrWrongMessage) {
		t.Errorf("wrong message: err = %v, want ErrWrongMessage", err)
	}
}

func TestClassify(t *testing.T) {
	cases := map[string]string{
		"inventory.img": "INVENTORY", "core-123.img": "CORE", "pagemap-12.img": "PAGEMAP", "pagemap-shmem-5.img": "SHMEM_PAGEMAP",
		"pages-3.img": "PAGES", "pages-shmem-3.img": "SHM_PAGES_OLD", "ghost-file-1f.img": "GHOST_FILE", "tcp-stream-6b1a.img": "TCP_STREAM",
		"tmpfs-dev-45.tar.gz.img": "TMPFS_DEV", "tmpfs-7.tar.gz.img": "TMPFS_IMG", "netns-ct-10.img": "NETNF_CT", "netns-exp-10.img": "NETNF_EXP",
		"netns-10.img": "NETNS", "route6-10.img": "ROUTE6", "stats-dump": "STATS", "stats-restore": "STATS", "irmap-cache": "IRMAP_CACHE",
		"binfmt-misc.img": "BINFMT_MISC", "binfmt-misc-3.img": "BINFMT_MISC_OLD", "pidfd.img": "PIDFD", "signal-p-3.img": "PSIGNAL",
		"/some/dir/files.img": "FILES", "ipcns-var-11.img": "IPC_VAR",
	}
	for name, want := range cases {
		d, err := Classify(name)
		if err != nil || d.Name != want {
			t.Errorf("Classify(%q) = %v, %v; want %s", name, d, err, want)
		}
	}
	for _, name := range []string{"dump.log", "core-.img", "core-x.img", "pagemap-shmem-.img", "amdgpu-kfd-1.img", "parent", "ghost-file-XY.img", "stats-"} {
		if d, err := Classify(name); !errors.Is(err, ErrUnknownImage) {
			t.Errorf("Classify(%q) = %v, want ErrUnknownImage", name, d.Name)
		}
	}
}

// TestWriterMatchesEncode writes every synthesized image through the streaming Writer.
func TestWriterMatchesEncode(t *testing.T) {
	for _, s := range synthImages() {
		img, err := Decode(bytes.NewReader(s.data), s.name)
		if err != nil {
			t.Fatal(err)
		}
		if img.Desc.Kind == KindRaw || img.Desc.Kind == KindUnknown || len(img.Head) == 0 {
			continue
		}
		var out bytes.Buffer
		w, err := NewWriter(&out, s.name, img.Desc, img.Head)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range img.Entries {
			if i%2 == 0 || img.Desc.Extra == ExtraIPCMsg {
				err = w.Write(e.Msg, e.Extra)
			} else {
				err = w.WriteStream(e.Msg, bytes.NewReader(e.Extra), int64(len(e.Extra)))
			}
			if err != nil {
				t.Fatalf("%s entry %d: %v", s.name, i, err)
			}
		}
		if !bytes.Equal(out.Bytes(), s.data) {
			t.Errorf("%s: Writer output differs", s.name)
		}
	}
	// a chunk whose extra length disagrees is refused
	d, _ := Classify("ghost-file-3.img")
	w, _ := NewWriter(new(bytes.Buffer), "ghost-file-3.img", d, nil)
	if err := w.Write(&ghost_file.GhostFileEntry{Uid: u32p(0), Gid: u32p(0), Mode: u32p(0o100644), Chunks: bp(true)}, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteStream(&ghost_file.GhostChunkEntry{Len: u64p(10), Off: u64p(0)}, bytes.NewReader(nil), 3); !errors.Is(err, ErrExtraMismatch) {
		t.Errorf("bad chunk: err = %v", err)
	}
}

func TestCopyGhostContent(t *testing.T) {
	dir := t.TempDir()
	for _, s := range synthImages() {
		if s.name != "ghost-file-2.img" && s.name != "ghost-file-1.img" {
			continue
		}
		p := filepath.Join(dir, s.name)
		os.WriteFile(p, s.data, 0o600)
		f, _ := os.Create(filepath.Join(dir, "out"))
		n, err := CopyGhostContent(p, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(filepath.Join(dir, "out"))
		img, _ := Decode(bytes.NewReader(s.data), s.name)
		_, cs, _ := GhostChunks(img)
		for _, c := range cs {
			if !bytes.Equal(got[c.Off:c.Off+c.Len], c.Data) {
				t.Errorf("%s: chunk at %d differs", s.name, c.Off)
			}
		}
		if s.name == "ghost-file-2.img" && (n != 3*4096*4 || got[5000] != 0) {
			t.Errorf("%s: size %d, hole byte %d", s.name, n, got[5000])
		}
	}
}
