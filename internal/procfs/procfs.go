// Package procfs reads the fields of /proc/PID/status that several packages need (NSpid, NSsid,
// PPid): one parser instead of a loop in each.
package procfs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Status is /proc/PID/status: each key ("NSpid", "PPid", ...) with its whitespace-separated values.
type Status map[string][]string

// ReadStatus reads /proc/pid/status.
func ReadStatus(pid int) (Status, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	st := Status{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			st[k] = strings.Fields(v)
		}
	}
	return st, nil
}

// LastInt returns the last value of key as a number. For the NS* keys that is the id in the
// process' own (innermost) pid namespace, the one the process itself sees.
func (s Status) LastInt(key string) (int, bool) {
	f := s[key]
	if len(f) == 0 {
		return 0, false
	}
	n, err := strconv.Atoi(f[len(f)-1])
	return n, err == nil
}
