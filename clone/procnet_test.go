package clone

import (
	"net/netip"
	"testing"
)

func TestProcNetAddr(t *testing.T) {
	for in, want := range map[string]string{
		"10.30.0.2:7000":  "02001E0A:1B58",
		"[fd00:30::2]:80": "300000FD000000000000000002000000:0050",
		"0.0.0.0:22":      "00000000:0016",
	} {
		if got := procNetAddr(netip.MustParseAddrPort(in)); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}
