package image

import (
	"io"
	"os"
	"path/filepath"
	"sort"
)

// FileInfo describes one file of an images directory.
type FileInfo struct {
	Name    string
	Kind    Kind
	Type    string // Desc.Name: "CORE", "PAGES", "UNKNOWN"...
	Magic   string // magic name ("" for raw/unknown)
	Entries int    // framed entries (pagemap head and ghost chunks count); -1 for raw/unknown files
	Size    int64  // bytes
	Link    string // symlink target (the `parent` link of incremental dumps), else ""
	Dir     bool   // a directory
	Special string // "fifo", "socket", "device" or "other" for files that are never opened
	Err     error  // why the file could not be read (the listing goes on)
}

// ReadDir lists every file of an images directory, sorted by name. Entries are counted by walking the
// framing (extras are skipped, pages are never read).
func ReadDir(dir string) ([]FileInfo, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make([]FileInfo, 0, len(des))
	for _, de := range des {
		fi := FileInfo{Name: de.Name(), Kind: KindUnknown, Type: UnknownDesc.Name, Entries: -1}
		p := filepath.Join(dir, de.Name())
		if de.Type()&os.ModeSymlink != 0 {
			fi.Link, fi.Err = os.Readlink(p)
			out = append(out, fi)
			continue
		}
		if de.IsDir() {
			fi.Dir = true
			out = append(out, fi)
			continue
		}
		st, err := de.Info()
		if err == nil {
			fi.Size = st.Size()
		}
		if de.Type()&os.ModeType != 0 || (err == nil && !st.Mode().IsRegular()) {
			// FIFOs, sockets, devices: never opened (a FIFO would block the listing).
			if err == nil {
				fi.Err = checkRegular(p, st)
			} else {
				fi.Err = err
			}
			switch m := de.Type(); {
			case m&os.ModeNamedPipe != 0:
				fi.Special = "fifo"
			case m&os.ModeSocket != 0:
				fi.Special = "socket"
			case m&os.ModeDevice != 0:
				fi.Special = "device"
			default:
				fi.Special = "other"
			}
			out = append(out, fi)
			continue
		}
		if d, err := Classify(fi.Name); err == nil {
			fi.Kind, fi.Type, fi.Magic = d.Kind, d.Name, d.Magic
		}
		if fi.Kind != KindRaw && fi.Kind != KindUnknown {
			fi.Entries, fi.Err = CountEntries(p)
		}
		out = append(out, fi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// CountEntries counts the framed entries of an image file by walking the framing (Reader.Skip):
// extras are skipped and payloads of images without extras are not parsed.
func CountEntries(path string) (int, error) {
	r, err := Open(path)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	n := 0
	for {
		_, err := r.Skip()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
	}
}
