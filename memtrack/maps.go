package memtrack

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// VMA is one line of /proc/PID/maps.
type VMA struct {
	Start uint64 `json:"start"`
	End   uint64 `json:"end"`
	Perms string `json:"perms"` // e.g. "rw-p"
	Inode uint64 `json:"inode"`
	Path  string `json:"path,omitempty"` // "" for anonymous memory, "[heap]", "/usr/lib/x.so", ...
}

// Len is the size of the VMA in bytes.
func (v VMA) Len() uint64 { return v.End - v.Start }

// Label names the VMA for humans: its path or "[anon]".
func (v VMA) Label() string {
	if v.Path == "" {
		return "[anon]"
	}
	return v.Path
}

// ParseMaps parses the text of /proc/PID/maps. Malformed lines are an error naming the line.
func ParseMaps(data []byte) ([]VMA, error) {
	var out []VMA
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		v, err := parseMapsLine(line)
		if err != nil {
			return nil, fmt.Errorf("maps line %d %q: %w", n, line, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("maps: %w", err)
	}
	return out, nil
}

func parseMapsLine(line string) (VMA, error) {
	var v VMA
	// start-end perms offset dev inode [path]; the path may contain spaces.
	f := strings.Fields(line)
	if len(f) < 5 {
		return v, fmt.Errorf("want at least 5 fields, got %d", len(f))
	}
	lo, hi, ok := strings.Cut(f[0], "-")
	if !ok {
		return v, fmt.Errorf("address range %q has no '-'", f[0])
	}
	var err error
	if v.Start, err = strconv.ParseUint(lo, 16, 64); err != nil {
		return v, fmt.Errorf("start address: %w", err)
	}
	if v.End, err = strconv.ParseUint(hi, 16, 64); err != nil {
		return v, fmt.Errorf("end address: %w", err)
	}
	if v.End < v.Start {
		return v, fmt.Errorf("end %#x before start %#x", v.End, v.Start)
	}
	if len(f[1]) != 4 {
		return v, fmt.Errorf("perms %q are not 4 characters", f[1])
	}
	v.Perms = f[1]
	if v.Inode, err = strconv.ParseUint(f[4], 10, 64); err != nil {
		return v, fmt.Errorf("inode: %w", err)
	}
	if len(f) > 5 {
		// Keep the path exactly, spaces included: cut the first five fields off the line.
		rest := line
		for i := 0; i < 5; i++ {
			rest = strings.TrimLeft(rest, " \t")
			if j := strings.IndexAny(rest, " \t"); j >= 0 {
				rest = rest[j:]
			} else {
				rest = ""
			}
		}
		v.Path = strings.TrimLeft(rest, " \t")
	}
	return v, nil
}

// ReadMaps reads /proc/PID/maps.
func ReadMaps(pid int) ([]VMA, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, fmt.Errorf("read maps of pid %d: %w", pid, err)
	}
	return ParseMaps(data)
}

// Skip reasons for VMAs that are not tracked.
const (
	SkipNotWritable = "not writable"
	SkipShared      = "shared mapping"
	SkipFile        = "file-backed"
	SkipSpecial     = "special kernel mapping"
	SkipOtherUffd   = "registered with another userfaultfd" // the target uses userfaultfd itself
	SkipChanged     = "changed while arming"                // unmapped or remapped during Attach
)

// Trackable says whether a VMA is a writable private anonymous mapping memtrack registers, and
// if not, why ("" when it is trackable).
func Trackable(v VMA) string {
	switch {
	case v.Path == "[vvar]" || v.Path == "[vdso]" || v.Path == "[vsyscall]" || v.Path == "[vvar_vclock]" ||
		v.Path == "[uprobes]":
		return SkipSpecial
	case v.Perms[3] != 'p':
		return SkipShared
	case v.Inode != 0 || (v.Path != "" && v.Path != "[heap]" && v.Path != "[stack]" && !strings.HasPrefix(v.Path, "[anon:")):
		return SkipFile
	case v.Perms[1] != 'w':
		return SkipNotWritable
	}
	return ""
}
