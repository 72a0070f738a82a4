package inspect

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/criukit/criukit/ckpt"
)

// DefaultDirs are where checkpoints live by default: Kubernetes' forensic checkpoints (kubelet,
// CRI-O and containerd write checkpoint-<pod>_<ns>-<container>-<time>.tar there), and podman's and
// CRI-O's per-container checkpoints kept in containers/storage (`podman container checkpoint`
// without --export leaves userdata/checkpoint/).
var DefaultDirs = []string{
	"/var/lib/kubelet/checkpoints",
	"/var/lib/containers/storage/overlay-containers/*/userdata",
	"/run/containers/storage/overlay-containers/*/userdata",
}

// Listed is one checkpoint found by List.
type Listed struct {
	Namespace    string    `json:"namespace,omitempty"`
	Pod          string    `json:"pod,omitempty"`
	Container    string    `json:"container"`
	Engine       string    `json:"engine"`
	Checkpointed time.Time `json:"checkpointed"`
	Name         string    `json:"checkpoint_name"`
	Path         string    `json:"path"`
	Dir          string    `json:"dir"`
	Size         int64     `json:"size"`
	Error        string    `json:"error,omitempty"`
}

// List finds checkpoints in dirs (DefaultDirs when empty; glob patterns allowed): archives named
// checkpoint-* (checkpointctl list's rule) or any *.tar, *.tar.gz, *.tar.zst that opens as one,
// and unpacked container checkpoints (a directory holding checkpoint/pstree.img).
func List(dirs []string) ([]Listed, error) {
	if len(dirs) == 0 {
		dirs = DefaultDirs
	}
	var out []Listed
	seen := map[string]bool{}
	for _, pat := range dirs {
		matches, err := filepath.Glob(pat)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", pat, err)
		}
		for _, dir := range matches {
			var cands []string
			if _, err := os.Stat(filepath.Join(dir, ckpt.ImagesDir, "pstree.img")); err == nil {
				cands = append(cands, dir)
			}
			for _, g := range []string{"checkpoint-*", "*.tar", "*.tar.gz", "*.tgz", "*.tar.zst"} {
				m, _ := filepath.Glob(filepath.Join(dir, g))
				cands = append(cands, m...)
			}
			for _, p := range cands {
				if seen[p] {
					continue
				}
				seen[p] = true
				st, err := os.Stat(p)
				if err != nil {
					continue
				}
				l := Listed{Name: filepath.Base(p), Path: p, Dir: dir, Size: st.Size()}
				c, err := ckpt.Open(p, ckpt.Options{SkipPages: true})
				if err != nil {
					// Other tars (rootfs-diff.tar, devshm-checkpoint.tar...) are not checkpoints:
					// only checkpoint-* names are reported as broken.
					if strings.HasPrefix(l.Name, "checkpoint-") {
						l.Error = err.Error()
						out = append(out, l)
					}
					continue
				}
				ct, err := ReadContainer(c.FS())
				if st.IsDir() {
					l.Size = c.Sizes.Checkpoint
				}
				c.Close()
				switch {
				case err != nil:
					l.Error = err.Error()
				case ct == nil:
					l.Engine = "CRIU"
					// containers/storage keeps podman's and CRI-O's checkpoints in
					// overlay-containers/<id>/userdata/checkpoint; the engine's metadata is in its DB.
					if filepath.Base(p) == "userdata" {
						id := filepath.Base(filepath.Dir(p))
						l.Container, l.Engine = id[:min(12, len(id))], "Podman/CRI-O (containers/storage)"
					}
				default:
					l.Namespace, l.Pod, l.Container, l.Engine = ct.Namespace, ct.Pod, ct.Name, ct.Engine
					if t, err := time.Parse(time.RFC3339, ct.Checkpointed); err == nil {
						l.Checkpointed = t
					}
				}
				out = append(out, l)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// WriteList prints checkpointctl list's table.
func WriteList(w io.Writer, ls []Listed) {
	tw := newTable(w, "NAMESPACE", "POD", "CONTAINER", "ENGINE", "TIME CHECKPOINTED", "CHECKPOINT NAME", "SIZE", "DIR")
	for _, l := range ls {
		when := "-"
		if !l.Checkpointed.IsZero() {
			when = l.Checkpointed.Format(time.RFC822)
		}
		name := l.Name
		if l.Error != "" {
			name += " (error: " + l.Error + ")"
		}
		tw.row(dash(l.Namespace), dash(l.Pod), dash(l.Container), dash(l.Engine), when, name, ByteSize(l.Size), l.Dir)
	}
	tw.flush()
}
