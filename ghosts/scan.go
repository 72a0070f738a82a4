package ghosts

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/criukit/criukit/internal/procfs"
	"golang.org/x/sys/unix"
)

// Sentinel errors.
var (
	ErrNoProcess     = errors.New("no such process")
	ErrBadSize       = errors.New("bad size")
	ErrOverBudget    = errors.New("copies of file data exceed the copy budget")
	ErrOverGhostLimt = errors.New("ghost file over the ghost limit")
)

// Kind is the kind of a copy of file data.
type Kind string

// Kinds of copies CRIU stores beside the images.
const (
	KindGhost     Kind = "ghost"      // deleted-but-open file (st_nlink 0): ghost-file-N.img, checked against --ghost-limit
	KindMemfd     Kind = "memfd"      // memfd contents: memfd.img + shmem pages
	KindTmpfs     Kind = "tmpfs"      // tmpfs mount of a dumped mount namespace: tmpfs-dev-N.tar.gz.img
	KindSysVShm   Kind = "sysv-shm"   // SysV shared memory segment: ipcns-shm-N.img / shmem pages
	KindPipe      Kind = "pipe"       // unread pipe data: pipes-data.img
	KindFifo      Kind = "fifo"       // unread FIFO data: fifo-data.img
	KindUnixQueue Kind = "unix-queue" // unix socket receive queue: sk-queues.img
	KindTCPQueue  Kind = "tcp-queue"  // TCP send+receive queues: tcp-stream-N.img (only with --tcp-established)
)

// Item is one copy of file data CRIU will store with the images.
type Item struct {
	Kind  Kind   `json:"kind"`
	Pid   int    `json:"pid"`
	FD    int    `json:"fd"`    // -1 when held by a mapping or a namespace only
	Where string `json:"where"` // "fd 5", "map 7f00-7f10", "mount /tmp", "shmid 3"
	Path  string `json:"path,omitempty"`
	Dev   uint64 `json:"dev,omitempty"`
	Ino   uint64 `json:"ino,omitempty"`
	// Size is the apparent size (st_size) of a file or the queued bytes of a stream.
	Size int64 `json:"size"`
	// Allocated is st_blocks*512: the number CRIU compares with --ghost-limit for ghosts.
	Allocated int64 `json:"allocated"`
	// ImageBytes is the predicted number of bytes stored in the images for this item.
	ImageBytes int64  `json:"image_bytes"`
	Image      string `json:"image,omitempty"` // image file that will hold it
	Chunked    bool   `json:"chunked,omitempty"`
	// GhostLimited items fail the dump when Allocated > --ghost-limit; MinGhostLimit is then the
	// smallest limit that lets them pass (= Allocated).
	GhostLimited  bool  `json:"ghost_limited"`
	MinGhostLimit int64 `json:"min_ghost_limit,omitempty"`
	// Exact: ImageBytes is exact for the file as it is now (ghosts: the image stores atime/mtime
	// as varints, so a later read that moves atime can change it by a byte); else an estimate.
	Exact bool   `json:"exact"`
	Note  string `json:"note,omitempty"`
}

// Report is the prediction for one process tree.
type Report struct {
	Pid             int      `json:"pid"`
	Pids            []int    `json:"pids"`
	Items           []Item   `json:"items"`
	TotalImageBytes int64    `json:"total_image_bytes"`
	MinGhostLimit   int64    `json:"min_ghost_limit"` // smallest --ghost-limit that lets every ghost pass
	Warnings        []string `json:"warnings,omitempty"`
}

// OverLimit returns the ghost items CRIU rejects with this --ghost-limit (Allocated > limit).
func (r *Report) OverLimit(limit int64) []Item {
	var out []Item
	for _, it := range r.Items {
		if it.GhostLimited && it.Allocated > limit {
			out = append(out, it)
		}
	}
	return out
}

