package netrw

import (
	"net/netip"
	"testing"
)

// CRIU stores in_addr/in6_addr as uint32 words copied from memory (network byte order bytes).
func TestWords(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		family uint32
		n      int
	}{
		{"10.11.0.2", afInet, 1},
		{"0.0.0.0", afInet, 1},
		{"fd00:11::2", afInet6, 4},
		{"::ffff:10.11.0.2", afInet6, 4},
		{"::", afInet6, 4},
	} {
		a := netip.MustParseAddr(tc.addr)
		w := addrToWords(a, tc.n)
		got, err := wordsToAddr(w, tc.family)
		if err != nil || got != a {
			t.Errorf("%s -> %x -> %s %v", a, w, got, err)
		}
	}
	// 10.11.0.2 as CRIU writes it on little-endian machines
	if w := addrToWords(netip.MustParseAddr("10.11.0.2"), 1); w[0] != 0x02000b0a {
		t.Errorf("word %#x", w[0])
	}
	if _, err := wordsToAddr([]uint32{1, 2}, afInet6); err == nil {
		t.Error("2-word IPv6 accepted")
	}
}
