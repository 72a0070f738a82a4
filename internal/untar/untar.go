package untar

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// A ReadError is a stream archive/tar could not read (not a tar, truncated, corrupt header).
type ReadError struct{ Err error }

func (e *ReadError) Error() string { return e.Err.Error() }
func (e *ReadError) Unwrap() error { return e.Err }

// Extract reads r's entries into dir (which must exist) and returns how many entries it read.
// Directories are made 0700, regular files 0600. For any other entry other is called with the
// entry's cleaned name: nil skips the entry, an error stops the extraction with it (a nil other
// skips every such entry). A name that is absolute or leaves dir is refused.
func Extract(r io.Reader, dir string, other func(name string, h *tar.Header) error) (int, error) {
	tr := tar.NewReader(r)
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, &ReadError{err}
		}
		n++
		name := filepath.Clean(h.Name)
		if name == "." {
			continue
		}
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return n, fmt.Errorf("member %q escapes the archive", h.Name)
		}
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o700); err != nil {
				return n, err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return n, err
			}
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return n, err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return n, fmt.Errorf("member %q: %w", h.Name, err)
			}
		default:
			if other != nil {
				if err := other(name, h); err != nil {
					return n, err
				}
			}
		}
	}
}
