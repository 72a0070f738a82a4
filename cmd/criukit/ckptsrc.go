package main

// Checkpoint sources for the image-reading commands (ls, x, pages, show, info, decode): every DIR
// argument may also be a container checkpoint archive (tar, tar.gz, tar.zst; see package ckpt), and
// every IMG argument may name a file inside one: ARCHIVE/core-1.img or ARCHIVE/checkpoint/core-1.img.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/criukit/criukit/ckpt"
	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/image/explore"
)

// openSource opens DIR-or-archive for a command; skipPages spares compressed archives the pages.
func openSource(p string, skipPages bool) (*ckpt.Checkpoint, error) {
	return ckpt.Open(p, ckpt.Options{SkipPages: skipPages})
}

func isDir(p string) bool { st, err := os.Stat(p); return err == nil && st.IsDir() }

// imagesDir is p, or p/checkpoint for an unpacked container checkpoint (podman's userdata, an
// extracted archive).
func imagesDir(p string) string {
	if _, err := os.Stat(filepath.Join(p, "pstree.img")); err != nil {
		if _, err := os.Stat(filepath.Join(p, ckpt.ImagesDir, "pstree.img")); err == nil {
			return filepath.Join(p, ckpt.ImagesDir)
		}
	}
	return p
}

// readDirAny lists an images directory or the images of an archive.
func readDirAny(p string) ([]image.FileInfo, error) {
	if isDir(p) {
		return image.ReadDir(imagesDir(p))
	}
	c, err := openSource(p, true) // pages are raw: listed by size, never read
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return image.ReadDirFS(c.FS(), c.ImagesPath())
}

// exploreAny opens crit's explorers on an images directory or an archive; done releases it.
func exploreAny(p string) (d *explore.Dir, done func(), err error) {
	if isDir(p) {
		d, err = explore.Open(imagesDir(p))
		return d, func() {}, err
	}
	c, err := openSource(p, true)
	if err != nil {
		return nil, nil, err
	}
	d, err = explore.OpenFS(c.FS(), c.ImagesPath())
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return d, func() { c.Close() }, nil
}

// memoryAny opens task pid's memory in an images directory or an archive; Close releases both.
type sourceMemory struct {
	*image.Memory
	c *ckpt.Checkpoint
}

func (m sourceMemory) Close() error {
	err := m.Memory.Close()
	if m.c != nil {
		if e := m.c.Close(); err == nil {
			err = e
		}
	}
	return err
}

func memoryAny(p string, pid int) (sourceMemory, error) {
	if isDir(p) {
		m, err := image.OpenMemory(imagesDir(p), pid)
		return sourceMemory{Memory: m}, err
	}
	c, err := openSource(p, false)
	if err != nil {
		return sourceMemory{}, err
	}
	m, err := image.OpenMemoryFS(c.FS(), c.ImagesPath(), pid)
	if err != nil {
		c.Close()
		return sourceMemory{}, err
	}
	return sourceMemory{Memory: m, c: c}, nil
}

// archiveMember splits ARCHIVE/NAME when the path itself does not exist but a prefix is a regular
// file: the member is looked up in the archive's images directory, then from the archive root.
func archiveMember(p string) (archive, member string, ok bool) {
	if _, err := os.Lstat(p); err == nil || !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		return "", "", false
	}
	clean := filepath.Clean(p)
	for dir := filepath.Dir(clean); dir != "." && dir != "/" && dir != clean; dir = filepath.Dir(dir) {
		if st, err := os.Stat(dir); err == nil {
			if !st.Mode().IsRegular() {
				return "", "", false
			}
			rel, err := filepath.Rel(dir, clean)
			if err != nil {
				return "", "", false
			}
			return dir, filepath.ToSlash(rel), true
		}
	}
	return "", "", false
}

// openImageAny opens an image file, or ARCHIVE/NAME inside a checkpoint archive.
func openImageAny(p string) (*image.Reader, error) {
	arch, member, ok := archiveMember(p)
	if !ok {
		return image.Open(p)
	}
	c, name, err := openMember(arch, member)
	if err != nil {
		return nil, err
	}
	rd, err := image.OpenFS(c.FS(), name)
	if err != nil {
		c.Close()
		return nil, err
	}
	return rd, nil // the archive stays open until the command exits (one image per run)
}

// readImageAny decodes an image file, or ARCHIVE/NAME inside a checkpoint archive.
func readImageAny(p string) (*image.Image, error) {
	arch, member, ok := archiveMember(p)
	if !ok {
		return image.ReadFile(p)
	}
	c, name, err := openMember(arch, member)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return image.ReadFileFS(c.FS(), name)
}

func openMember(arch, member string) (*ckpt.Checkpoint, string, error) {
	c, err := openSource(arch, !strings.HasPrefix(path.Base(member), "pages-"))
	if err != nil {
		return nil, "", err
	}
	for _, name := range []string{path.Join(c.ImagesPath(), member), member} {
		if _, err := fs.Stat(c.FS(), name); err == nil {
			return c, name, nil
		}
	}
	c.Close()
	return nil, "", fmt.Errorf("%s: no %s in the checkpoint (list it with: criukit ls %s)", arch, member, arch)
}
