// Package fwtext rewrites addresses in the firewall dumps CRIU stores for a network namespace:
// iptables-save / ip6tables-save text (iptables-*.img, ip6tables-*.img) and `nft list ruleset`
// text (nftables-*.img). CRIU's own network-lock rules (nft table CRIU-..., iptables chain CRIU)
// are never touched: CRIU removes them itself on unlock.
package fwtext

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Format of a firewall dump.
type Format int

const (
	Iptables Format = iota // iptables-save and ip6tables-save
	Nftables               // nft list ruleset
)

// Mapper is what Rewrite needs from an address map (addrmap.Map implements it).
type Mapper interface {
	Addr(netip.Addr) (netip.Addr, bool)
	Prefix(netip.Prefix) (np netip.Prefix, ok, covers bool)
}

// Change is one rewritten (or deliberately kept) address.
type Change struct {
	Line    int    `json:"line"` // 1-based
	Old     string `json:"old"`
	New     string `json:"new"`
	Warning string `json:"warning,omitempty"`
}

// Rewrite maps every address and network literal in text, outside CRIU's lock rules and
// comments. Networks wider than a mapped network are kept and reported with a Warning.
func Rewrite(text []byte, f Format, m Mapper) ([]byte, []Change) {
	var out bytes.Buffer
	var changes []Change
	depth := 0      // nft brace depth
	skipDepth := -1 // depth at which the CRIU table started (nft)
	lines := bytes.SplitAfter(text, []byte("\n"))
	for i, raw := range lines {
		line := string(raw)
		trim := strings.TrimSpace(line)
		skip := strings.HasPrefix(trim, "#")
		if f == Nftables {
			if skipDepth < 0 && isCRIUTable(trim) {
				skipDepth = depth
			}
			depth += braceDelta(line)
			if skipDepth >= 0 {
				skip = true
				if depth <= skipDepth { // the closing brace of CRIU's table
					skipDepth = -1
				}
			}
		} else if isCRIUChainLine(trim) {
			skip = true
		}
		if skip {
			out.WriteString(line)
			continue
		}
		nl, ch := rewriteLine(line, i+1, m)
		out.WriteString(nl)
		changes = append(changes, ch...)
	}
	return out.Bytes(), changes
}

func isCRIUTable(trim string) bool {
	fs := strings.Fields(trim)
	// "table inet CRIU-xxxx {" or "table CRIU-xxxx {" (ip family omitted)
	for j := 1; j < len(fs) && j <= 2; j++ {
		if fs[0] == "table" && strings.HasPrefix(fs[j], "CRIU") {
			return true
		}
	}
	return false
}

func isCRIUChainLine(trim string) bool {
	fs := strings.Fields(trim)
	for j, f := range fs {
		if f == ":CRIU" || (f == "CRIU" && j > 0 && (fs[j-1] == "-A" || fs[j-1] == "-I" || fs[j-1] == "-j" || fs[j-1] == "-N" || fs[j-1] == "--jump" || fs[j-1] == "--append" || fs[j-1] == "--insert")) {
			return true
		}
	}
	return false
}

func braceDelta(line string) int {
	d := 0
	inQ := false
	for _, c := range line {
		switch c {
		case '"':
			inQ = !inQ
		case '{':
			if !inQ {
				d++
			}
		case '}':
			if !inQ {
				d--
			}
		}
	}
	return d
}

func isAddrChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '.' || c == ':'
}

func isWordChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
}

// rewriteLine finds address literals: maximal runs of [0-9a-fA-F.:] that start and end at a word
// boundary and parse as an address, optionally followed by /bits (a network) or, for IPv4,
// :port.
func rewriteLine(line string, no int, m Mapper) (string, []Change) {
	var b strings.Builder
	var ch []Change
	i := 0
	for i < len(line) {
		c := line[i]
		if !isAddrChar(c) || (i > 0 && (isWordChar(line[i-1]) || line[i-1] == '.' || line[i-1] == ':')) {
			b.WriteByte(c)
			i++
			continue
		}
		j := i
		for j < len(line) && isAddrChar(line[j]) {
			j++
		}
		run := line[i:j]
		if j < len(line) && isWordChar(line[j]) { // part of a word like 10abc
			b.WriteString(run)
			i = j
			continue
		}
		addr, err := netip.ParseAddr(run)
		suffix := ""
		if err != nil && strings.Contains(run, ".") {
			if k := strings.LastIndexByte(run, ':'); k > 0 {
				if _, perr := strconv.ParseUint(run[k+1:], 10, 16); perr == nil {
					if a4, err4 := netip.ParseAddr(run[:k]); err4 == nil && a4.Is4() {
						addr, err, suffix = a4, nil, run[k:]
					}
				}
			}
		}
		if err != nil || (!strings.Contains(run, ".") && strings.Count(run, ":") < 2) {
			b.WriteString(run)
			i = j
			continue
		}
		// optional /bits right after the address (not after an address:port)
		bits := -1
		end := j
		if suffix == "" && j < len(line) && line[j] == '/' {
			k := j + 1
			for k < len(line) && line[k] >= '0' && line[k] <= '9' {
				k++
			}
			if n, perr := strconv.Atoi(line[j+1 : k]); perr == nil && n <= addr.BitLen() && (k == len(line) || !isWordChar(line[k])) {
				bits, end = n, k
			}
		}
		oldTxt := line[i:end]
		newTxt := oldTxt
		if bits >= 0 && bits < addr.BitLen() {
			np, ok, covers := m.Prefix(netip.PrefixFrom(addr, bits))
			switch {
			case covers:
				ch = append(ch, Change{Line: no, Old: oldTxt, New: oldTxt, Warning: "wider than a mapped network: kept"})
			case ok && np.Addr() != addr:
				newTxt = fmt.Sprintf("%s/%d", np.Addr(), bits)
			}
		} else if na, ok := m.Addr(addr); ok && na != addr {
			newTxt = na.String() + suffix
			if bits >= 0 {
				newTxt = fmt.Sprintf("%s/%d", na, bits)
			}
		}
		if newTxt != oldTxt {
			ch = append(ch, Change{Line: no, Old: oldTxt, New: newTxt})
		}
		b.WriteString(newTxt)
		i = end
	}
	return b.String(), ch
}
