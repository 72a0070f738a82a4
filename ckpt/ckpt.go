package ckpt

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/criukit/criukit/internal/compress"
)

// ImagesDir is where container checkpoint archives keep CRIU's images.
const ImagesDir = "checkpoint"

// Kind tells what a checkpoint path is.
type Kind string

const (
	KindImageDir     Kind = "images-dir"    // a CRIU images directory (pstree.img at its top)
	KindContainerDir Kind = "container-dir" // an unpacked container checkpoint (checkpoint/pstree.img)
	KindArchive      Kind = "archive"       // a container checkpoint archive (tar, gzip, zstd)
)

// Options tune Open.
type Options struct {
	// SkipPages leaves pages-*.img of compressed archives out of the spool (their sizes are still
	// known): for metadata-only views (show, list, inspect without memory) it halves the work.
	SkipPages bool
	// TempDir is where compressed archives are spooled (os.TempDir() when empty).
	TempDir string
	// The hooks below see each pages-*.img member of a compressed archive when the stream reaches it,
	// with sofar: the images spooled before it (podman, CRI-O and containerd write pagemap-*.img,
	// mm-*.img and core-*.img before pages-*.img, in name order). They let a caller avoid spooling
	// the pages at all.
	//
	// StreamPages, when set, consumes the decompressed pages file r itself (a memory search); the
	// file is then not kept (reading it gives ErrPagesStreamed). Returning ErrKeep spools it as usual
	// (only valid before reading r).
	StreamPages func(sofar fs.FS, name string, size int64, r io.Reader) error
	// KeepPages, when set (and StreamPages is not), returns the byte ranges of the pages file to keep
	// (e.g. the pages holding command lines and environments); reads outside them fail with
	// ErrPagesSkipped. ok=false keeps the whole file.
	KeepPages func(sofar fs.FS, name string) (keep []Range, ok bool)
}

// Range is a byte range of a file.
type Range struct{ Off, Len int64 }

// ErrKeep is returned by a StreamPages hook that declines a file (it is spooled as usual).
var ErrKeep = errors.New("keep this pages file")

// ErrPagesStreamed is returned when a pages file consumed by a StreamPages hook is read.
var ErrPagesStreamed = errors.New("pages streamed to the caller while opening, not kept")

// Sizes are the byte counts checkpointctl's show reports, from the archive's headers.
type Sizes struct {
	Archive    int64 `json:"archive_bytes"`               // the archive file (compressed) or the directory total
	Checkpoint int64 `json:"checkpoint_bytes"`            // regular files under checkpoint/ (or the images dir)
	Pages      int64 `json:"pages_bytes"`                 // pages-*.img under checkpoint/
	RootfsDiff int64 `json:"rootfs_diff_bytes,omitempty"` // rootfs-diff.tar
	Spooled    int64 `json:"spooled_bytes,omitempty"`     // bytes copied to the temporary spool (compressed archives)
}

// Checkpoint is an opened checkpoint. Close it to release the archive and the spool.
type Checkpoint struct {
	Path        string
	Kind        Kind
	Compression compress.Kind // archives only
	Sizes       Sizes

	fsys   fs.FS // the whole checkpoint (archive root, or the directory)
	images string
	closer []io.Closer
}

// FS returns the whole checkpoint: for archives and container dirs the archive's layout
// (config.dump, spec.dump, checkpoint/...), for an images directory the directory itself.
func (c *Checkpoint) FS() fs.FS { return c.fsys }

// ImagesPath is the directory of CRIU images inside FS ("checkpoint" or ".").
func (c *Checkpoint) ImagesPath() string { return c.images }

// Images returns an FS rooted at the CRIU images (pstree.img, core-*.img, pages-*.img...).
func (c *Checkpoint) Images() fs.FS {
	if c.images == "." {
		return c.fsys
	}
	sub, err := fs.Sub(c.fsys, c.images)
	if err != nil {
		return c.fsys
	}
	return sub
}

// IsContainer reports whether the checkpoint carries a container engine's metadata (config.dump...).
func (c *Checkpoint) IsContainer() bool { return c.Kind != KindImageDir }

