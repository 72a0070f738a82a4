package image

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"

	bpfmap_data "github.com/checkpoint-restore/go-criu/v8/crit/images/bpfmap-data"
	ipc_msg "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-msg"
	ipc_sem "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-sem"
	ipc_shm "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-shm"
	tcp_stream "github.com/checkpoint-restore/go-criu/v8/crit/images/tcp-stream"
	"github.com/criukit/criukit/internal/harness"
)

// fuzzNames are the file names the fuzzer picks from (one per framing path).
var fuzzNames = []string{
	"core-1.img", "inventory.img", "stats-dump", "pagemap-1.img", "ghost-file-1.img", "pipes-data.img",
	"sk-queues.img", "tcp-stream-1.img", "bpfmap-data.img", "ipcns-sem-1.img", "ipcns-msg-1.img",
	"ipcns-shm-1.img", "files.img", "mm-1.img", "pages-1.img", "dump.log",
}

func nameIndex(name string) uint8 {
	for i, n := range fuzzNames {
		if n == name {
			return uint8(i)
		}
	}
	d, err := Classify(name)
	if err == nil {
		for i, n := range fuzzNames {
			if dd, _ := Classify(n); dd == d {
				return uint8(i)
			}
		}
	}
	return uint8(len(fuzzNames) - 1)
}

// corpusSeeds adds the small files of the live corpus as seeds when the machine can make it (the
// seeds must not make the fuzz target skip when CRIU is missing).
func corpusSeeds(f *testing.F, add func(name string, data []byte)) {
	if os.Geteuid() != 0 || testing.Short() {
		return
	}
	if fl := flag.Lookup("test.fuzz"); fl != nil && fl.Value.String() != "" {
		return // fuzzing: workers are separate processes, don't make the corpus in each of them
	}
	if _, err := os.Stat("/usr/local/sbin/criu"); err != nil {
		return
	}
	for _, d := range harness.Corpus(f) {
		ents, _ := os.ReadDir(d.Dir)
		for _, e := range ents {
			if !e.Type().IsRegular() {
				continue
			}
			if st, err := e.Info(); err != nil || st.Size() > 64<<10 {
				continue
			}
			b, err := os.ReadFile(filepath.Join(d.Dir, e.Name()))
			if err == nil {
				add(e.Name(), b)
			}
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range synthImages() {
		f.Add(nameIndex(s.name), s.data)
	}
	corpusSeeds(f, func(name string, data []byte) { f.Add(nameIndex(name), data) })
	f.Fuzz(func(t *testing.T, idx uint8, data []byte) {
		name := fuzzNames[int(idx)%len(fuzzNames)]
		img, err := Decode(bytes.NewReader(data), name)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) || fe.File != name {
				t.Fatalf("error without file/offset: %v", err)
			}
		} else {
			var out bytes.Buffer
			if err := img.Encode(&out); err != nil {
				t.Fatalf("decoded but cannot encode: %v", err)
			}
			img2, err := Decode(bytes.NewReader(out.Bytes()), name)
			if err != nil {
				t.Fatalf("re-decode: %v", err)
			}
			var out2 bytes.Buffer
			if err := img2.Encode(&out2); err != nil || !bytes.Equal(out.Bytes(), out2.Bytes()) {
				t.Fatalf("encode not idempotent (%v)", err)
			}
			typedViews(img) // must not panic
			if img.Desc.Kind == KindGhost {
				GhostChunks(img)
			}
		}
		// the streaming path over a plain reader must agree on success
		r, err := NewReader(struct{ io.Reader }{bytes.NewReader(data)}, name)
		if err != nil {
			return
		}
		for i := 0; ; i++ {
			_, err := r.Next()
			if err != nil {
				break
			}
			if i%2 == 1 {
				io.Copy(io.Discard, io.LimitReader(r.Extra(), 100))
			}
		}
	})
}

func FuzzIPCMessages(f *testing.F) {
	for _, s := range synthImages() {
		if s.name == "ipcns-msg-11.img" {
			img, _ := Decode(bytes.NewReader(s.data), s.name)
			f.Add(uint32(2), img.Entries[0].Extra)
		}
	}
	f.Add(uint32(1), []byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, qnum uint32, extra []byte) {
		msgs, err := IPCMessages(&ipc_msg.IpcMsgEntry{Qnum: &qnum}, extra)
		if err != nil {
			return
		}
		b, err := EncodeIPCMessages(msgs)
		if err != nil {
			t.Fatalf("decoded messages do not encode: %v", err)
		}
		if _, err := IPCMessages(&ipc_msg.IpcMsgEntry{Qnum: &qnum}, b); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

func FuzzMemory(f *testing.F) {
	for _, s := range synthImages() {
		if s.name == "pagemap-42.img" {
			f.Add(s.data, uint64(0x400000), uint16(100))
			f.Add(s.data, uint64(0x500ff0), uint16(4096))
			f.Add(s.data, uint64(0x600000), uint16(1))
		}
	}
	f.Fuzz(func(t *testing.T, pm []byte, addr uint64, n uint16) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "pagemap-1.img"), pm, 0o600); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "pages-1.img"), make([]byte, 5*4096), 0o600)
		m, err := OpenMemory(dir, 1)
		if err != nil {
			return
		}
		defer m.Close()
		p := make([]byte, n)
		got, err := m.ReadAt(p, int64(addr))
		if got > len(p) || (err == nil && got != len(p)) {
			t.Fatalf("ReadAt = %d, %v", got, err)
		}
		m.Locate(addr)
	})
}

func typedViews(img *Image) {
	for _, e := range img.Entries {
		switch m := e.Msg.(type) {
		case *ipc_sem.IpcSemEntry:
			SemValues(m, e.Extra)
		case *ipc_msg.IpcMsgEntry:
			IPCMessages(m, e.Extra)
		case *ipc_shm.IpcShmEntry:
			ShmData(m, e.Extra)
		case *tcp_stream.TcpStreamEntry:
			TCPStreamQueues(m, e.Extra)
		case *bpfmap_data.BpfmapDataEntry:
			d, _ := BPFMap(m, e.Extra)
			d.Pairs(m.GetCount())
		}
	}
}
