package tcplab

import (
	"sort"
	"strings"
)

var registry []*Case

func register(cs ...*Case) { registry = append(registry, cs...) }

// Cases returns every case, sorted by ID.
func Cases() []*Case {
	out := append([]*Case(nil), registry...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// dataPkt matches packets with payload.
func dataPkt(p *Pkt) bool { return p.Len > 0 }

func finPkt(p *Pkt) bool { return p.Flags&FIN != 0 }

func repeat(s string, n int) string { return strings.Repeat(s, n) }
