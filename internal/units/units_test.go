package units

import "testing"

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 4096: "4.0 KiB", 3002368: "2.9 MiB",
		5 << 29: "2.50 GiB", 3 << 40: "3.00 TiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
	if got := BytesExact(3002368); got != "3002368 (2.9 MiB)" {
		t.Errorf("BytesExact = %q", got)
	}
	if got := BytesExact(100); got != "100" {
		t.Errorf("BytesExact(100) = %q", got)
	}
}
