package ghosts

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	crtime "github.com/checkpoint-restore/go-criu/v8/crit/images/time"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// ChunksThreshold is CRIU's GHOST_CHUNKS_THRESH: regular ghost files of at least this size are
// stored as chunks of their data extents (holes are skipped); smaller ones are copied whole.
const ChunksThreshold = 3 * 4096

// ghostHeader is the size of a ghost-file image's magic header (IMG_COMMON magic + GHOST_FILE magic).
const ghostHeader = 8

// Ghost is the predicted ghost-file image of one deleted file.
type Ghost struct {
	ImageBytes int64 // size of ghost-file-N.img
	Chunked    bool
	Chunks     int   // number of ghost_chunk_entry records
	DataBytes  int64 // file data copied into the image
}

// PredictGhost predicts the ghost-file image CRIU 4.2 writes for the file reached by path (a
// /proc/PID/fd/N or /proc/PID/map_files/A-B link) whose stat is st: a ghost_file_entry, then either
// the whole st_size bytes (small files) or one ghost_chunk_entry plus data per extent, as reported
// by FIEMAP (CRIU's default --ghost-fiemap) or, when the filesystem lacks FIEMAP, SEEK_DATA/SEEK_HOLE.
func PredictGhost(path string, st *unix.Stat_t) (Ghost, error) {
	g := Ghost{}
	gfe := &ghost_file.GhostFileEntry{
		Uid: proto.Uint32(st.Uid), Gid: proto.Uint32(st.Gid), Mode: proto.Uint32(st.Mode),
		Dev: proto.Uint32(kernelDev(st.Dev)), Ino: proto.Uint64(st.Ino),
		Atim: &crtime.Timeval{TvSec: proto.Uint64(uint64(st.Atim.Sec)), TvUsec: proto.Uint64(uint64(st.Atim.Nsec / 1000))},
		Mtim: &crtime.Timeval{TvSec: proto.Uint64(uint64(st.Mtim.Sec)), TvUsec: proto.Uint64(uint64(st.Mtim.Nsec / 1000))},
	}
	mode := st.Mode & unix.S_IFMT
	if mode == unix.S_IFCHR || mode == unix.S_IFBLK {
		gfe.Rdev = proto.Uint32(uint32(st.Rdev))
	}
	if mode == unix.S_IFREG && st.Size >= ChunksThreshold {
		g.Chunked = true
		gfe.Chunks, gfe.Size = proto.Bool(true), proto.Uint64(uint64(st.Size))
	}
	g.ImageBytes = ghostHeader + 4 + int64(proto.Size(gfe))
	if mode != unix.S_IFREG {
		return g, nil
	}
	if !g.Chunked {
		g.DataBytes = st.Size
		g.ImageBytes += st.Size
		return g, nil
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return g, fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	exts, err := fiemapExtents(fd, st.Size)
	if errors.Is(err, unix.EOPNOTSUPP) {
		exts, err = seekExtents(fd, st.Size)
	}
	if err != nil {
		return g, fmt.Errorf("%s: %w", path, err)
	}
	for _, e := range exts {
		ce := &ghost_file.GhostChunkEntry{Len: proto.Uint64(uint64(e[1])), Off: proto.Uint64(uint64(e[0]))}
		g.ImageBytes += 4 + int64(proto.Size(ce)) + e[1]
		g.DataBytes += e[1]
		g.Chunks++
	}
	return g, nil
}

const (
	fsIocFiemap       = 0xC020660B
	fiemapFlagSync    = 0x1
	fiemapExtentLast  = 0x1
	fiemapMaxOffset   = ^uint64(0)
	extentsPerRequest = 512 // CRIU's EXTENT_MAX_COUNT
)

type fiemapHdr struct {
	Start, Length                        uint64
	Flags, MappedExtents, ExtentCount, _ uint32
}

type fiemapExtent struct {
	Logical, Physical, Length uint64
	_                         [2]uint64
	Flags                     uint32
	_                         [3]uint32
}

// fiemapExtents returns {offset, length} of each extent as CRIU's copy_file_to_chunks_fiemap
// sees them: extents starting beyond size are skipped, extents crossing size are cut at size.
func fiemapExtents(fd int, size int64) ([][2]int64, error) {
	buf := make([]byte, unsafe.Sizeof(fiemapHdr{})+extentsPerRequest*unsafe.Sizeof(fiemapExtent{}))
	hdr := (*fiemapHdr)(unsafe.Pointer(&buf[0]))
	exts := unsafe.Slice((*fiemapExtent)(unsafe.Pointer(&buf[unsafe.Sizeof(fiemapHdr{})])), extentsPerRequest)
	var out [][2]int64
	pos := uint64(0)
	for {
		clear(buf)
		hdr.Start, hdr.Length, hdr.Flags, hdr.ExtentCount = pos, fiemapMaxOffset, fiemapFlagSync, extentsPerRequest
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsIocFiemap, uintptr(unsafe.Pointer(&buf[0]))); errno != 0 {
			return nil, errno
		}
		n := int(hdr.MappedExtents)
		for i := 0; i < n; i++ {
			e := exts[i]
			if e.Logical > uint64(size) {
				continue
			}
			l := e.Length
			if e.Logical+l > uint64(size) {
				l = uint64(size) - e.Logical
			}
			out = append(out, [2]int64{int64(e.Logical), int64(l)})
			if e.Flags&fiemapExtentLast != 0 {
				return out, nil
			}
		}
		if n != extentsPerRequest || len(out) == 0 {
			return out, nil
		}
		last := out[len(out)-1]
		pos = uint64(last[0] + last[1])
	}
}

// seekExtents mirrors CRIU's copy_file_to_chunks: data ranges found with SEEK_DATA/SEEK_HOLE.
func seekExtents(fd int, size int64) ([][2]int64, error) {
	var out [][2]int64
	var hole int64
	for hole < size {
		data, err := unix.Seek(fd, hole, unix.SEEK_DATA)
		if err != nil {
			if errors.Is(err, unix.ENXIO) {
				break
			}
			if hole == 0 {
				data, hole = 0, size
				out = append(out, [2]int64{data, hole - data})
				break
			}
			return nil, fmt.Errorf("SEEK_DATA: %w", err)
		}
		hole, err = unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("SEEK_HOLE: %w", err)
		}
		out = append(out, [2]int64{data, hole - data})
	}
	return out, nil
}

// kernelDev converts a user-space dev_t to the kernel's internal encoding (major<<20 | minor),
// which is what CRIU stores in ghost_file_entry.dev (it comes from mountinfo's s_dev).
func kernelDev(dev uint64) uint32 {
	return unix.Major(dev)<<20 | unix.Minor(dev)
}
