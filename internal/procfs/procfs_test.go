package procfs

import (
	"os"
	"strconv"
	"testing"
)

func TestReadStatus(t *testing.T) {
	st, err := ReadStatus(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key  string
		want int
	}{{"NSpid", os.Getpid()}, {"PPid", os.Getppid()}, {"Pid", os.Getpid()}} {
		if got, ok := st.LastInt(c.key); !ok || got != c.want {
			t.Errorf("%s: %d %v, want %d", c.key, got, ok, c.want)
		}
	}
	if _, ok := st.LastInt("NoSuchKey"); ok {
		t.Error("missing key found")
	}
	if _, err := ReadStatus(-1); err == nil {
		t.Error("pid -1 read")
	}
}

func TestFDs(t *testing.T) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fds, err := FDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range fds {
		if d.Num == int(f.Fd()) {
			found = d.Link == "/proc/"+strconv.Itoa(os.Getpid())+"/status"
		}
	}
	if !found {
		t.Errorf("fd %d (/proc/self/status) not listed right: %+v", f.Fd(), fds)
	}
}

func TestStartTime(t *testing.T) {
	self := StartTime(0)
	if self == 0 || StartTime(os.Getpid()) != self {
		t.Fatalf("StartTime(0) = %d, StartTime(%d) = %d", self, os.Getpid(), StartTime(os.Getpid()))
	}
	if f, err := Stat(os.Getpid()); err != nil || f[0] != "R" && f[0] != "S" {
		t.Errorf("Stat: %v %v", f, err)
	}
	if StartTime(1<<30) != 0 {
		t.Error("StartTime of a pid that cannot exist is not 0")
	}
}
