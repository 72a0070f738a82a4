package workload

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultSecret is the recognizable string the files workload plants (argv, regular file, memory,
// queued socket data) unless --secret is given. Anonymizer tests look for it in the images.
const DefaultSecret = "criukit-planted-secret-C0FFEE"

// Sizes of the files workload's deleted files: the small one stays under CRIU's 12 KiB threshold
// (one raw ghost image), the big one is sparse and above it (chunked ghost image).
const (
	GhostSmallSize = 100
	GhostBigSize   = 64 << 10
)

func init() {
	// files [--secret S]: regular open file, deleted files (ghost small and big sparse), pipe and
	// FIFO with data, unix stream and dgram socketpairs with queued data, abstract and path-bound
	// unix sockets, memfd, eventfd, anonymous and file-backed shared mappings. Planted secrets: the
	// --secret value (argv + file + memory + socket data) and whatever the starter puts in the env.
	Register("files", runFiles)
}

type filesState struct {
	secret                        string
	regular, ghostSmall, ghostBig int
	pipeR, fifo, streamA, dgramA  int
	memfd                         int
	shm                           []byte
	shmData                       []byte
}

func runFiles(c *Ctx) error {
	fs := flag.NewFlagSet("files", flag.ContinueOnError)
	secret := fs.String("secret", DefaultSecret, "string planted in argv, files, memory and socket data")
	if err := fs.Parse(c.Args); err != nil {
		return err
	}
	s := &filesState{secret: *secret}
	heap := []byte("heap copy of the secret: " + s.secret) // planted in anonymous private memory
	c.Keep(heap)
	var err error
	must := func(e error, what string) {
		if err == nil && e != nil {
			err = fmt.Errorf("%s: %w", what, e)
		}
	}
	p := func(name string) string { return filepath.Join(c.Dir, name) }

	// Regular file, open read-write, offset in the middle.
	s.regular, err = unix.Open(p("regular.txt"), unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("open regular.txt: %w", err)
	}
	_, e := unix.Write(s.regular, []byte("regular file; secret="+s.secret+"\nsecond line\n"))
	must(e, "write regular.txt")

	// Deleted files -> ghost-file images.
	s.ghostSmall, e = deletedFile(p("ghost-small.txt"), [][2]any{{int64(0), bytes.Repeat([]byte("g"), GhostSmallSize-len(s.secret)-1)}, {int64(GhostSmallSize - len(s.secret) - 1), []byte(s.secret + "\n")}})
	must(e, "ghost-small.txt")
	s.ghostBig, e = deletedFile(p("ghost-big.bin"), [][2]any{{int64(0), bytes.Repeat([]byte("B"), 4096)}, {int64(GhostBigSize - 4096), append(bytes.Repeat([]byte("E"), 4096-len(s.secret)), s.secret...)}})
	must(e, "ghost-big.bin")

	// Pipe with data.
	var pfd [2]int
	must(unix.Pipe2(pfd[:], unix.O_CLOEXEC), "pipe")
	s.pipeR = pfd[0]
	_, e = unix.Write(pfd[1], []byte("pipe data "+s.secret))
	must(e, "write pipe")

	// FIFO with data (one read-write fd keeps it open both ways).
	must(unix.Mkfifo(p("fifo"), 0o644), "mkfifo")
	s.fifo, e = unix.Open(p("fifo"), unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	must(e, "open fifo")
	if e == nil {
		_, e = unix.Write(s.fifo, []byte("fifo data "+s.secret))
		must(e, "write fifo")
	}

	// Unix stream and dgram socketpairs with data queued both ways.
	for _, t := range []struct {
		typ  int
		keep *int
	}{{unix.SOCK_STREAM, &s.streamA}, {unix.SOCK_DGRAM, &s.dgramA}} {
		sp, e := unix.Socketpair(unix.AF_UNIX, t.typ|unix.SOCK_CLOEXEC, 0)
		must(e, "socketpair")
		if e != nil {
			continue
		}
		*t.keep = sp[0]
		_, e = unix.Write(sp[0], []byte("a->b "+s.secret))
		must(e, "socketpair write")
		_, e = unix.Write(sp[1], []byte("b->a queued"))
		must(e, "socketpair write")
	}

	// Abstract and path-bound listening unix sockets.
	abstract := fmt.Sprintf("@criukit-files-%d", os.Getpid())
	_, e = unixListen(abstract)
	must(e, "abstract socket")
	_, e = unixListen(p("app.sock"))
	must(e, "path-bound socket")

	// memfd with data.
	s.memfd, e = unix.MemfdCreate("criukit-memfd", unix.MFD_CLOEXEC)
	must(e, "memfd_create")
	if e == nil {
		_, e = unix.Write(s.memfd, []byte("memfd data "+s.secret))
		must(e, "write memfd")
	}

	// eventfd with a counter.
	_, e = unix.Eventfd(5, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	must(e, "eventfd")

	// Anonymous shared mapping (shmem pages) and a file-backed shared mapping.
	s.shm, e = unix.Mmap(-1, 0, 4*4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	must(e, "mmap shared anon")
	if e == nil {
		s.shmData = []byte("anon shared memory " + s.secret)
		copy(s.shm, s.shmData)
		copy(s.shm[3*4096:], s.shmData)
	}
	mf, e := unix.Open(p("mapped.bin"), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	must(e, "open mapped.bin")
	if e == nil {
		must(unix.Ftruncate(mf, 2*4096), "truncate mapped.bin")
		m, e := unix.Mmap(mf, 0, 2*4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		must(e, "mmap mapped.bin")
		if e == nil {
			copy(m, "file shared mapping")
			c.Keep(m)
		}
		unix.Close(mf)
	}
	if err != nil {
		return err
	}
	c.Keep(s)
	c.OnCheck(s.check)
	return c.Ready(fmt.Sprintf("secret=%s abstract=%s sock=%s", s.secret, abstract, p("app.sock")))
}

// deletedFile creates path, writes each {offset, data}, keeps it open and unlinks it.
func deletedFile(path string, chunks [][2]any) (int, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return -1, err
	}
	for _, ch := range chunks {
		if _, err := unix.Pwrite(fd, ch[1].([]byte), ch[0].(int64)); err != nil {
			return -1, err
		}
	}
	return fd, unix.Unlink(path)
}

// unixListen makes a listening unix stream socket at path ("@name" for the abstract namespace).
func unixListen(path string) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if !strings.HasPrefix(path, "@") {
		_ = os.Remove(path)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return -1, err
	}
	return fd, unix.Listen(fd, 8)
}

// check verifies, without consuming anything, that the objects still hold their data.
func (s *filesState) check() (string, error) {
	buf := make([]byte, 4096)
	readAt := func(fd int, off int64, want, what string) error {
		n, err := unix.Pread(fd, buf[:len(want)], off)
		if err != nil || string(buf[:n]) != want {
			return fmt.Errorf("%s: read %q (%v), want %q", what, buf[:n], err, want)
		}
		return nil
	}
	queued := func(fd int, what string) error {
		n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
		if err != nil || n == 0 {
			return fmt.Errorf("%s: %d bytes queued (%v), want > 0", what, n, err)
		}
		return nil
	}
	for _, err := range []error{
		readAt(s.regular, 0, "regular file; secret="+s.secret, "regular.txt"),
		readAt(s.ghostSmall, GhostSmallSize-int64(len(s.secret))-1, s.secret, "ghost-small.txt"),
		readAt(s.ghostBig, GhostBigSize-int64(len(s.secret)), s.secret, "ghost-big.bin"),
		readAt(s.memfd, 0, "memfd data "+s.secret, "memfd"),
		queued(s.pipeR, "pipe"),
		queued(s.fifo, "fifo"),
		queued(s.streamA, "unix stream socket"),
		queued(s.dgramA, "unix dgram socket"),
	} {
		if err != nil {
			return "", err
		}
	}
	if !bytes.Equal(s.shm[3*4096:3*4096+len(s.shmData)], s.shmData) {
		return "", fmt.Errorf("anon shared mapping lost its data")
	}
	return "files intact", nil
}