// Close releases the archive file and removes the spool.
func (c *Checkpoint) Close() error {
	var err error
	for i := len(c.closer) - 1; i >= 0; i-- {
		if e := c.closer[i].Close(); e != nil && err == nil {
			err = e
		}
	}
	c.closer = nil
	return err
}

// Open opens a checkpoint: an images directory, an unpacked container checkpoint directory, or an
// archive (compression found from its content, never its name).
func Open(p string, o Options) (*Checkpoint, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return openDir(p)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a directory or a regular file (want an images directory or a checkpoint archive)", p)
	}
	return openArchive(p, st.Size(), o)
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func openDir(dir string) (*Checkpoint, error) {
	c := &Checkpoint{Path: dir, fsys: os.DirFS(dir)}
	switch {
	case exists(filepath.Join(dir, "pstree.img")) || exists(filepath.Join(dir, "inventory.img")):
		c.Kind, c.images = KindImageDir, "."
	case exists(filepath.Join(dir, ImagesDir, "pstree.img")):
		c.Kind, c.images = KindContainerDir, ImagesDir
	default:
		// An images directory of some other shape (a partial dump): let the commands report what is missing.
		c.Kind, c.images = KindImageDir, "."
	}
	des, err := os.ReadDir(filepath.Join(dir, c.images))
	if err == nil {
		for _, de := range des {
			if fi, err := de.Info(); err == nil && fi.Mode().IsRegular() {
				c.Sizes.Checkpoint += fi.Size()
				if strings.HasPrefix(de.Name(), "pages-") {
					c.Sizes.Pages += fi.Size()
				}
			}
		}
	}
	c.Sizes.Archive = c.Sizes.Checkpoint
	if c.Kind == KindContainerDir {
		if fi, err := os.Stat(filepath.Join(dir, "rootfs-diff.tar")); err == nil {
			c.Sizes.RootfsDiff = fi.Size()
		}
	}
	return c, nil
}

// ErrNotArchive is returned for a file that is neither a tar nor a compressed tar.
var ErrNotArchive = errors.New("not a checkpoint archive (want a tar, tar+gzip or tar+zstd, or an images directory)")

// ErrPagesSkipped is returned when a pages file of a compressed archive opened with SkipPages is read.
var ErrPagesSkipped = errors.New("pages not loaded (opened with SkipPages)")

func openArchive(p string, size int64, o Options) (*Checkpoint, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	c := &Checkpoint{Path: p, Kind: KindArchive, images: ImagesDir}
	c.Sizes.Archive = size
	c.closer = append(c.closer, f)
	if err := c.index(f, p, o); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Checkpoint) index(f *os.File, p string, o Options) error {
	var head [512]byte
	n, _ := io.ReadFull(f, head[:])
	c.Compression = compress.Detect(head[:n])
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	t := newTarFS()
	if c.Compression == compress.None {
		if n < 512 || !tarHeaderOK(head[:]) {
			return fmt.Errorf("%s: %w", p, ErrNotArchive)
		}
		if err := t.indexInPlace(f, p); err != nil {
			return err
		}
	} else {
		zr, _, err := compress.NewReaderAsync(f)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		defer zr.Close()
		sp, err := os.CreateTemp(o.TempDir, "criukit-ckpt-*.spool")
		if err != nil {
			return fmt.Errorf("%s: spool for the decompressed checkpoint: %w", p, err)
		}
		os.Remove(sp.Name()) // unlinked: the space goes away with the last close, even on a crash
		c.closer = append(c.closer, sp)
		if err := t.indexSpooled(zr, sp, p, o); err != nil {
			return err
		}
		c.Sizes.Spooled = t.spooled
	}
	for name, e := range t.files {
		if e.dir || e.link != "" {
			continue
		}
		switch {
		case strings.HasPrefix(name, ImagesDir+"/"):
			c.Sizes.Checkpoint += e.size
			if strings.HasPrefix(name, ImagesDir+"/pages-") {
				c.Sizes.Pages += e.size
			}
		case name == "rootfs-diff.tar":
			c.Sizes.RootfsDiff = e.size
		}
	}
	if _, ok := t.files[ImagesDir]; !ok {
		if _, ok := t.files["pstree.img"]; ok {
			// A tar of a plain images directory.
			c.images = "."
			for name, e := range t.files {
				if !e.dir && e.link == "" && !strings.Contains(name, "/") && strings.HasSuffix(name, ".img") {
					c.Sizes.Checkpoint += e.size
					if strings.HasPrefix(name, "pages-") {
						c.Sizes.Pages += e.size
					}
				}
			}
		} else {
			return fmt.Errorf("%s: no checkpoint/ directory and no pstree.img in the archive: not a container checkpoint", p)
		}
	}
	c.fsys = t
	return nil
}

