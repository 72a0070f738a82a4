package cow

// frameTable maps page keys to non-zero values: PFNs through a two-level array (64 Ki frames per
// block, blocks allocated where the tree has frames), swap entries and very high PFNs through a
// map. A lookup per page of an 11 GiB tree is too many for a map.
type frameTable[T comparable] struct {
	dense [][]T
	other map[PageKey]T
}

const (
	frameBlockBits = 16
	maxDenseBlocks = 1 << 20 // PFNs below 2^36 (256 TiB of RAM) go to the array
)

func (t *frameTable[T]) get(k PageKey) (T, bool) {
	var zero T
	hi := uint64(k) >> frameBlockBits
	if hi >= maxDenseBlocks {
		v, ok := t.other[k]
		return v, ok
	}
	if hi >= uint64(len(t.dense)) || t.dense[hi] == nil {
		return zero, false
	}
	v := t.dense[hi][k&(1<<frameBlockBits-1)]
	return v, v != zero
}

// set stores v (which must not be the zero value) for k.
func (t *frameTable[T]) set(k PageKey, v T) {
	hi := uint64(k) >> frameBlockBits
	if hi >= maxDenseBlocks {
		if t.other == nil {
			t.other = map[PageKey]T{}
		}
		t.other[k] = v
		return
	}
	if hi >= uint64(len(t.dense)) {
		t.dense = append(t.dense, make([][]T, hi+1-uint64(len(t.dense)))...)
	}
	if t.dense[hi] == nil {
		t.dense[hi] = make([]T, 1<<frameBlockBits)
	}
	t.dense[hi][k&(1<<frameBlockBits-1)] = v
}

// locTable maps frames to where their page is stored (loc.proc kept +1 so that zero is "none").
type locTable struct{ t frameTable[loc] }

func (t *locTable) get(k PageKey) (loc, bool) {
	l, ok := t.t.get(k)
	l.proc--
	return l, ok
}

func (t *locTable) set(k PageKey, l loc) {
	l.proc++
	t.t.set(k, l)
}

// setIfAbsent records where the first page of frame k is.
func (t *locTable) setIfAbsent(k PageKey, l loc) {
	if _, ok := t.get(k); !ok {
		t.set(k, l)
	}
}
