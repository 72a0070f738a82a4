package inspect_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/criukit/criukit/ckpt"
	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/inspect"
)

// checkDeepDiff edits a copy of a real podman checkpoint's images (pid 1's heap loses write access
// and grows by a page, an established TCP socket becomes CLOSE_WAIT) and checks that the diff names
// exactly those changes, as VMA and socket changes, in JSON-ready form.
func checkDeepDiff(t *testing.T, f *fixture) {
	b := filepath.Join(t.TempDir(), "edited")
	if out, err := exec.Command("cp", "-a", f.images, b).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	mmPath := filepath.Join(b, "mm-1.img")
	img, err := image.ReadFile(mmPath)
	if err != nil {
		t.Fatal(err)
	}
	var heapStart uint64
	for _, v := range img.Entries[0].Msg.(*mm.MmEntry).GetVmas() {
		if v.GetStatus()&(1<<5) != 0 { // VMA_AREA_HEAP
			heapStart = v.GetStart()
			*v.Prot &^= 2
			*v.End += uint64(image.PageSize)
		}
	}
	if heapStart == 0 {
		t.Fatal("pid 1 has no heap VMA")
	}
	if err := image.WriteFile(mmPath, img); err != nil {
		t.Fatal(err)
	}
	filesPath := filepath.Join(b, "files.img")
	fimg, err := image.ReadFile(filesPath)
	if err != nil {
		t.Fatal(err)
	}
	var ino uint32
	for _, e := range fimg.Entries {
		if fe, ok := e.Msg.(*fdinfo.FileEntry); ok && fe.GetIsk() != nil && fe.GetIsk().GetState() == 1 && ino == 0 {
			ino = fe.GetIsk().GetIno()
			*fe.GetIsk().State = 8 // CLOSE_WAIT
		}
	}
	if ino == 0 {
		t.Fatal("no established socket")
	}
	if err := image.WriteFile(filesPath, fimg); err != nil {
		t.Fatal(err)
	}
	ca, err := ckpt.Open(f.images, ckpt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	cb, err := ckpt.Open(b, ckpt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	d, err := inspect.Compare(ca, cb, inspect.DiffOptions{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	var heap *inspect.VMADiff
	for _, pm := range d.MemoryChanges.Processes {
		for i, v := range pm.VMAs {
			if pm.PID == 1 && v.Start == heapStart {
				heap = &pm.VMAs[i]
			} else {
				t.Errorf("unexpected VMA change: pid %d %+v", pm.PID, v)
			}
		}
		if pm.PagesChanged != 0 {
			t.Errorf("pid %d: %d pages changed (none were)", pm.PID, pm.PagesChanged)
		}
	}
	if heap == nil || heap.Change != "resized,protection" || heap.EndB != heap.EndA+uint64(image.PageSize) || !strings.Contains(heap.ProtA, "w") || strings.Contains(heap.ProtB, "w") || heap.PagesSame == 0 {
		t.Errorf("heap change: %+v", heap)
	}
	if len(d.SocketChanges.Changed) != 1 || d.SocketChanges.Changed[0].B.State != "CLOSE_WAIT" || d.SocketChanges.Changed[0].A.State != "ESTABLISHED" || d.SocketChanges.Changed[0].What[0] != "state" {
		t.Errorf("socket changes: %+v", d.SocketChanges)
	}
	if n := len(d.ProcessChanges.Added) + len(d.ProcessChanges.Removed) + len(d.ProcessChanges.Modified) + len(d.FileChanges.Added) + len(d.FileChanges.Removed); n != 0 {
		t.Errorf("unexpected changes: %s", d.Summary)
	}
}