// tarHeaderOK checks a ustar/gnu magic or a valid v7 checksum in the first block.
func tarHeaderOK(b []byte) bool {
	if string(b[257:262]) == "ustar" {
		return true
	}
	var sum int64
	for i, c := range b {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
	}
	s := strings.Trim(string(b[148:156]), " \x00")
	var want int64
	if _, err := fmt.Sscanf(s, "%o", &want); err != nil {
		return false
	}
	return sum == want
}

// entry is one file of a tar.
type entry struct {
	name  string // clean path inside the archive
	off   int64  // data offset in ra
	size  int64
	mode  fs.FileMode
	mtime time.Time
	dir   bool
	link  string // symlink target
	ra    io.ReaderAt
	skip  error // why the data is unavailable (ErrPagesSkipped)
	kids  map[string]*entry
}

type tarFS struct {
	files   map[string]*entry
	spooled int64
}

func newTarFS() *tarFS {
	return &tarFS{files: map[string]*entry{".": {name: ".", dir: true, mode: fs.ModeDir | 0o755, kids: map[string]*entry{}}}}
}

func cleanName(n string) (string, bool) {
	n = path.Clean(strings.TrimPrefix(n, "/"))
	if n == "." || n == ".." || strings.HasPrefix(n, "../") || !fs.ValidPath(n) {
		return "", false
	}
	return n, true
}

// add inserts e and its missing parent directories.
func (t *tarFS) add(e *entry) {
	if old, ok := t.files[e.name]; ok && old.dir && e.dir {
		return
	}
	if e.dir && e.kids == nil {
		e.kids = map[string]*entry{}
	}
	t.files[e.name] = e
	child := e
	for dir := path.Dir(e.name); ; dir = path.Dir(dir) {
		parent, ok := t.files[dir]
		if !ok {
			parent = &entry{name: dir, dir: true, mode: fs.ModeDir | 0o755, kids: map[string]*entry{}}
			t.files[dir] = parent
		}
		if !parent.dir {
			return // a file used as a directory: keep the file, drop the child
		}
		parent.kids[path.Base(child.name)] = child
		if ok || dir == "." {
			return
		}
		child = parent
	}
}

func (t *tarFS) fromHeader(h *tar.Header) (*entry, bool) {
	name, ok := cleanName(h.Name)
	if !ok {
		return nil, false
	}
	e := &entry{name: name, size: h.Size, mode: h.FileInfo().Mode(), mtime: h.ModTime}
	switch h.Typeflag {
	case tar.TypeDir:
		e.dir, e.size = true, 0
	case tar.TypeSymlink:
		e.link, e.size = h.Linkname, 0
	case tar.TypeReg, tar.TypeRegA:
	default:
		return nil, false // devices, fifos, hard links: not part of a checkpoint's images
	}
	return e, true
}

// indexInPlace walks the headers of an uncompressed tar; data stays where it is (tar.Reader seeks
// over it, so indexing reads one 512-byte header per file).
func (t *tarFS) indexInPlace(f *os.File, p string) error {
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: tar: %w", p, err)
		}
		e, ok := t.fromHeader(h)
		if !ok {
			continue
		}
		if !e.dir && e.link == "" {
			off, err := f.Seek(0, io.SeekCurrent)
			if err != nil {
				return err
			}
			e.off, e.ra = off, f
		}
		t.add(e)
	}
}

