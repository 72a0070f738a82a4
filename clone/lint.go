package clone

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

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
		for _, e := range img.Entries {
			fe, ok := e.Msg.(*fdinfo.FileEntry)
			if !ok || fe.Usk == nil {
				continue
			}
			name := fe.Usk.GetName()
			switch {
			case len(name) == 0:
			case name[0] == 0:
				add(Info, "abstract unix socket", "@%s: each copy has its own network namespace", bytes.TrimLeft(name, "\x00"))
			case !fe.Usk.GetDeleted():
				add(Refuse, "path-bound unix socket", "%s (socket ino %#x): restore unlinks and rebinds the path, so copies on one filesystem steal it from each other", name, fe.Usk.GetIno())
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
