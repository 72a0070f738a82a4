package image

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	ghost_file "github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	ipc_msg "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-msg"
	ipc_sem "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-sem"
	ipc_shm "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-shm"
	mm "github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	pagemap "github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	pstree "github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	tcp_stream "github.com/checkpoint-restore/go-criu/v8/crit/images/tcp-stream"
	"github.com/criukit/criukit/image/nldump"
	"github.com/criukit/criukit/internal/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// mustCover are the image types the corpus must produce (issue 2's list of kinds).
var mustCover = []string{
	"INVENTORY", "STATS", "PSTREE", "CORE", "IDS", "MM", "FS", "PAGEMAP", "SHMEM_PAGEMAP", "PAGES", "FDINFO", "FILES",
	"REMAP_FPATH", "GHOST_FILE", "MEMFD_INODE", "PIPES_DATA", "FIFO_DATA", "SK_QUEUES", "TCP_STREAM", "TTY_INFO",
	"TTY_DATA", "MNTS", "TMPFS_DEV", "UTSNS", "IPC_VAR", "IPCNS_SHM", "IPCNS_MSG", "IPCNS_SEM", "NETDEV", "NETNS",
	"IFADDR", "ROUTE", "ROUTE6", "SECCOMP", "TIMENS",
}

// TestCorpusRoundTrip: every file of every corpus dump decodes and re-encodes byte for byte, in memory
// and through the streaming Reader.
func TestCorpusRoundTrip(t *testing.T) {
	testenvShort(t)
	seen := map[string]int{}
	ghostLayouts := map[bool]bool{}
	for _, d := range harness.Corpus(t) {
		files, err := ReadDir(d.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, fi := range files {
			if fi.Dir || fi.Link != "" {
				continue
			}
			p := filepath.Join(d.Dir, fi.Name)
			if fi.Err != nil {
				t.Errorf("%s/%s: ReadDir: %v", d.Workload, fi.Name, fi.Err)
				continue
			}
			seen[fi.Type]++
			orig, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			img, err := ReadFile(p)
			if err != nil {
				t.Errorf("%s/%s: %v", d.Workload, fi.Name, err)
				continue
			}
			var out bytes.Buffer
			if err := img.Encode(&out); err != nil {
				t.Errorf("%s/%s: Encode: %v", d.Workload, fi.Name, err)
				continue
			}
			if !bytes.Equal(out.Bytes(), orig) {
				t.Errorf("%s/%s: round trip differs (%d bytes in, %d out)", d.Workload, fi.Name, len(orig), out.Len())
			}
			if fi.Kind != KindRaw && fi.Kind != KindUnknown && fi.Entries != len(img.Entries) {
				t.Errorf("%s/%s: ReadDir counts %d entries, Decode %d", d.Workload, fi.Name, fi.Entries, len(img.Entries))
			}
			if img.Desc.Kind == KindGhost {
				g := img.Entries[0].Msg.(*ghost_file.GhostFileEntry)
				ghostLayouts[g.GetChunks()] = true
				f, err := os.Create(filepath.Join(t.TempDir(), "ghost"))
				if err != nil {
					t.Fatal(err)
				}
				n, err := CopyGhostContent(p, f)
				f.Close()
				if err != nil || (g.Size != nil && n != int64(g.GetSize())) {
					t.Errorf("%s/%s: CopyGhostContent = %d (header size %d), %v", d.Workload, fi.Name, n, g.GetSize(), err)
				}
			}
			checkTyped(t, d.Workload, img)
			checkStream(t, p, img)
			checkRaw(t, d.Workload, img)
		}
	}
	var missing []string
	for _, k := range mustCover {
		if seen[k] == 0 {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		t.Errorf("corpus does not cover image types %v (seen: %v)", missing, keys(seen))
	}
	if !ghostLayouts[true] || !ghostLayouts[false] {
		t.Errorf("corpus lacks a raw or a chunked ghost file (chunked=%v raw=%v)", ghostLayouts[true], ghostLayouts[false])
	}
	t.Logf("types covered: %v", keys(seen))
}

func keys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// checkStream reads the file with Open/Next/Extra and compares with the decoded image, half of the
// extras read and half skipped.
func checkStream(t *testing.T, path string, img *Image) {
	r, err := Open(path)
	if err != nil {
		t.Errorf("Open %s: %v", path, err)
		return
	}
	defer r.Close()
	for i := 0; ; i++ {
		e, err := r.Next()
		if err == io.EOF {
			if i != len(img.Entries) {
				t.Errorf("%s: stream has %d entries, Decode %d", path, i, len(img.Entries))
			}
			return
		}
		if err != nil {
			t.Errorf("%s: stream: %v", path, err)
			return
		}
		if i >= len(img.Entries) || e.Offset != img.Entries[i].Offset || e.ExtraLen != int64(len(img.Entries[i].Extra)) {
			t.Errorf("%s: stream entry %d differs", path, i)
			return
		}
		if i%2 == 0 {
			x, err := io.ReadAll(r.Extra())
			if err != nil || !bytes.Equal(x, img.Entries[i].Extra) {
				t.Errorf("%s: stream extra %d differs (%v)", path, i, err)
			}
		}
	}
}

// TestCorpusMemory reads argv of every task of every corpus dump through Memory (mm_arg_start..end).
func TestCorpusMemory(t *testing.T) {
	testenvShort(t)
	for _, d := range harness.Corpus(t) {
		ps, err := ReadFile(filepath.Join(d.Dir, "pstree.img"))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ps.Entries {
			pid := int(e.Msg.(*pstree.PstreeEntry).GetPid())
			mi, err := ReadFile(filepath.Join(d.Dir, "mm-"+strconv.Itoa(pid)+".img"))
			if err != nil {
				t.Fatal(err)
			}
			m := mi.Entries[0].Msg.(*mm.MmEntry)
			mem, err := OpenMemory(d.Dir, pid)
			if err != nil {
				t.Fatal(err)
			}
			argv := make([]byte, m.GetMmArgEnd()-m.GetMmArgStart())
			n, err := mem.ReadAt(argv, int64(m.GetMmArgStart()))
			mem.Close()
			if err != nil || n != len(argv) {
				t.Errorf("%s pid %d: argv read %d/%d: %v", d.Workload, pid, n, len(argv), err)
				continue
			}
			args := strings.Split(strings.TrimRight(string(argv), "\x00"), "\x00")
			if !strings.HasSuffix(args[0], "criukit-workload") {
				t.Errorf("%s pid %d: argv %q", d.Workload, pid, args)
			}
			t.Logf("%s pid %d argv %q", d.Workload, pid, args)
		}
		// every pagemap's present pages fill its pages file exactly, and all of them read back
		ents, _ := os.ReadDir(d.Dir)
		for _, de := range ents {
			desc, err := Classify(de.Name())
			if err != nil || desc.Kind != KindPagemap {
				continue
			}
			var mem *Memory
			var shmid uint64
			var pid int
			if _, err := fmt.Sscanf(de.Name(), "pagemap-shmem-%d.img", &shmid); err == nil {
				mem, err = OpenShmem(d.Dir, shmid)
				if err != nil {
					t.Fatal(err)
				}
			} else if _, err := fmt.Sscanf(de.Name(), "pagemap-%d.img", &pid); err == nil {
				if mem, err = OpenMemory(d.Dir, pid); err != nil {
					t.Fatal(err)
				}
			}
			var present int64
			buf := make([]byte, 64<<10)
			for _, r := range mem.Ranges() {
				if r.Flags&PEPresent == 0 {
					continue
				}
				for va := r.Vaddr; va < r.End(); va += uint64(len(buf)) {
					n := min(uint64(len(buf)), r.End()-va)
					if _, err := mem.ReadAt(buf[:n], int64(va)); err != nil {
						t.Errorf("%s/%s: %v", d.Workload, de.Name(), err)
					}
				}
				present += int64(r.NrPages) * PageSize
			}
			st, err := os.Stat(mem.PagesFile())
			if err != nil || st.Size() != present {
				t.Errorf("%s/%s: present pages %d bytes, %s has %v (%v)", d.Workload, de.Name(), present, mem.PagesFile(), st, err)
			}
			mem.Close()
		}
	}
}

// checkRaw parses the netlink dumps among the raw files.
func checkRaw(t *testing.T, w string, img *Image) {
	switch img.Desc.Name {
	case "IFADDR", "ROUTE", "ROUTE6", "RULE":
		if len(img.Raw) == 0 && img.Desc.Name != "IFADDR" {
			break // nothing saved (no IPv6 routes, say)
		}
		d, err := nldump.Parse(img.Raw)
		if err != nil {
			t.Errorf("%s/%s: %v", w, img.Name, err)
			break
		}
		want := map[string]nldump.Kind{"IFADDR": nldump.KindAddr, "ROUTE": nldump.KindRoute, "ROUTE6": nldump.KindRoute, "RULE": nldump.KindRule}[img.Desc.Name]
		if d.Kind != want {
			t.Errorf("%s/%s: a %s dump, want %s", w, img.Name, d.Kind, want)
		}
		if img.Desc.Name == "IFADDR" && len(d.Addrs()) == 0 {
			t.Errorf("%s/%s: no addresses", w, img.Name)
		}
	case "NETNF_CT", "NETNF_EXP":
		if _, err := ParseNetlink(img.Raw, 0); err != nil {
			t.Errorf("%s/%s: %v", w, img.Name, err)
		}
	case "TMPFS_DEV":
		if len(img.Raw) < 2 || img.Raw[0] != 0x1f || img.Raw[1] != 0x8b {
			t.Errorf("%s/%s: not gzip", w, img.Name)
		}
	}
}

// checkTyped runs the typed extra views over every entry that has one.
func checkTyped(t *testing.T, w string, img *Image) {
	for i, e := range img.Entries {
		var err error
		switch m := e.Msg.(type) {
		case *ipc_sem.IpcSemEntry:
			_, err = SemValues(m, e.Extra)
		case *ipc_msg.IpcMsgEntry:
			_, err = IPCMessages(m, e.Extra)
		case *ipc_shm.IpcShmEntry:
			_, err = ShmData(m, e.Extra)
		case *tcp_stream.TcpStreamEntry:
			_, err = TCPStreamQueues(m, e.Extra)
		}
		if err != nil {
			t.Errorf("%s/%s entry %d: %v", w, img.Name, i, err)
		}
	}
}

// TestCorpusCompatPagemap rewrites the corpus pagemaps in the <= 4.1 encoding (page count in field 2,
// no flags) and checks Memory reads the same bytes as from the 4.2 encoding.
func TestCorpusCompatPagemap(t *testing.T) {
	testenvShort(t)
	rewritten := 0
	defer func() {
		if rewritten == 0 {
			t.Errorf("no pagemap entry was rewritten: the test compared nothing")
		}
	}()
	for _, d := range harness.Corpus(t) {
		old := t.TempDir()
		ents, _ := os.ReadDir(d.Dir)
		for _, de := range ents {
			src := filepath.Join(d.Dir, de.Name())
			desc, err := Classify(de.Name())
			if err != nil || desc.Kind != KindPagemap {
				if err := os.Symlink(src, filepath.Join(old, de.Name())); err != nil {
					t.Fatal(err)
				}
				continue
			}
			img, err := ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range img.Entries[1:] {
				pe := e.Msg.(*pagemap.PagemapEntry)
				if pe.NrPages == nil || PagemapFlags(pe) != PEPresent {
					continue // keep entries that 4.1 could not express without flags
				}
				n := uint32(NrPages(pe))
				pe.CompatNrPages, pe.NrPages, pe.Flags = &n, nil, nil
				rewritten++
			}
			if err := WriteFile(filepath.Join(old, de.Name()), img); err != nil {
				t.Fatal(err)
			}
		}
		ps, err := ReadFile(filepath.Join(d.Dir, "pstree.img"))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ps.Entries {
			pid := int(e.Msg.(*pstree.PstreeEntry).GetPid())
			a, err1 := OpenMemory(d.Dir, pid)
			b, err2 := OpenMemory(old, pid)
			if err1 != nil || err2 != nil {
				t.Fatalf("%v %v", err1, err2)
			}
			ra, rb := a.Ranges(), b.Ranges()
			if len(ra) != len(rb) {
				t.Fatalf("%s pid %d: %d ranges vs %d", d.Workload, pid, len(ra), len(rb))
			}
			for i := range ra {
				if ra[i] != rb[i] {
					t.Errorf("%s pid %d: range %d: %+v vs %+v", d.Workload, pid, i, ra[i], rb[i])
				}
				if ra[i].Flags&PEPresent != 0 {
					x, y := make([]byte, PageSize), make([]byte, PageSize)
					last := int64(ra[i].End()) - PageSize
					_, e1 := a.ReadAt(x, last)
					_, e2 := b.ReadAt(y, last)
					if e1 != nil || e2 != nil || !bytes.Equal(x, y) {
						t.Errorf("%s pid %d: last page of range %d differs (%v %v)", d.Workload, pid, i, e1, e2)
					}
				}
			}
			a.Close()
			b.Close()
		}
	}
}

// TestCorpusPipeStream decodes every corpus image through a pipe (no seeking, no size) and compares.
func TestCorpusPipeStream(t *testing.T) {
	testenvShort(t)
	for _, d := range harness.Corpus(t) {
		ents, _ := os.ReadDir(d.Dir)
		for _, de := range ents {
			desc, err := Classify(de.Name())
			if err != nil || desc.Kind == KindRaw {
				continue
			}
			data, err := os.ReadFile(filepath.Join(d.Dir, de.Name()))
			if err != nil {
				t.Fatal(err)
			}
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			go func() { pw.Write(data); pw.Close() }()
			img, err := Decode(pr, de.Name())
			pr.Close()
			if err != nil {
				t.Errorf("%s/%s via pipe: %v", d.Workload, de.Name(), err)
				continue
			}
			var out bytes.Buffer
			if err := img.Encode(&out); err != nil || !bytes.Equal(out.Bytes(), data) {
				t.Errorf("%s/%s via pipe: round trip differs (%v)", d.Workload, de.Name(), err)
			}
		}
	}
}