// Biggest returns up to n items, largest ImageBytes first.
func (r *Report) Biggest(n int) []Item {
	items := append([]Item(nil), r.Items...)
	sort.SliceStable(items, func(i, j int) bool { return items[i].ImageBytes > items[j].ImageBytes })
	if n > 0 && len(items) > n {
		items = items[:n]
	}
	return items
}

// Tree returns pid and all its descendants (parents before children), read from
// /proc/PID/task/TID/children, or by scanning /proc when that file is missing.
func Tree(pid int) ([]int, error) {
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		return nil, fmt.Errorf("%w: pid %d (%v)", ErrNoProcess, pid, err)
	}
	kids, err := childrenFunc()
	if err != nil {
		return nil, err
	}
	out := []int{pid}
	seen := map[int]bool{pid: true}
	for i := 0; i < len(out); i++ {
		for _, c := range kids(out[i]) {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	return out, nil
}

func childrenFunc() (func(int) []int, error) {
	if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(unix.Gettid()) + "/children"); err == nil {
		return func(p int) []int {
			var out []int
			tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", p))
			for _, t := range tasks {
				b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", p, t.Name()))
				for _, f := range strings.Fields(string(b)) {
					if c, err := strconv.Atoi(f); err == nil {
						out = append(out, c)
					}
				}
			}
			return out
		}, nil
	}
	// No CONFIG_PROC_CHILDREN: build the parent map once.
	parent := map[int][]int{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 2 {
			if pp, err := strconv.Atoi(f[1]); err == nil {
				parent[pp] = append(parent[pp], p)
			}
		}
	}
	return func(p int) []int { return parent[p] }, nil
}

type fileKey struct{ dev, ino uint64 }

type scanner struct {
	r        *Report
	seen     map[fileKey]bool
	seenPipe map[uint64]bool
	seenSock map[uint64]bool
}

// Scan predicts the copies of file data a dump of the tree rooted at pid will store. It needs the
// privileges of criu (root): it stats /proc/PID/fd and map_files and duplicates socket and pipe fds
// with pidfd_getfd to measure their queues (nothing is read or consumed).
func Scan(pid int) (*Report, error) {
	pids, err := Tree(pid)
	if err != nil {
		return nil, err
	}
	s := &scanner{r: &Report{Pid: pid, Pids: pids}, seen: map[fileKey]bool{}, seenPipe: map[uint64]bool{}, seenSock: map[uint64]bool{}}
	for _, p := range pids {
		if err := s.fds(p); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // exited meanwhile
			}
			return nil, err
		}
		s.maps(p)
	}
	s.namespaces(pid)
	for _, it := range s.r.Items {
		s.r.TotalImageBytes += it.ImageBytes
		if it.GhostLimited && it.MinGhostLimit > s.r.MinGhostLimit {
			s.r.MinGhostLimit = it.MinGhostLimit
		}
	}
	if s.r.MinGhostLimit > 1<<32-1 {
		s.warn("the needed ghost limit %d is over 4 GiB-1: CRIU's RPC field ghost_limit is uint32, so runtimes that drive criu by RPC cannot pass it; use --ghost-limit or a config file (CRIU_CONFIG_FILE)", s.r.MinGhostLimit)
	}
	return s.r, nil
}

func (s *scanner) warn(format string, a ...any) {
	s.r.Warnings = append(s.r.Warnings, fmt.Sprintf(format, a...))
}

func (s *scanner) fds(pid int) error {
	fds, err := procfs.FDs(pid)
	if err != nil {
		return fmt.Errorf("list fds of pid %d: %w", pid, err)
	}
	for _, d := range fds {
		fd, p, link := d.Num, d.Path, d.Link
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			continue
		}
		where := "fd " + strconv.Itoa(fd)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG, unix.S_IFDIR, unix.S_IFLNK:
			s.file(pid, fd, where, p, link, &st)
		case unix.S_IFIFO:
			s.pipe(pid, fd, where, link, &st)
		case unix.S_IFSOCK:
			s.socket(pid, fd, where, link, &st)
		}
	}
	return nil
}

