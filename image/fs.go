package image

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
)

// The *FS functions read images from any io/fs.FS: a directory (os.DirFS) or a container checkpoint
// archive opened by package ckpt. Files that are io.ReaderAt (os files, archive members) are read by
// offset, so extras are skipped and pages read in place as with the path-based functions.

// OpenFS opens the image file name of fsys for streaming. Close it when done.
func OpenFS(fsys fs.FS, name string) (*Reader, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	var src io.Reader = f
	size := int64(-1)
	if ra, ok := f.(io.ReaderAt); ok && st.Mode().IsRegular() {
		src, size = io.NewSectionReader(ra, 0, st.Size()), st.Size()
	}
	r, err := newReader(src, path.Base(name), size)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.closer = f
	return r, nil
}

// ReadFileFS decodes the image file name of fsys (whole file in memory).
func ReadFileFS(fsys fs.FS, name string) (*Image, error) {
	rd, err := OpenFS(fsys, name)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return decodeFrom(rd)
}

// ReadDirFS is ReadDir for directory dir of fsys.
func ReadDirFS(fsys fs.FS, dir string) ([]FileInfo, error) {
	des, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	out := make([]FileInfo, 0, len(des))
	for _, de := range des {
		fi := FileInfo{Name: de.Name(), Kind: KindUnknown, Type: UnknownDesc.Name, Entries: -1}
		p := path.Join(dir, de.Name())
		switch {
		case de.Type()&fs.ModeSymlink != 0:
			fi.Link, fi.Err = fs.ReadLink(fsys, p)
		case de.IsDir():
			fi.Dir = true
		default:
			if st, err := de.Info(); err == nil {
				fi.Size = st.Size()
			}
			if d, err := Classify(fi.Name); err == nil {
				fi.Kind, fi.Type, fi.Magic = d.Kind, d.Name, d.Magic
			}
			if fi.Kind != KindRaw && fi.Kind != KindUnknown {
				fi.Entries, fi.Err = countEntriesFS(fsys, p)
			}
		}
		out = append(out, fi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func countEntriesFS(fsys fs.FS, name string) (int, error) {
	r, err := OpenFS(fsys, name)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	n := 0
	for {
		_, err := r.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
	}
}

// OpenMemoryFS opens the memory of task pid from the images directory dir of fsys.
func OpenMemoryFS(fsys fs.FS, dir string, pid int) (*Memory, error) {
	m, err := openMemoryFS(fsys, dir, fmt.Sprintf("pagemap-%d.img", pid), 0)
	return m, err
}

// OpenShmemFS opens a shared memory object's pages from the images directory dir of fsys.
func OpenShmemFS(fsys fs.FS, dir string, shmid uint64) (*Memory, error) {
	return openMemoryFS(fsys, dir, fmt.Sprintf("pagemap-shmem-%d.img", shmid), 0)
}

func openMemoryFS(fsys fs.FS, dir, name string, depth int) (*Memory, error) {
	img, err := ReadFileFS(fsys, path.Join(dir, name))
	if err != nil {
		return nil, err
	}
	m, err := memoryOf(img, dir, name, depth)
	if err != nil {
		return nil, err
	}
	m.fsys = fsys
	return m, nil
}