// spoolWanted says which files of a compressed archive are copied to the spool: the images and the
// small metadata files; the rootfs diff and other payload tars are only sized.
func spoolWanted(name string, size int64, skipPages bool) (bool, error) {
	if strings.HasPrefix(name, ImagesDir+"/") || !strings.Contains(name, "/") && strings.HasSuffix(name, ".img") {
		base := path.Base(name)
		if skipPages && strings.HasPrefix(base, "pages-") && strings.HasSuffix(base, ".img") {
			return false, ErrPagesSkipped
		}
		return true, nil
	}
	if strings.HasSuffix(name, ".tar") || strings.HasSuffix(name, ".tar.gz") || strings.HasSuffix(name, ".tar.zst") {
		return false, fmt.Errorf("%s is not kept when reading a compressed archive", name)
	}
	return size <= 16<<20, fmt.Errorf("%s (%d bytes) is not kept when reading a compressed archive", name, size)
}

func isPages(name string) bool {
	base := path.Base(name)
	return strings.HasPrefix(base, "pages-") && strings.HasSuffix(base, ".img")
}

func (t *tarFS) indexSpooled(r io.Reader, sp *os.File, p string, o Options) error {
	tr := tar.NewReader(r)
	var off int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if t.spooled == 0 && len(t.files) == 1 {
				return fmt.Errorf("%s: %w: %v", p, ErrNotArchive, err)
			}
			return fmt.Errorf("%s: tar (after %d files): %w", p, len(t.files)-1, err)
		}
		e, ok := t.fromHeader(h)
		if !ok {
			continue
		}
		if !e.dir && e.link == "" && isPages(e.name) && !o.SkipPages && (o.StreamPages != nil || o.KeepPages != nil) {
			images := path.Dir(e.name)
			sofar, err := fs.Sub(t, images)
			if err != nil {
				return err
			}
			if o.StreamPages != nil {
				cr := &countingReader{r: io.LimitReader(tr, e.size)}
				err := o.StreamPages(sofar, path.Base(e.name), e.size, cr)
				switch {
				case err == nil:
					e.skip = ErrPagesStreamed
					t.add(e)
					continue
				case errors.Is(err, ErrKeep) && cr.n == 0:
				default:
					return fmt.Errorf("%s: %s: %w", p, e.name, err)
				}
			} else if keep, ok := o.KeepPages(sofar, path.Base(e.name)); ok {
				sr, n, err := spoolRanges(tr, sp, off, e.size, keep)
				if err != nil {
					return fmt.Errorf("%s: %s: %w", p, e.name, err)
				}
				e.ra, off, t.spooled = sr, off+n, t.spooled+n
				t.add(e)
				continue
			}
		}
		if !e.dir && e.link == "" {
			keep, why := spoolWanted(e.name, e.size, o.SkipPages)
			if keep {
				n, err := io.Copy(sp, tr)
				if err != nil {
					return fmt.Errorf("%s: %s: %w", p, e.name, err)
				}
				if n != e.size {
					return fmt.Errorf("%s: %s: %d of %d bytes (truncated archive)", p, e.name, n, e.size)
				}
				e.off, e.ra = off, sp
				off += n
				t.spooled += n
			} else {
				e.skip = why
			}
		}
		t.add(e)
	}
}

// Open implements fs.FS.
func (t *tarFS) Open(name string) (fs.File, error) {
	e, err := t.lookup("open", name, true)
	if err != nil {
		return nil, err
	}
	if e.dir {
		return &dirFile{e: e}, nil
	}
	if e.skip != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: e.skip}
	}
	return &file{e: e, SectionReader: io.NewSectionReader(e.ra, e.off, e.size)}, nil
}

func (t *tarFS) lookup(op, name string, follow bool) (*entry, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	for hops := 0; ; hops++ {
		e, ok := t.files[name]
		if !ok {
			return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		if e.link == "" || !follow {
			return e, nil
		}
		if hops > 40 || path.IsAbs(e.link) {
			return nil, &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("symlink to %s leaves the archive", e.link)}
		}
		n, ok := cleanName(path.Join(path.Dir(name), e.link))
		if !ok {
			return nil, &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("symlink to %s leaves the archive", e.link)}
		}
		name = n
	}
}

// Stat implements fs.StatFS.
func (t *tarFS) Stat(name string) (fs.FileInfo, error) {
	e, err := t.lookup("stat", name, true)
	if err != nil {
		return nil, err
	}
	return info{e}, nil
}