// file handles a regular file, directory or symlink reached through procPath (an fd or map_files link).
func (s *scanner) file(pid, fd int, where, procPath, link string, st *unix.Stat_t) {
	key := fileKey{st.Dev, st.Ino}
	if strings.HasPrefix(link, "/memfd:") {
		if s.seen[key] {
			return
		}
		s.seen[key] = true
		alloc := st.Blocks * 512
		s.r.Items = append(s.r.Items, Item{Kind: KindMemfd, Pid: pid, FD: fd, Where: where, Path: strings.TrimSuffix(link, " (deleted)"),
			Dev: st.Dev, Ino: st.Ino, Size: st.Size, Allocated: alloc, ImageBytes: alloc, Image: "memfd.img + pages-*.img",
			Note: "shmem pages in memory; not subject to --ghost-limit"})
		return
	}
	if st.Nlink != 0 || !strings.HasPrefix(link, "/") || strings.HasPrefix(link, "/dev/pts/") {
		return
	}
	var sfs unix.Statfs_t
	if unix.Statfs(procPath, &sfs) == nil && (sfs.Type == unix.PROC_SUPER_MAGIC || sfs.Type == unix.DEVPTS_SUPER_MAGIC) {
		return
	}
	if s.seen[key] {
		return
	}
	s.seen[key] = true
	g, err := PredictGhost(procPath, st)
	it := Item{Kind: KindGhost, Pid: pid, FD: fd, Where: where, Path: strings.TrimSuffix(link, " (deleted)"), Dev: st.Dev, Ino: st.Ino,
		Size: st.Size, Allocated: st.Blocks * 512, GhostLimited: true, MinGhostLimit: st.Blocks * 512, Image: "ghost-file-N.img"}
	if err != nil {
		s.warn("pid %d %s (%s): cannot map extents: %v; image size is an upper bound", pid, where, it.Path, err)
		it.ImageBytes, it.Chunked = st.Size, st.Size >= ChunksThreshold
	} else {
		it.ImageBytes, it.Chunked, it.Exact = g.ImageBytes, g.Chunked, true
		if g.Chunked {
			it.Note = fmt.Sprintf("%d data chunk(s), %d bytes of data", g.Chunks, g.DataBytes)
		}
	}
	if sfs.Type == unix.OVERLAYFS_SUPER_MAGIC || sfs.Type == unix.BTRFS_SUPER_MAGIC {
		it.Note = strings.TrimSpace(it.Note + "; device number may be translated by CRIU on this fs")
	}
	s.r.Items = append(s.r.Items, it)
}

// dupFD duplicates fd of pid into this process with pidfd_getfd.
func dupFD(pid, fd int) (int, error) {
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pfd)
	nfd, err := unix.PidfdGetfd(pfd, fd, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_getfd pid %d fd %d: %w", pid, fd, err)
	}
	return nfd, nil
}

func (s *scanner) pipe(pid, fd int, where, link string, st *unix.Stat_t) {
	kind, img := KindFifo, "fifo-data.img"
	if strings.HasPrefix(link, "pipe:") {
		kind, img = KindPipe, "pipes-data.img"
	}
	if s.seenPipe[st.Ino] {
		return
	}
	nfd, err := dupFD(pid, fd)
	if err != nil {
		s.warn("pid %d %s (%s): %v", pid, where, link, err)
		return
	}
	defer unix.Close(nfd)
	n, err := unix.IoctlGetInt(nfd, unix.SIOCINQ /* = FIONREAD */)
	if err != nil {
		s.warn("pid %d %s (%s): FIONREAD: %v", pid, where, link, err)
		return
	}
	s.seenPipe[st.Ino] = true
	if n == 0 {
		return
	}
	// pipe_data_entry {pipe_id, bytes[, size]} framed with a u32 size, then the data.
	s.r.Items = append(s.r.Items, Item{Kind: kind, Pid: pid, FD: fd, Where: where, Path: link, Ino: st.Ino, Size: int64(n),
		ImageBytes: int64(n) + 8 + 4 + 10, Image: img, Note: "plus a few bytes of entry overhead"})
}

