// Package procfs reads what several packages need from /proc/PID: status fields (NSpid, NSsid,
// PPid), stat fields (start time) and the open fds: one reader instead of a loop in each.
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

// Stat returns the fields of /proc/PID/stat after the command name (which may hold spaces and
// parentheses): Stat(pid)[0] is field 3 (state), Stat(pid)[19] field 22 (starttime). pid 0 reads
// /proc/self/stat.
func Stat(pid int) ([]string, error) {
	p := "/proc/self/stat"
	if pid != 0 {
		p = fmt.Sprintf("/proc/%d/stat", pid)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("%s: no ')' after the command name", p)
	}
	return strings.Fields(s[i+1:]), nil
}

// StartTime returns field 22 of /proc/PID/stat (clock ticks after boot; pid 0: this process), 0 if
// pid is gone. Together with the pid it names one process: a reused pid has another start time, and
// so has a process CRIU restored.
func StartTime(pid int) uint64 {
	f, err := Stat(pid)
	if err != nil || len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}