// Lstat and ReadLink implement fs.ReadLinkFS (the `parent` link of incremental dumps).
func (t *tarFS) Lstat(name string) (fs.FileInfo, error) {
	e, err := t.lookup("lstat", name, false)
	if err != nil {
		return nil, err
	}
	return info{e}, nil
}

func (t *tarFS) ReadLink(name string) (string, error) {
	e, err := t.lookup("readlink", name, false)
	if err != nil {
		return "", err
	}
	if e.link == "" {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	return e.link, nil
}

// ReadDir implements fs.ReadDirFS.
func (t *tarFS) ReadDir(name string) ([]fs.DirEntry, error) {
	e, err := t.lookup("readdir", name, true)
	if err != nil {
		return nil, err
	}
	if !e.dir {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	return e.list(), nil
}

func (e *entry) list() []fs.DirEntry {
	out := make([]fs.DirEntry, 0, len(e.kids))
	for _, k := range e.kids {
		out = append(out, fs.FileInfoToDirEntry(info{k}))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

type info struct{ e *entry }

func (i info) Name() string       { return path.Base(i.e.name) }
func (i info) Size() int64        { return i.e.size }
func (i info) ModTime() time.Time { return i.e.mtime }
func (i info) IsDir() bool        { return i.e.dir }
func (i info) Sys() any           { return nil }
func (i info) Mode() fs.FileMode {
	switch {
	case i.e.dir:
		return fs.ModeDir | i.e.mode.Perm()
	case i.e.link != "":
		return fs.ModeSymlink | 0o777
	}
	return i.e.mode.Perm()
}

// file is a regular file of the archive: an io.ReaderAt + io.Seeker over its bytes.
type file struct {
	e *entry
	*io.SectionReader
}

func (f *file) Stat() (fs.FileInfo, error) { return info{f.e}, nil }
func (f *file) Close() error               { return nil }

type dirFile struct {
	e    *entry
	rest []fs.DirEntry
	read bool
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return info{d.e}, nil }
func (d *dirFile) Close() error               { return nil }
func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.e.name, Err: errors.New("is a directory")}
}
func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if !d.read {
		d.rest, d.read = d.e.list(), true
	}
	if n <= 0 {
		out := d.rest
		d.rest = nil
		return out, nil
	}
	if len(d.rest) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(d.rest))
	out := d.rest[:n]
	d.rest = d.rest[n:]
	return out, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// chunk maps bytes [off, off+n) of a member to spool offset at.
type chunk struct{ off, n, at int64 }

// sparse serves the kept ranges of a member; other bytes are ErrPagesSkipped.
type sparse struct {
	ra     io.ReaderAt
	size   int64
	chunks []chunk // sorted, disjoint
}

func (s *sparse) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		o := off + int64(done)
		if o >= s.size {
			return done, io.EOF
		}
		i := sort.Search(len(s.chunks), func(i int) bool { return s.chunks[i].off+s.chunks[i].n > o })
		if i == len(s.chunks) || s.chunks[i].off > o {
			return done, fmt.Errorf("offset %d: %w", o, ErrPagesSkipped)
		}
		c := s.chunks[i]
		k := min(int64(len(p)-done), c.off+c.n-o)
		n, err := s.ra.ReadAt(p[done:done+int(k)], c.at+o-c.off)
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// spoolRanges copies the wanted ranges of a member streamed from r into the spool at offset at.
func spoolRanges(r io.Reader, sp *os.File, at, size int64, want []Range) (*sparse, int64, error) {
	sort.Slice(want, func(i, j int) bool { return want[i].Off < want[j].Off })
	s := &sparse{ra: sp, size: size}
	var pos, n int64
	for _, w := range want {
		lo, hi := max(w.Off, pos), min(w.Off+w.Len, size)
		if hi <= lo {
			continue
		}
		if _, err := io.CopyN(io.Discard, r, lo-pos); err != nil {
			return nil, 0, err
		}
		k, err := io.CopyN(sp, r, hi-lo)
		if err != nil {
			return nil, 0, err
		}
		s.chunks = append(s.chunks, chunk{off: lo, n: k, at: at + n})
		n += k
		pos = hi
	}
	if _, err := io.CopyN(io.Discard, r, size-pos); err != nil {
		return nil, 0, err
	}
	return s, n, nil
}
