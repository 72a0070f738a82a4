package image

import (
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/magic"
)

// TestMagicsAgainstGoCriu cross-checks our magic table (taken from CRIU's criu/include/magic.h) with
// go-criu's generated one. go-criu v8.3.0 lacks PIDFD; every value it has must agree with ours.
func TestMagicsAgainstGoCriu(t *testing.T) {
	mm := magic.LoadMagic()
	var missing []string
	for _, d := range descs {
		if d.Magic == "" {
			continue
		}
		v, ok := mm.ByName[d.Magic]
		if !ok {
			missing = append(missing, d.Magic)
			continue
		}
		if uint32(v) != d.MagicValue {
			t.Errorf("%s: ours %#x, go-criu %#x", d.Magic, d.MagicValue, v)
		}
	}
	for name, want := range map[string]uint32{"IMG_COMMON": MagicImgCommon, "IMG_SERVICE": MagicImgService} {
		if uint32(mm.ByName[name]) != want {
			t.Errorf("%s: ours %#x, go-criu %#x", name, want, mm.ByName[name])
		}
	}
	if len(missing) != 1 || missing[0] != "PIDFD" {
		t.Errorf("magics go-criu lacks: %v (expected only PIDFD)", missing)
	}
	// every type has a message or is raw, and every pattern classifies to itself
	for _, d := range descs {
		if (d.Kind == KindRaw) != (d.New == nil) {
			t.Errorf("%s: kind %v with New=%v", d.Name, d.Kind, d.New != nil)
		}
	}
}
