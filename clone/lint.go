package clone

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"

	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/netrw"
)

// Severity of a lint finding.
const (
	Refuse = "refuse" // copies would break each other: clone refuses
	Warn   = "warn"   // may conflict depending on the application
	Info   = "info"   // handled by clone (own netns/pidns, IP rewrite)
)

// Finding is one conflict between copies.
type Finding struct {
	Level  string `json:"level"`
	What   string `json:"what"`
	Detail string `json:"detail"`
}

// Lint lists what conflicts when several copies of the images in dir run at once on this host.
func Lint(dir string) ([]Finding, error) {
	var out []Finding
	add := func(level, what, format string, args ...any) {
		out = append(out, Finding{level, what, fmt.Sprintf(format, args...)})
	}
	add(Info, "pids", "each copy is restored in a new pid namespace, so the dumped pids can repeat")
	if img, err := image.ReadFile(filepath.Join(dir, "files.img")); err == nil {
		written := map[string]bool{}
		for _, e := range img.Entries {
			fe, ok := e.Msg.(*fdinfo.FileEntry)
			if !ok {
				continue
			}
			if r := fe.GetReg(); r != nil && r.GetFlags()&(syscall.O_WRONLY|syscall.O_RDWR) != 0 && sharedPath(r.GetName()) && !written[r.GetName()] {
				written[r.GetName()] = true
				add(Warn, "regular file open for writing", "%s: every copy writes the same file (log lines overwrite each other at their own offsets); --rootfs-overlay gives each copy its own", r.GetName())
			}
			if fe.Usk == nil {
				continue
			}
			// Names are kept with their NULs in the image (abstract: leading NUL; paths may end with one).
			name := fe.Usk.GetName()
			switch {
			case len(name) == 0:
			case name[0] == 0:
				add(Info, "abstract unix socket", "@%s: each copy has its own network namespace", bytes.TrimRight(bytes.TrimLeft(name, "\x00"), "\x00"))
			case !fe.Usk.GetDeleted():
				add(Refuse, "path-bound unix socket", "%s (socket ino %#x): restore unlinks and rebinds the path, so copies on one filesystem steal it from each other; --rootfs-overlay gives each copy its own root and fixes it", bytes.TrimRight(name, "\x00"), fe.Usk.GetIno())
			}
		}
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	d, err := netrw.Load(dir)
	if err != nil {
		return nil, err
	}
	peers := map[string]bool{}
	for _, s := range d.Sockets {
		if s.Connected() {
			peers[s.Src.String()+" "+s.Dst.String()] = true
		}
	}
	for _, s := range d.Sockets {
		switch {
		case s.Connected() && !peers[s.Dst.String()+" "+s.Src.String()]:
			add(Refuse, "outside TCP peer", "socket ino %#x %s -> %s: the peer knows one connection, not one per copy; close it first (criukit net close --external)", s.Ino, s.Src, s.Dst)
		case s.State == "LISTEN" && s.Src.Addr().Unmap().IsLoopback():
			add(Info, "listener on loopback", "%s (socket ino %#x): kept as it is in every copy (even with --ip-pool): each copy's netns has its own lo, so they do not collide, and none is reachable from the host's lo", s.Src, s.Ino)
		case s.State == "LISTEN" && !s.Src.Addr().IsUnspecified():
			add(Info, "listener on a specific address", "%s (socket ino %#x): moved to the copy's own address with --ip-pool, else kept in the copy's own netns", s.Src, s.Ino)
		}
	}
	for _, f := range []struct{ glob, level, what, detail string }{
		{"ghost-file-*.img", Warn, "ghost files", "deleted files are recreated next to their old path: copies share those paths (use a per-copy root)"},
		{"remap-fpath.img", Warn, "file remaps", "link-remapped files live on the shared filesystem"},
		{"filelocks.img", Warn, "file locks", "locks on shared files are taken by every copy"},
		{"ipcns-*.img", Info, "SysV IPC", "the dump owns its IPC namespace"},
	} {
		m, _ := filepath.Glob(filepath.Join(dir, f.glob))
		for _, p := range m {
			if fi, err := os.Stat(p); err == nil && fi.Size() > 12 {
				add(f.level, f.what, "%s: %s", filepath.Base(p), f.detail)
				break
			}
		}
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "utsns-*.img")); len(m) == 0 {
		add(Info, "hostname", "the tree shares the host's UTS namespace: every copy sees the same hostname")
	}
	return out, nil
}

// sharedPath: a file the copies really share (not a device, proc or sys file, which each copy's
// namespaces give it its own view of or which do not keep data).
func sharedPath(p string) bool {
	for _, pre := range []string{"/dev/", "/proc/", "/sys/"} {
		if strings.HasPrefix(p, pre) {
			return false
		}
	}
	return p != "" && p != "/"
}