func (s *scanner) socket(pid, fd int, where, link string, st *unix.Stat_t) {
	if s.seenSock[st.Ino] {
		return
	}
	s.seenSock[st.Ino] = true
	nfd, err := dupFD(pid, fd)
	if err != nil {
		s.warn("pid %d %s (%s): %v", pid, where, link, err)
		return
	}
	defer unix.Close(nfd)
	dom, err1 := unix.GetsockoptInt(nfd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	typ, err2 := unix.GetsockoptInt(nfd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err1 != nil || err2 != nil {
		return
	}
	switch {
	case dom == unix.AF_UNIX:
		n, err := unix.IoctlGetInt(nfd, unix.SIOCINQ)
		if err != nil || n == 0 {
			return
		}
		note := ""
		if typ != unix.SOCK_STREAM {
			note = "datagram socket: SIOCINQ counts the next datagram only, more may be queued"
		}
		s.r.Items = append(s.r.Items, Item{Kind: KindUnixQueue, Pid: pid, FD: fd, Where: where, Path: link, Ino: st.Ino, Size: int64(n),
			ImageBytes: int64(n) + 4 + 6, Image: "sk-queues.img", Note: note})
	case (dom == unix.AF_INET || dom == unix.AF_INET6) && typ == unix.SOCK_STREAM:
		info, err := unix.GetsockoptTCPInfo(nfd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil || info.State == 10 /* LISTEN */ || info.State == 7 /* CLOSE */ {
			return
		}
		in, _ := unix.IoctlGetInt(nfd, unix.SIOCINQ)
		out, _ := unix.IoctlGetInt(nfd, unix.SIOCOUTQ)
		if in+out == 0 {
			return
		}
		s.r.Items = append(s.r.Items, Item{Kind: KindTCPQueue, Pid: pid, FD: fd, Where: where, Path: link, Ino: st.Ino, Size: int64(in + out),
			ImageBytes: int64(in+out) + 8 + 64, Image: "tcp-stream-N.img",
			Note: fmt.Sprintf("recv %d + send %d bytes; stored only with --tcp-established", in, out)})
	}
}

// ForEachMapping calls fn with the address range ("lo-hi", hex) and the path of every mapping of
// pid that has a path, as /proc/PID/maps lists them. It returns the error of opening or reading maps.
func ForEachMapping(pid int, fn func(rng, path string)) error {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.SplitN(sc.Text(), " ", 6)
		if len(fields) < 6 {
			continue
		}
		if path := strings.TrimLeft(fields[5], " "); path != "" {
			fn(fields[0], path)
		}
	}
	return sc.Err()
}

// maps finds deleted files, memfds and SysV shm held only through memory mappings.
func (s *scanner) maps(pid int) {
	_ = ForEachMapping(pid, func(rng, path string) { s.mapping(pid, rng, path) })
}

func (s *scanner) mapping(pid int, rng, path string) {
	if !strings.HasSuffix(path, " (deleted)") {
		return
	}
	where := "map " + rng
	if strings.HasPrefix(path, "/dev/zero ") || strings.HasPrefix(path, "/anon_hugepage") {
		return // anonymous shared memory: memory, not a file copy
	}
	if strings.HasPrefix(path, "/SYSV") {
		lo, hi, _ := strings.Cut(rng, "-")
		a, _ := strconv.ParseUint(lo, 16, 64)
		b, _ := strconv.ParseUint(hi, 16, 64)
		key, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(path, "/SYSV"), " (deleted)"), 16, 64)
		fk := fileKey{0, key<<32 | a}
		if s.seen[fk] {
			return
		}
		s.seen[fk] = true
		s.r.Items = append(s.r.Items, Item{Kind: KindSysVShm, Pid: pid, FD: -1, Where: where, Path: strings.TrimSuffix(path, " (deleted)"),
			Size: int64(b - a), ImageBytes: int64(b - a), Image: "ipcns-shm-N.img / pages", Note: "attached SysV shm; upper bound (mapping size)"})
		return
	}
	mf := fmt.Sprintf("/proc/%d/map_files/%s", pid, rng)
	var st unix.Stat_t
	if err := unix.Stat(mf, &st); err != nil {
		return
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return
	}
	s.file(pid, -1, where, mf, path, &st)
}

