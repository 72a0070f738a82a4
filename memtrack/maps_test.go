package memtrack

import (
	"os"
	"strings"
	"testing"
)

const sampleMaps = `00400000-00401000 r-xp 00000000 08:01 1234                               /usr/bin/prog
00600000-00601000 rw-p 00000000 08:01 1234                               /usr/bin/prog
01000000-01021000 rw-p 00000000 00:00 0                                  [heap]
7f0000000000-7f0000100000 rw-p 00000000 00:00 0 
7f0000100000-7f0000200000 ---p 00000000 00:00 0 
7f0000200000-7f0000300000 rw-s 00000000 00:01 99                         /dev/zero (deleted)
7f0000300000-7f0000301000 rw-p 00000000 00:00 0                          [anon:go heap]
7f0000400000-7f0000401000 r--p 00000000 08:01 77                         /path with spaces/lib.so
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]
7ffc00100000-7ffc00104000 r--p 00000000 00:00 0                          [vvar]
7ffc00104000-7ffc00106000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
`

func TestParseMapsAndTrackable(t *testing.T) {
	vmas, err := ParseMaps([]byte(sampleMaps))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		path   string
		reason string
	}{
		{"/usr/bin/prog", SkipFile},
		{"/usr/bin/prog", SkipFile},
		{"[heap]", ""},
		{"", ""},
		{"", SkipNotWritable},
		{"/dev/zero (deleted)", SkipShared},
		{"[anon:go heap]", ""},
		{"/path with spaces/lib.so", SkipFile},
		{"[stack]", ""},
		{"[vvar]", SkipSpecial},
		{"[vdso]", SkipSpecial},
		{"[vsyscall]", SkipSpecial},
	}
	if len(vmas) != len(want) {
		t.Fatalf("%d VMAs, want %d", len(vmas), len(want))
	}
	for i, w := range want {
		if vmas[i].Path != w.path {
			t.Errorf("line %d: path %q, want %q", i+1, vmas[i].Path, w.path)
		}
		if got := Trackable(vmas[i]); got != w.reason {
			t.Errorf("line %d (%s): Trackable = %q, want %q", i+1, vmas[i].Label(), got, w.reason)
		}
	}
	if vmas[3].Start != 0x7f0000000000 || vmas[3].Len() != 0x100000 {
		t.Errorf("anon VMA: %+v", vmas[3])
	}
	for _, bad := range []string{"zz-10 rw-p 0 0 0", "10-zz rw-p 0 0 0", "20-10 rw-p 0 0 0", "10-20 rw 0 0 0", "10-20 rw-p 0 0", "10 rw-p 0 0 0", "10-20 rw-p 0 0 x"} {
		if _, err := ParseMaps([]byte(bad)); err == nil {
			t.Errorf("ParseMaps(%q): no error", bad)
		}
	}
}

func TestParseOwnMaps(t *testing.T) {
	vmas, err := ReadMaps(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range vmas {
		if Trackable(v) == "" {
			n++
		}
	}
	if n == 0 {
		t.Fatalf("no trackable VMA in our own maps (%d VMAs)", len(vmas))
	}
}

func FuzzParseMaps(f *testing.F) {
	f.Add([]byte(sampleMaps))
	f.Add([]byte(""))
	f.Add([]byte("0-0 ---- 0 0 0"))
	f.Add([]byte(strings.Repeat("1-2 rw-p 0 0:0 0   x y  \n", 3)))
	f.Fuzz(func(t *testing.T, data []byte) {
		vmas, err := ParseMaps(data)
		if err != nil {
			return
		}
		for _, v := range vmas {
			if v.End < v.Start || len(v.Perms) != 4 {
				t.Fatalf("bad VMA accepted: %+v", v)
			}
			_ = Trackable(v)
		}
	})
}
