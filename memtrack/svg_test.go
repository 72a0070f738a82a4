package memtrack

import "testing"

func TestNiceCeil(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{
		{0.5, 4}, {1, 4}, {3, 4}, {4, 4}, {5, 8}, {14, 20}, {120, 200}, {1000, 1000}, {16409, 20000},
	} {
		if got := niceCeil(c.in); got != c.want {
			t.Errorf("niceCeil(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
