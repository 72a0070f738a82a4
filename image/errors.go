package image

import (
	"errors"
	"fmt"
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrUnknownImage: the file name matches no CRIU image pattern (or its magic is unknown).
	ErrUnknownImage = errors.New("unknown CRIU image")
	// ErrBadMagic: the magic in the file does not match the one its name implies.
	ErrBadMagic = errors.New("magic does not match the file name")
	// ErrTruncated: the file ends in the middle of a head, entry or extra.
	ErrTruncated = errors.New("truncated image")
	// ErrTooLarge: an entry size is above MaxEntrySize (sizes beyond the end of the file are ErrTruncated).
	ErrTooLarge = errors.New("entry size too large")
	// ErrBadPayload: a protobuf payload does not parse.
	ErrBadPayload = errors.New("invalid protobuf payload")
	// ErrExtraMismatch: an entry's extra bytes do not have the length its message implies.
	ErrExtraMismatch = errors.New("extra length does not match the entry")
	// ErrWrongMessage: an entry holds a message of a type the image kind does not allow.
	ErrWrongMessage = errors.New("wrong message type for this image")
	// ErrNotStreamable: the operation needs entries but the image is raw or unknown.
	ErrNotStreamable = errors.New("image has no entries (raw or unknown file)")
	// ErrPageNotDumped: no pagemap entry covers the address (never-touched or unmapped memory).
	ErrPageNotDumped = errors.New("page not in the dump")
	// ErrPageLazy: the page was left to lazy-pages (PE_LAZY without PE_PRESENT); it is not in the images.
	ErrPageLazy = errors.New("page is lazy (not in the images)")
	// ErrNotRegular: the path is a directory, FIFO, device or socket, not an image file (FIFOs are
	// never opened: an open would block).
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooBig: the image would take more memory to hold whole than MaxDecodeBytes allows.
	ErrTooBig = errors.New("image too large to hold in memory")
	// ErrNoParent: a PE_PARENT page needs the `parent` images directory, which is missing.
	ErrNoParent = errors.New("page is in the parent images directory, which is missing")
)

// MaxEntrySize caps one protobuf payload (CRIU itself has no cap: criu/protobuf.c mallocs the u32 size).
// Real payloads are far below it; the cap stops garbage sizes from causing huge allocations.
var MaxEntrySize uint32 = 64 << 20

// MaxEmptyEntries caps the zero-length entries of one image. CRIU writes an empty entry only for a
// message with no field set, and only images of one such entry have them (stats, netns, cgroup...);
// a file padded with zeros after its magic would otherwise decode as millions of empty entries.
var MaxEmptyEntries = 4096

// MaxDecodeBytes caps what Decode/ReadFile hold in memory for one image: entry payloads and extras,
// plus decodeEntryCost per entry, or the whole content of a raw file. Larger images are refused
// with ErrTooBig (stream them with Open/Next instead).
var MaxDecodeBytes int64 = 1 << 30

// decodeEntryCost estimates the memory of one decoded entry besides its payload (Entry, message).
const decodeEntryCost = 160

// FormatError tells what is wrong in which file, at which byte offset and in which entry.
// Entry is the 0-based entry index, -1 for the file head.
type FormatError struct {
	File   string
	Offset int64
	Entry  int
	Err    error
}

func (e *FormatError) Error() string {
	where := "head"
	if e.Entry >= 0 {
		where = fmt.Sprintf("entry %d", e.Entry)
	}
	return fmt.Sprintf("image %s: %s at offset %d: %v", e.File, where, e.Offset, e.Err)
}

func (e *FormatError) Unwrap() error { return e.Err }

func ferr(file string, off int64, entry int, err error, format string, args ...any) error {
	if format != "" {
		err = fmt.Errorf("%w: %s", err, fmt.Sprintf(format, args...))
	}
	return &FormatError{File: file, Offset: off, Entry: entry, Err: err}
}