// namespaces adds tmpfs mounts and SysV shm of the tree's own mount and IPC namespaces (CRIU
// dumps those only when the namespaces differ from its own).
func (s *scanner) namespaces(pid int) {
	if differentNS(pid, "mnt") {
		s.tmpfs(pid)
	}
	if differentNS(pid, "ipc") {
		// The segments of the namespace are listed once each; drop the per-mapping guesses.
		kept := s.r.Items[:0]
		for _, it := range s.r.Items {
			if it.Kind != KindSysVShm || !strings.HasPrefix(it.Where, "map ") {
				kept = append(kept, it)
			}
		}
		s.r.Items = kept
		s.sysvShm(pid)
	}
}

func differentNS(pid int, ns string) bool {
	a, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
	b, err2 := os.Readlink("/proc/self/ns/" + ns)
	return err1 == nil && err2 == nil && a != b
}

func (s *scanner) tmpfs(pid int) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		s.warn("pid %d: mountinfo: %v", pid, err)
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	seenDev := map[string]bool{}
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 1 || qf[0] != "tmpfs" {
			continue
		}
		mnt := unescapeMount(pf[4])
		var sfs unix.Statfs_t
		if err := unix.Statfs(fmt.Sprintf("/proc/%d/root%s", pid, mnt), &sfs); err != nil {
			s.warn("pid %d: statfs tmpfs %s: %v", pid, mnt, err)
			continue
		}
		if seenDev[pf[2]] {
			continue // another mount of the same tmpfs: CRIU stores one tarball per superblock
		}
		seenDev[pf[2]] = true
		used := int64(sfs.Blocks-sfs.Bfree) * sfs.Bsize
		s.r.Items = append(s.r.Items, Item{Kind: KindTmpfs, Pid: pid, FD: -1, Where: "mount " + mnt + " (mnt_id " + pf[0] + ")", Path: mnt,
			Size: used, Allocated: used, ImageBytes: used, Image: "tmpfs-dev-" + pf[0] + ".tar.gz.img",
			Note: "gzip'ed tar of the contents: the uncompressed size is an upper bound"})
	}
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// sysvShm reads /proc/sysvipc/shm inside the tree's IPC namespace (from a throw-away OS thread).
func (s *scanner) sysvShm(pid int) {
	type res struct {
		text string
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine, namespace and all
		nsfd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/ipc", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer unix.Close(nsfd)
		if err := unix.Setns(nsfd, unix.CLONE_NEWIPC); err != nil {
			ch <- res{err: err}
			return
		}
		b, err := os.ReadFile("/proc/sysvipc/shm") // shows the reader's IPC namespace
		ch <- res{string(b), err}
	}()
	r := <-ch
	if r.err != nil {
		s.warn("pid %d: SysV shm of its IPC namespace: %v", pid, r.err)
		return
	}
	lines := strings.Split(r.text, "\n")
	if len(lines) < 2 {
		return
	}
	hdr := strings.Fields(lines[0])
	col := func(name string) int {
		for i, h := range hdr {
			if h == name {
				return i
			}
		}
		return -1
	}
	ci, cs, cr := col("shmid"), col("size"), col("rss")
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if ci < 0 || cs < 0 || len(f) <= cs {
			continue
		}
		size, _ := strconv.ParseInt(f[cs], 10, 64)
		rss := size
		if cr >= 0 && cr < len(f) {
			rss, _ = strconv.ParseInt(f[cr], 10, 64)
		}
		s.r.Items = append(s.r.Items, Item{Kind: KindSysVShm, Pid: pid, FD: -1, Where: "shmid " + f[ci], Size: size, Allocated: rss,
			ImageBytes: rss, Image: "ipcns-shm-N.img / pages", Note: "segment of the tree's IPC namespace; resident bytes"})
	}
}
