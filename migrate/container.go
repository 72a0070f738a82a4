package migrate

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	pagemap "github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"google.golang.org/protobuf/proto"

	"github.com/criukit/criukit/ckpt"
	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/internal/outfile"
	"github.com/criukit/criukit/internal/untar"
)

// A podman container as the source (Options.Container): every round is a real
// `podman container checkpoint --export` (podman and runc do everything they do for a checkpoint:
// cgroups, mounts, rootfs diff, config.dump, network.status), but the criu that runc starts gets a
// configuration file (CRIU_CONFIG_FILE, set by a wrapper passed as `--runtime-flag criu=WRAPPER`)
// that sends its pages to a page server on 127.0.0.1: criukit's relay, exactly as with --pid. The
// archive podman writes therefore holds no pages; the receiver puts the round chain's pages,
// flattened, into its checkpoint/ directory and imports it with `podman container restore --import`.

// podmanInfo is what `podman inspect` says about a container.
type podmanInfo struct {
	ID, Name, Runtime, Status string
	Pid                       int
}

func podmanCommand(ctx context.Context, global []string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "podman", append(append([]string{}, global...), args...)...)
}

func runPodman(ctx context.Context, global []string, args ...string) (string, error) {
	var out bytes.Buffer
	c := podmanCommand(ctx, global, args...)
	c.Stdout, c.Stderr = &out, &out
	if err := c.Run(); err != nil {
		return out.String(), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

func inspectContainer(ctx context.Context, global []string, name string) (podmanInfo, error) {
	out, err := runPodman(ctx, global, "container", "inspect", "--format", "{{.Id}} {{.Name}} {{.OCIRuntime}} {{.State.Status}} {{.State.Pid}}", name)
	if err != nil {
		return podmanInfo{}, err
	}
	f := strings.Fields(out)
	if len(f) != 5 {
		return podmanInfo{}, fmt.Errorf("podman inspect %s: unexpected output %.200q", name, out)
	}
	pid, err := strconv.Atoi(f[4])
	if err != nil {
		return podmanInfo{}, fmt.Errorf("podman inspect %s: pid %q", name, f[4])
	}
	return podmanInfo{ID: f[0], Name: f[1], Runtime: f[2], Status: f[3], Pid: pid}, nil
}

// checkContainer resolves Options.Container to the container's init pid (o.Pid) and refuses what
// a container migration cannot do.
func (o *Options) checkContainer(ctx context.Context) error {
	switch {
	case o.Lazy || o.Flat:
		return fmt.Errorf("migrate --container: --lazy and --flat are not available (podman container restore has no lazy-pages mode; the receiver flattens the chain itself)")
	case len(o.Map) > 0:
		return fmt.Errorf("migrate --container: --map is not available (podman restores the container into its own network; use --restore-arg=--ignore-static-ip to get a new address)")
	case o.Netns != "":
		return fmt.Errorf("migrate --container: --netns is not used (runc runs criu)")
	}
	info, err := inspectContainer(ctx, o.Podman, o.Container)
	if err != nil {
		return err
	}
	if info.Status != "running" || info.Pid <= 0 {
		return fmt.Errorf("migrate: container %s is %s, not running", o.Container, info.Status)
	}
	if filepath.Base(info.Runtime) != "runc" {
		return fmt.Errorf("migrate: container %s runs with %s; --container needs runc (its --criu flag lets criukit route criu's pages; start the container with podman --runtime runc)", o.Container, info.Runtime)
	}
	o.Pid = info.Pid
	return nil
}

// startContainerDump runs `podman container checkpoint` for round r with criu's pages going to a
// loopback listener, and returns criu's page-server connection once criu has connected.
// wait returns podman's exit status (call it exactly once).
//
// With criu tracking, criu also gets track-mem-uffd and, after round 0, prev-images-dir pointing at
// the previous round's inventory (parentInventoryDir): criu's pid-reuse check reads it.
func startContainerDump(ctx context.Context, o Options, dir string, r int, final, criuTrack bool) (conn *os.File, wait func() error, out *strings.Builder, err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("page-server listener: %w", err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	conf := filepath.Join(dir, "criu-page-server.conf")
	cfg := fmt.Sprintf("page-server\naddress 127.0.0.1\nport %d\nnetwork-lock nftables\n", port)
	if criuTrack {
		cfg += "track-mem-uffd\n"
		if r > 0 {
			prev, err := filepath.Abs(parentInventoryDir(filepath.Join(filepath.Dir(dir), fmt.Sprintf("round-%d", r-1))))
			if err != nil {
				return nil, nil, nil, err
			}
			if strings.ContainsAny(prev, " \t\n\"'\\") {
				return nil, nil, nil, fmt.Errorf("work directory %q: criu's configuration file cannot hold this path", prev)
			}
			cfg += "prev-images-dir " + prev + "\n"
		}
	}
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		return nil, nil, nil, err
	}
	wrap := filepath.Join(dir, "criu-wrapper")
	script := fmt.Sprintf("#!/bin/sh\nCRIU_CONFIG_FILE=%s exec %s \"$@\"\n", shQuote(conf), shQuote(o.Criu))
	if err := os.WriteFile(wrap, []byte(script), 0o700); err != nil {
		return nil, nil, nil, err
	}
	args := []string{"--runtime-flag", "criu=" + wrap, "container", "checkpoint", o.Container,
		"--export", filepath.Join(dir, containerArchive), "--compress", "none"}
	if !final {
		args = append(args, "--leave-running")
	}
	args = append(args, o.DumpArgs...)
	cmd := podmanCommand(ctx, o.Podman, args...)
	out = &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var werr error
	waited := false
	wait = func() error {
		if !waited {
			werr, waited = <-exited, true
		}
		return werr
	}
	type accepted struct {
		c   net.Conn
		err error
	}
	acc := make(chan accepted, 1)
	go func() {
		c, err := l.Accept()
		acc <- accepted{c, err}
	}()
	select {
	case a := <-acc:
		if a.err != nil {
			_ = cmd.Process.Kill()
			wait()
			return nil, nil, nil, a.err
		}
		f, err := a.c.(*net.TCPConn).File()
		a.c.Close()
		if err != nil {
			_ = cmd.Process.Kill()
			wait()
			return nil, nil, nil, err
		}
		return f, wait, out, nil
	case werr = <-exited:
		waited = true
		return nil, nil, nil, fmt.Errorf("podman container checkpoint %s ended before criu connected to the page server: %v: %s", o.Container, werr, strings.TrimSpace(out.String()))
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		wait()
		return nil, nil, nil, fmt.Errorf("podman container checkpoint %s: criu did not connect to the page server in 2 minutes: %s", o.Container, strings.TrimSpace(out.String()))
	}
}

// parentInventoryDir is where a container round keeps the inventory.img of podman's archive for
// the next round's --prev-images-dir (criu tracking).
func parentInventoryDir(roundDir string) string { return filepath.Join(roundDir, "parent-inventory") }

// keepInventory copies checkpoint/inventory.img out of the round's podman archive (read in place by
// ckpt, written by the one output helper).
func keepInventory(roundDir string) error {
	c, err := ckpt.Open(filepath.Join(roundDir, containerArchive), ckpt.Options{})
	if err != nil {
		return err
	}
	defer c.Close()
	b, err := fs.ReadFile(c.Images(), "inventory.img")
	if err != nil {
		return fmt.Errorf("%s: %w", containerArchive, err)
	}
	d := parentInventoryDir(roundDir)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return err
	}
	return outfile.WriteMode(filepath.Join(d, "inventory.img"), 0o600, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// containerArchive is the archive podman exports in each round's local directory.
const containerArchive = "podman-checkpoint.tar"

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// sendFile copies the file at path to w.
func sendFile(w io.Writer, path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return io.Copy(w, f)
}

// restoreContainer assembles a podman checkpoint archive from the sender's archive (no pages) and
// round r's chain (flattened into its checkpoint/ directory) and imports it as container name.
func (rv *Receiver) restoreContainer(ctx context.Context, r int, name string, args []string) (reply, error) {
	t0 := time.Now()
	work := filepath.Join(rv.Dir, "podman")
	if _, err := os.Lstat(work); err == nil {
		return reply{}, fmt.Errorf("%s exists: a receiver directory serves one migration", work)
	}
	in, err := os.Open(filepath.Join(rv.Dir, containerArchive))
	if err != nil {
		return reply{}, fmt.Errorf("no container archive (the sender did not send one): %w", err)
	}
	err = untarTree(in, work)
	in.Close()
	if err != nil {
		return reply{}, fmt.Errorf("container archive: %w", err)
	}
	ck := filepath.Join(work, "checkpoint")
	if fi, err := os.Stat(ck); err != nil || !fi.IsDir() {
		return reply{}, fmt.Errorf("container archive has no checkpoint/ directory")
	}
	if err := flattenChain(RoundDir(rv.Dir, r), ck); err != nil {
		return reply{}, fmt.Errorf("flatten round %d into %s: %w", r, ck, err)
	}
	arch := filepath.Join(rv.Dir, "podman-restore.tar")
	if err := tarTree(work, arch); err != nil {
		return reply{}, err
	}
	rargs := []string{"container", "restore", "--import", arch}
	if name != "" {
		rargs = append(rargs, "--name", name)
	}
	rargs = append(rargs, rv.Restore...)
	rargs = append(rargs, args...)
	if _, err := runPodman(ctx, rv.Podman, rargs...); err != nil {
		return reply{}, err
	}
	ref := name
	if ref == "" {
		// podman restores under the name in the archive's config.dump
		ref = containerNameOf(filepath.Join(work, "config.dump"))
	}
	info, err := inspectContainer(ctx, rv.Podman, ref)
	if err != nil {
		return reply{}, err
	}
	return reply{Pid: info.Pid, Seconds: time.Since(t0).Seconds(), Dir: arch, Name: info.Name}, nil
}

// containerNameOf reads the name from podman's config.dump ("" when unreadable).
func containerNameOf(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var c struct {
		Name string `json:"name"`
	}
	if json.Unmarshal(b, &c) != nil {
		return ""
	}
	return c.Name
}

// untarTree extracts a podman checkpoint archive (directories and regular files only, no absolute
// or escaping names) into dir, which must not exist.
func untarTree(r io.Reader, dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	_, err := untar.Extract(r, dir, func(name string, h *tar.Header) error {
		if h.Typeflag == tar.TypeSymlink && name == "checkpoint/parent" {
			return nil // criu's link to --prev-images-dir (criu tracking); the chain is flattened
		}
		return fmt.Errorf("refusing entry %q (type %c): podman checkpoint archives hold directories and regular files", h.Name, h.Typeflag)
	})
	return err
}

// tarTree writes the tree under dir (directories and regular files only) as an uncompressed tar
// at path, through the one output helper (temp file + rename).
func tarTree(dir, path string) error {
	return outfile.WriteMode(path, 0o600, func(w io.Writer) error {
		tw := tar.NewWriter(w)
		if err := tw.AddFS(os.DirFS(dir)); err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		return tw.Close()
	})
}

// flattenChain writes every pagemap of the images directory src (a round of a parent chain) into
// dst as a self-contained pair pagemap-*.img + pages-*.img: PE_PARENT pages are read through the
// chain and stored, so dst restores without `parent`.
func flattenChain(src, dst string) error {
	pms, err := pagemaps(src)
	if err != nil {
		return err
	}
	defer func() {
		for _, m := range pms {
			m.Close()
		}
	}()
	buf := make([]byte, 1<<20)
	for name, m := range pms {
		pages := filepath.Join(dst, fmt.Sprintf("pages-%d.img", m.PagesID))
		f, err := os.OpenFile(pages, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		var ents []*pagemap.PagemapEntry
		for _, r := range m.Ranges() {
			fl := r.Flags
			if fl&(image.PEPresent|image.PEParent) != 0 {
				fl = image.PEPresent | fl&image.PELazy
				for left, va := int64(r.NrPages)*image.PageSize, int64(r.Vaddr); left > 0 && err == nil; {
					k := min(left, int64(len(buf)))
					if _, err = m.ReadAt(buf[:k], va); err == nil {
						_, err = f.Write(buf[:k])
					}
					left -= k
					va += k
				}
				if err != nil {
					f.Close()
					return fmt.Errorf("%s at %#x: %w", name, r.Vaddr, err)
				}
			}
			ents = append(ents, &pagemap.PagemapEntry{Vaddr: proto.Uint64(r.Vaddr), CompatNrPages: proto.Uint32(uint32(min(r.NrPages, 0xffffffff))),
				Flags: proto.Uint32(fl), NrPages: proto.Uint64(r.NrPages)})
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := writePagemapFile(filepath.Join(dst, name), m.PagesID, ents); err != nil {
			return err
		}
	}
	return nil
}
