package procfs

import (
	"os"
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
