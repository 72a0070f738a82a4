package cow

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// MarkerFile is written into every deduped images directory (CRIU ignores it).
const MarkerFile = "criukit-cow.json"

// Format is the marker's format string.
const Format = "criukit-cow/1"

// MaxLevels caps the parent chain depth (levels needed for matches that are not monotonic).
const MaxLevels = 8

// Sentinel errors.
var (
	ErrIncremental = errors.New("input is an incremental dump (PE_PARENT pages or a parent link)")
	ErrDeduped     = errors.New("images directory is already deduped by criukit cow")
	ErrNotDeduped  = errors.New("images directory is not deduped by criukit cow")
	ErrUnsafeOpt   = errors.New("option corrupts deduped images")
	ErrExists      = errors.New("output already exists")
	ErrBadImages   = errors.New("unexpected images layout")
)

// Marker is the content of MarkerFile.
type Marker struct {
	Format string `json:"format"`
	Levels int    `json:"levels"`
	Match  string `json:"match"` // "content" (hash + memcmp)
	// Pages counts: before (sum of the stock pages files) and after.
	PagesBefore int64 `json:"pages_before"`
	PagesAfter  int64 `json:"pages_after"`
}

// IsDeduped tells whether dir carries the marker file.
func IsDeduped(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, MarkerFile))
	return err == nil
}

// ReadMarker reads the marker of a deduped directory.
func ReadMarker(dir string) (*Marker, error) {
	b, err := os.ReadFile(filepath.Join(dir, MarkerFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w (no %s)", dir, ErrNotDeduped, MarkerFile)
		}
		return nil, err
	}
	var m Marker
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: bad marker: %v", filepath.Join(dir, MarkerFile), err)
	}
	return &m, nil
}

func levelDir(k int) string { return fmt.Sprintf("cow-%d", k) }
