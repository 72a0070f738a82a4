package anonymize

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	remap_file_path "github.com/checkpoint-restore/go-criu/v8/crit/images/remap-file-path"
	"github.com/criukit/criukit/anonymize/pseudo"
	"github.com/criukit/criukit/image"
	"golang.org/x/sys/unix"
)

// KitEntry is one path a restore of an anonymized dump needs on the restoring host.
type KitEntry struct {
	Path string `json:"path"`
	Kind string `json:"kind"` // "dir", "file", "fifo"
	Size int64  `json:"size,omitempty"`
	Mode uint32 `json:"mode,omitempty"` // permission bits (files)
}

const (
	sIFMT  = 0o170000
	sIFDIR = 0o040000
	sIFIFO = 0o010000
)

// RestoreKit lists the (mapped) paths an anonymized image dir refers to, so that a maintainer
// can recreate them (files of the recorded size, dirs, fifos) before `criu restore`: names from
// files.img (regular files, cwd/root, mapped files, fifos) and the dirs of bound unix sockets
// and of deleted files (CRIU recreates ghosts next to them). System paths are left out.
func RestoreKit(dir string) ([]KitEntry, error) {
	img, err := image.ReadFile(filepath.Join(dir, "files.img"))
	if err != nil {
		return nil, err
	}
	remapped := map[uint32]bool{}
	if rimg, err := image.ReadFile(filepath.Join(dir, "remap-fpath.img")); err == nil {
		for _, e := range rimg.Entries {
			if rm, ok := e.Msg.(*remap_file_path.RemapFilePathEntry); ok {
				remapped[rm.GetOrigId()] = true
			}
		}
	}
	fifos := map[uint32]bool{}
	for _, e := range img.Entries {
		if fe, ok := e.Msg.(*fdinfo.FileEntry); ok && fe.GetFifo() != nil {
			fifos[fe.GetFifo().GetRegfId()] = true
		}
	}
	seen := map[string]bool{}
	var out []KitEntry
	add := func(e KitEntry) {
		if e.Path == "" || e.Path == "/" || seen[e.Path] || pseudo.IsSystemPath(e.Path) || kernelFS(e.Path) {
			return
		}
		seen[e.Path] = true
		out = append(out, e)
	}
	addDir := func(p string) {
		for d := filepath.Dir(p); d != "/" && d != "."; d = filepath.Dir(d) {
			add(KitEntry{Path: d, Kind: "dir"})
		}
	}
	for _, e := range img.Entries {
		fe, ok := e.Msg.(*fdinfo.FileEntry)
		if !ok {
			continue
		}
		if reg := fe.GetReg(); reg != nil {
			name := reg.GetName()
			if !strings.HasPrefix(name, "/") {
				continue
			}
			if remapped[fe.GetId()] || remapped[reg.GetId()] || strings.HasSuffix(name, " (deleted)") || strings.Contains(filepath.Base(name), "link_remap.") {
				addDir(strings.TrimSuffix(name, " (deleted)"))
				continue
			}
			addDir(name)
			switch {
			case fifos[fe.GetId()] || reg.GetMode()&sIFMT == sIFIFO:
				add(KitEntry{Path: name, Kind: "fifo"})
			case reg.GetMode()&sIFMT == sIFDIR:
				add(KitEntry{Path: name, Kind: "dir"})
			default:
				add(KitEntry{Path: name, Kind: "file", Size: int64(reg.GetSize()), Mode: reg.GetMode() & 0o7777})
			}
		}
		if ify := fe.GetIfy(); ify != nil {
			// inotify watches: CRIU reopens the watched objects by path (fsnotify: Unable to open)
			for _, wd := range ify.GetWd() {
				if p := wd.GetFHandle().GetPath(); strings.HasPrefix(p, "/") {
					addDir(p)
					add(KitEntry{Path: p, Kind: "dir"})
				}
			}
		}
		if usk := fe.GetUsk(); usk != nil && len(usk.GetName()) > 0 && usk.GetName()[0] == '/' {
			addDir(strings.TrimRight(string(usk.GetName()), "\x00"))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// kernelFS: paths of kernel file systems (cgroup dirs are recreated by CRIU from cgroup.img).
func kernelFS(p string) bool {
	return strings.HasPrefix(p, "/sys/") || strings.HasPrefix(p, "/proc/")
}

// KitText renders a restore kit as text, one entry a line: "d 0 0 PATH" (directory), "p 0 0
// PATH" (fifo), "f SIZE MODE PATH" (file of SIZE bytes, octal permission MODE). No other words: the kit is leak-scanned like
// every output byte. `criukit anonymize kit OUTDIR` applies it.
func KitText(entries []KitEntry) string {
	var b strings.Builder
	for _, e := range entries {
		c := map[string]byte{"dir": 'd', "fifo": 'p', "file": 'f'}[e.Kind]
		fmt.Fprintf(&b, "%c %d %o %s\n", c, e.Size, e.Mode, e.Path)
	}
	return b.String()
}

// ReadKit parses KitText.
func ReadKit(path string) ([]KitEntry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	kinds := map[byte]string{'d': "dir", 'p': "fifo", 'f': "file"}
	var out []KitEntry
	for i, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if line == "" {
			continue
		}
		var k string
		var size int64
		var p string
		var mode uint32
		parts := strings.SplitN(line, " ", 4)
		if len(parts) != 4 || len(parts[0]) != 1 || kinds[parts[0][0]] == "" {
			return nil, fmt.Errorf("restore kit %s line %d: want \"KIND SIZE MODE PATH\"", path, i+1)
		}
		_, err1 := fmt.Sscanf(parts[1], "%d", &size)
		_, err2 := fmt.Sscanf(parts[2], "%o", &mode)
		if err1 != nil || err2 != nil || size < 0 || !strings.HasPrefix(parts[3], "/") {
			return nil, fmt.Errorf("restore kit %s line %d: bad size, mode or relative path", path, i+1)
		}
		k, p = kinds[parts[0][0]], filepath.Clean(parts[3])
		out = append(out, KitEntry{Path: p, Kind: k, Size: size, Mode: mode})
	}
	return out, nil
}

// ApplyRestoreKit creates the missing kit entries and returns what it created (deepest last),
// so a caller can remove them again.
func ApplyRestoreKit(entries []KitEntry) ([]string, error) {
	var created []string
	for _, e := range entries {
		if _, err := os.Lstat(e.Path); err == nil {
			continue
		}
		var err error
		switch e.Kind {
		case "dir":
			err = os.Mkdir(e.Path, 0o755)
		case "fifo":
			err = mkfifo(e.Path)
		default:
			var f *os.File
			if f, err = os.OpenFile(e.Path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err == nil {
				err = f.Truncate(e.Size)
				if err == nil {
					err = f.Chmod(os.FileMode(e.Mode & 0o777))
				}
				f.Close()
			}
		}
		if err != nil {
			return created, fmt.Errorf("restore kit: %s: %w", e.Path, err)
		}
		created = append(created, e.Path)
	}
	return created, nil
}

func mkfifo(p string) error { return unix.Mkfifo(p, 0o644) }
