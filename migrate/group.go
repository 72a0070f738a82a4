package migrate

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strings"

	"github.com/criukit/criukit/internal/criurun"
	"github.com/criukit/criukit/netrw"
)

// Member is one dump of a group restore: its images directory and the netns it is restored in.
type Member struct {
	Dir   string `json:"dir"`
	Netns string `json:"netns"` // path (/run/netns/NAME); "" = ours
}

// Tuple is one TCP connection of a group as it will be restored (after any rewrite).
type Tuple struct {
	Src, Dst netip.AddrPort
}

func (t Tuple) String() string { return t.Src.String() + " -> " + t.Dst.String() }

// GroupResult says what GroupRestore did.
type GroupResult struct {
	Pids   []int    `json:"pids"`   // restored roots, in member order
	Tuples []string `json:"tuples"` // connections the drop rules covered
	Table  string   `json:"table"`  // nftables table used in every target netns
}

// GroupTuples lists the TCP connections of the members' images (both ends of a connection dumped
// separately give two tuples, one reversed).
func GroupTuples(members []Member) ([]Tuple, error) {
	seen := map[Tuple]bool{}
	var out []Tuple
	for _, m := range members {
		d, err := netrw.Load(m.Dir)
		if err != nil {
			return nil, fmt.Errorf("group restore: %s: %w", m.Dir, err)
		}
		for _, s := range d.Sockets {
			if s.Proto != "tcp" || !s.Connected() {
				continue
			}
			t := Tuple{Src: unmap(s.Src), Dst: unmap(s.Dst)}
			r := Tuple{Src: t.Dst, Dst: t.Src}
			if seen[t] || seen[r] {
				continue
			}
			seen[t] = true
			out = append(out, t)
		}
	}
	return out, nil
}

func unmap(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }

// dropRules is an nft script: a table that drops every packet of the tuples, both directions, on
// input and output.
func dropRules(table string, tuples []Tuple) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", table)
	for _, hook := range []string{"input", "output"} {
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype filter hook %s priority -160; policy accept;\n", hook, hook)
		for _, t := range tuples {
			for _, d := range []Tuple{t, {Src: t.Dst, Dst: t.Src}} {
				fam := "ip"
				if d.Src.Addr().Is6() {
					fam = "ip6"
				}
				fmt.Fprintf(&b, "\t\t%s saddr %s %s daddr %s tcp sport %d tcp dport %d counter drop\n",
					fam, d.Src.Addr(), fam, d.Dst.Addr(), d.Src.Port(), d.Dst.Port())
			}
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func nft(netns, script string, args ...string) error {
	argv := append([]string{}, args...)
	var cmd *exec.Cmd
	if netns != "" {
		cmd = exec.Command("nsenter", append([]string{"--net=" + netns, "--", "nft"}, argv...)...)
	} else {
		cmd = exec.Command("nft", argv...)
	}
	if script != "" {
		cmd.Stdin = strings.NewReader(script)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return fmt.Errorf("nft not found: install Debian's nftables package (scripts/install-corpus installs it)")
		}
		return fmt.Errorf("nft %s in netns %q: %v: %s", strings.Join(argv, " "), netns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// groupWithoutRules turns the drop rules off (tests show what happens then).
var groupWithoutRules = false

// GroupRestore restores dumps whose processes are connected to each other (the two ends of a TCP
// connection dumped separately, each moved to its own netns, e.g. after `net rewrite`) so that the
// connections survive: before the first restore it installs, in every target netns, nftables rules
// that drop every packet of every connection of the group; it restores the members in order (criu
// restore -d in the member's netns, args added, e.g. --tcp-established), and removes the rules
// after the last one. Without them, the first end restored sends to the other end's new address,
// whose netns has no socket for it yet and answers RST. The rules are removed on failure too.
func GroupRestore(ctx context.Context, members []Member, criu string, args []string) (*GroupResult, error) {
	if len(members) == 0 {
		return nil, errors.New("group restore: no members")
	}
	tuples, err := GroupTuples(members)
	if err != nil {
		return nil, err
	}
	res := &GroupResult{Table: fmt.Sprintf("criukit-group-%d", os.Getpid())}
	for _, t := range tuples {
		res.Tuples = append(res.Tuples, t.String())
	}
	sort.Strings(res.Tuples)
	var netnses []string
	seen := map[string]bool{}
	for _, m := range members {
		if !seen[m.Netns] {
			seen[m.Netns] = true
			netnses = append(netnses, m.Netns)
		}
	}
	var installed []string
	defer func() {
		for _, ns := range installed {
			_ = nft(ns, "", "delete", "table", "inet", res.Table)
		}
	}()
	if len(tuples) > 0 && !groupWithoutRules {
		script := dropRules(res.Table, tuples)
		for _, ns := range netnses {
			if err := nft(ns, script, "-f", "-"); err != nil {
				return res, fmt.Errorf("group restore: drop rules: %w", err)
			}
			installed = append(installed, ns)
		}
	}
	for i, m := range members {
		pid, err := criurun.Restore(ctx, criurun.Opts{Criu: criu, ImagesDir: m.Dir, Netns: m.Netns, Args: args})
		if err != nil {
			return res, fmt.Errorf("group restore: member %d (%s in %q): %w", i+1, m.Dir, m.Netns, err)
		}
		res.Pids = append(res.Pids, pid)
	}
	for _, ns := range installed {
		if err := nft(ns, "", "delete", "table", "inet", res.Table); err != nil {
			return res, fmt.Errorf("group restore: remove drop rules: %w", err)
		}
	}
	installed = nil
	return res, nil
}
