// Package procfs reads what several packages need from /proc/PID: status fields (NSpid, NSsid,
// PPid) and the open fds: one reader instead of a loop in each.
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

// FD is one open file descriptor of a process.
type FD struct {
	Num  int
	Path string // /proc/PID/fd/NUM (stat it to reach the open file itself)
	Link string // its readlink: a path, "socket:[ino]", "anon_inode:[eventfd]", ...
}

// FDs lists the open file descriptors of pid (those closed while listing are left out).
func FDs(pid int) ([]FD, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make([]FD, 0, len(ents))
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p := dir + "/" + e.Name()
		link, err := os.Readlink(p)
		if err != nil {
			continue // closed meanwhile
		}
		out = append(out, FD{Num: n, Path: p, Link: link})
	}
	return out, nil
}
