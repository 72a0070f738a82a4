package zdtm

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	pagemap "github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/stats"
	"github.com/criukit/criukit/image"
)

// PageCount is zdtm's page count check for dumps whose pages files hold fewer pages than criu
// sent (criukit's dedup page server stores a shared page once): the pages the top-level pagemaps
// describe, stored (PE_PRESENT) or read through the parent chain (PE_PARENT), must add up to
// criu's pages_written + shpages_written of stats-dump.
type PageCount struct {
	Stored  int64 `json:"stored"`  // PE_PRESENT pages of the top-level pagemaps
	Deduped int64 `json:"deduped"` // PE_PARENT pages of the top-level pagemaps
	Written int64 `json:"written"` // criu's stats: pages_written + shpages_written
	Bytes   int64 `json:"bytes"`   // bytes of the top-level pages-*.img files
}

// CountPages reads the pagemaps and stats-dump of dir and checks them against each other and
// against the pages files' sizes.
func CountPages(dir string) (*PageCount, error) {
	st, err := image.ReadFile(filepath.Join(dir, "stats-dump"))
	if err != nil {
		return nil, err
	}
	if len(st.Entries) != 1 {
		return nil, fmt.Errorf("stats-dump: %d entries, want 1", len(st.Entries))
	}
	se, ok := st.Entries[0].Msg.(*stats.StatsEntry)
	if !ok || se.GetDump() == nil {
		return nil, fmt.Errorf("stats-dump: no dump stats")
	}
	pc := &PageCount{Written: int64(se.GetDump().GetPagesWritten()) + int64(se.GetDump().GetShpagesWritten())}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() {
			continue
		}
		if strings.HasPrefix(name, "pages-") {
			if fi, err := e.Info(); err == nil {
				pc.Bytes += fi.Size()
			}
			continue
		}
		if !strings.HasPrefix(name, "pagemap-") {
			continue
		}
		img, err := image.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		for _, en := range img.Entries {
			pe, ok := en.Msg.(*pagemap.PagemapEntry)
			if !ok {
				continue // the head
			}
			n, fl := image.NrPages(pe), image.PagemapFlags(pe)
			switch {
			case fl&image.PEParent != 0:
				pc.Deduped += int64(n)
			case fl&image.PEPresent != 0:
				pc.Stored += int64(n)
			}
		}
	}
	if pc.Stored+pc.Deduped != pc.Written {
		return pc, fmt.Errorf("%s: pagemaps describe %d pages (%d stored + %d deduped), criu wrote %d", dir, pc.Stored+pc.Deduped, pc.Stored, pc.Deduped, pc.Written)
	}
	if pc.Bytes != pc.Stored*int64(image.PageSize) {
		return pc, fmt.Errorf("%s: pages files hold %d bytes, the pagemaps store %d pages", dir, pc.Bytes, pc.Stored)
	}
	return pc, nil
}
