package outfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// DefaultMode is the mode of a new output file (before umask is not applied: it is set explicitly).
const DefaultMode os.FileMode = 0o644

// Stdout is the path that means standard output.
const Stdout = "-"

// ErrNotWritable: the target exists and is something an output must not replace (a directory, a
// symlink to one, a socket).
var ErrNotWritable = errors.New("not a file criukit can write to")

// File is an output being written. Write to it, then Commit; Abort (safe after Commit, so defer it)
// removes the temporary file of an unfinished output.
type File struct {
	path    string // the target as given
	final   string // where the rename goes (symlinks to regular files resolved)
	f       *os.File
	tmp     string // temporary file, "" when written in place
	mode    os.FileMode
	closeIt bool // in place: close at Commit (not stdout)
	done    bool
}

// Create prepares path for writing with mode DefaultMode for a new file.
func Create(path string) (*File, error) { return CreateMode(path, DefaultMode) }

// CreateMode is Create with the mode a new file gets (an existing regular file keeps its own).
func CreateMode(path string, mode os.FileMode) (*File, error) {
	if path == "" {
		return nil, errors.New("outfile: empty path")
	}
	if path == Stdout {
		return &File{path: path, final: path, f: os.Stdout}, nil
	}
	final := path
	var uid, gid = -1, -1
	lst, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// new file
	case err != nil:
		return nil, err
	default:
		st := lst
		if lst.Mode()&fs.ModeSymlink != 0 {
			real, err := filepath.EvalSymlinks(path)
			if err != nil {
				return nil, fmt.Errorf("%s: %w: symlink to %v", path, ErrNotWritable, err)
			}
			if st, err = os.Stat(real); err != nil {
				return nil, err
			}
			final = real
		}
		m := st.Mode()
		switch {
		case m.IsDir():
			what := "a directory"
			if final != path {
				what = "a symlink to the directory " + final
			}
			return nil, fmt.Errorf("%s: %w: it is %s (give a file name)", path, ErrNotWritable, what)
		case m&fs.ModeSocket != 0:
			return nil, fmt.Errorf("%s: %w: it is a socket", path, ErrNotWritable)
		case m&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe) != 0:
			// Written in place: replacing a device node or a FIFO by a file would break whoever
			// uses it (a /dev/null turned into a file breaks every later redirection).
			f, err := os.OpenFile(final, os.O_WRONLY, 0)
			if err != nil {
				return nil, err
			}
			return &File{path: path, final: final, f: f, closeIt: true}, nil
		case !m.IsRegular():
			return nil, fmt.Errorf("%s: %w: it is not a regular file (%v)", path, ErrNotWritable, m.Type())
		}
		mode = m.Perm()
		if s, ok := st.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(s.Uid), int(s.Gid)
		}
	}
	f, err := os.CreateTemp(filepath.Dir(final), "."+filepath.Base(final)+".tmp*")
	if err != nil {
		return nil, err
	}
	of := &File{path: path, final: final, f: f, tmp: f.Name(), mode: mode}
	if err := f.Chmod(mode); err != nil {
		of.Abort()
		return nil, err
	}
	if uid >= 0 && (uid != os.Getuid() || gid != os.Getgid()) {
		_ = f.Chown(uid, gid) // best effort: keep the owner of the file replaced
	}
	return of, nil
}

// Name returns the target path as given.
func (o *File) Name() string { return o.path }

// InPlace reports whether the target is written in place (stdout, a device, a FIFO).
func (o *File) InPlace() bool { return o.tmp == "" }

// Write writes to the output.
func (o *File) Write(p []byte) (int, error) { return o.f.Write(p) }

// WriteString writes s to the output.
func (o *File) WriteString(s string) (int, error) { return o.f.WriteString(s) }

// ReadFrom copies r to the output (lets io.Copy use copy_file_range/splice).
func (o *File) ReadFrom(r io.Reader) (int64, error) { return o.f.ReadFrom(r) }

// Commit finishes the output: fsync, close and rename for files; close for devices and FIFOs.
func (o *File) Commit() error {
	if o.done {
		return errors.New("outfile: Commit after Commit or Abort")
	}
	o.done = true
	if o.tmp == "" {
		if o.closeIt {
			return o.f.Close()
		}
		return nil
	}
	if err := o.f.Sync(); err != nil {
		o.f.Close()
		os.Remove(o.tmp)
		return err
	}
	if err := o.f.Close(); err != nil {
		os.Remove(o.tmp)
		return err
	}
	if err := os.Rename(o.tmp, o.final); err != nil {
		os.Remove(o.tmp)
		return err
	}
	if d, err := os.Open(filepath.Dir(o.final)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// Abort drops an unfinished output (removes the temporary file). It does nothing after Commit.
func (o *File) Abort() {
	if o.done {
		return
	}
	o.done = true
	if o.tmp != "" {
		o.f.Close()
		os.Remove(o.tmp)
	} else if o.closeIt {
		o.f.Close()
	}
}

// Write writes path with fill (see Create): the output is committed only when fill succeeds.
func Write(path string, fill func(w io.Writer) error) error {
	return WriteMode(path, DefaultMode, fill)
}

// WriteMode is Write with the mode a new file gets.
func WriteMode(path string, mode os.FileMode, fill func(w io.Writer) error) error {
	o, err := CreateMode(path, mode)
	if err != nil {
		return err
	}
	defer o.Abort()
	if err := fill(o); err != nil {
		return err
	}
	return o.Commit()
}

// WriteFile writes data to path (see Create).
func WriteFile(path string, data []byte) error {
	return Write(path, func(w io.Writer) error { _, err := w.Write(data); return err })
}
