package cow

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// TreePids lists pid and its descendants (parents first), from /proc/PID/task/TID/children.
func TreePids(pid int) []int {
	out := []int{pid}
	seen := map[int]bool{pid: true}
	for i := 0; i < len(out); i++ {
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", out[i]))
		for _, t := range tasks {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", out[i], t.Name()))
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil && !seen[c] {
					seen[c] = true
					out = append(out, c)
				}
			}
		}
	}
	return out
}

// PageKey identifies the physical page behind a virtual page: the PFN of a present page, or the
// swap entry (with bit 63 set) of a swapped one.
type PageKey uint64

// FramePage is one anonymous page of a live process.
type FramePage struct {
	Vaddr uint64
	Key   PageKey
}

// ScanFrames reads /proc/PID/maps and /proc/PID/pagemap (PFNs need root) and returns the
// anonymous (not file-backed) present or swapped pages of pid, in address order.
func ScanFrames(pid int) ([]FramePage, error) {
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	pm, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", pid))
	if err != nil {
		return nil, err
	}
	defer pm.Close()
	var out []FramePage
	var buf []byte
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 5 && strings.HasPrefix(f[5], "[v") { // vsyscall, vvar: not dumped
			continue
		}
		var lo, hi uint64
		if _, err := fmt.Sscanf(f[0], "%x-%x", &lo, &hi); err != nil {
			continue
		}
		n := (hi - lo) / 4096
		if uint64(cap(buf)) < n*8 {
			buf = make([]byte, n*8)
		}
		b := buf[:n*8]
		if _, err := pm.ReadAt(b, int64(lo/4096*8)); err != nil {
			continue
		}
		for i := uint64(0); i < n; i++ {
			e := binary.NativeEndian.Uint64(b[i*8:])
			const present, swapped, file = 1 << 63, 1 << 62, 1 << 61
			switch {
			case e&file != 0:
			case e&present != 0:
				if pfn := e & (1<<55 - 1); pfn != 0 {
					out = append(out, FramePage{lo + i*4096, PageKey(pfn)})
				}
			case e&swapped != 0:
				out = append(out, FramePage{lo + i*4096, PageKey(e&(1<<55-1) | 1<<63)})
			}
		}
	}
	return out, nil
}

// UniqueFrames counts the distinct physical pages behind the anonymous pages of pids.
func UniqueFrames(pids []int) (frames, pages int, err error) {
	seen := map[PageKey]bool{}
	for _, pid := range pids {
		ps, err := ScanFrames(pid)
		if err != nil {
			return 0, 0, err
		}
		pages += len(ps)
		for _, p := range ps {
			seen[p.Key] = true
		}
	}
	return len(seen), pages, nil
}
