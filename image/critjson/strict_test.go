package critjson

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestEncodeCritShmSegments: crit 3.17's JSON of an ipcns-shm image with three in_pagemaps segments
// (made by `crit decode` of a real dump: ipcmk -M in an ipc namespace) has one entry whose extra holds
// the other two; encoding it must give back the three segments, byte for byte.
func TestEncodeCritShmSegments(t *testing.T) {
	js, err := os.ReadFile("testdata/ipcns-shm-3seg.crit.json")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/ipcns-shm-3seg.img")
	if err != nil {
		t.Fatal(err)
	}
	img, err := Unmarshal(js, "ipcns-shm-9.img")
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Entries) != 3 {
		t.Fatalf("%d entries, want 3 segments", len(img.Entries))
	}
	var b bytes.Buffer
	if err := img.Encode(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Fatalf("encoded %d bytes, differ from the dump's %d", b.Len(), len(want))
	}
}

// TestEncodeRefusesMissingRequired: like crit, an entry without its required fields is refused
// (CRIU could not read it back).
func TestEncodeRefusesMissingRequired(t *testing.T) {
	for _, js := range []string{
		`{"magic":"PSTREE","entries":[{}]}`,
		`{"magic":"PSTREE","entries":[{"pid":1,"ppid":0,"pgid":1}]}`,
	} {
		img, err := Unmarshal([]byte(js), "pstree.img")
		if err == nil {
			var b bytes.Buffer
			err = img.Encode(&b)
		}
		if err == nil || !strings.Contains(err.Error(), "required") {
			t.Errorf("%s: err %v, want a missing required field error", js, err)
		}
	}
}
