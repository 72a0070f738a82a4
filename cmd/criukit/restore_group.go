package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/criukit/criukit/migrate"
	"github.com/spf13/cobra"
)

const restoreGroupHelp = `
Group restore (connected trees dumped separately):
  criukit restore --group DIR@NETNS --group DIR@NETNS [--json] [criu restore options]
restores each DIR with 'criu restore -d' in its network namespace NETNS (a path such as
/run/netns/NAME; DIR alone restores here), in the order given, with the remaining options added
(e.g. --tcp-established). Before the first restore it installs nftables rules in every target netns
that drop every packet of every TCP connection of the group, and it removes them after the last one
(also on failure). Without them the first end restored sends to its peer's (new) address, whose
netns has no socket yet and answers RST: the connection is reset. Needs nft (Debian nftables).`

// groupMembers extracts the --group members (and --json) from args; ok is false when there is none.
func groupMembers(args []string) (members []migrate.Member, rest []string, asJSON, ok bool, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		var v string
		switch {
		case a == "--group":
			if i+1 >= len(args) {
				return nil, nil, false, true, fmt.Errorf("--group needs DIR@NETNS")
			}
			i++
			v = args[i]
		case strings.HasPrefix(a, "--group="):
			v = strings.TrimPrefix(a, "--group=")
		case a == "--json":
			asJSON = true
			continue
		default:
			rest = append(rest, a)
			continue
		}
		dir, ns, _ := strings.Cut(v, "@")
		if dir == "" {
			return nil, nil, false, true, fmt.Errorf("--group %q: want DIR@NETNS", v)
		}
		members = append(members, migrate.Member{Dir: dir, Netns: ns})
	}
	return members, rest, asJSON, len(members) > 0, nil
}

func runGroupRestore(cmd *cobra.Command, members []migrate.Member, rest []string, asJSON bool) error {
	w := cmd.OutOrStdout()
	for _, a := range rest {
		if a == "-D" || strings.HasPrefix(a, "--images-dir") || a == "-d" || a == "--restore-detached" || strings.HasPrefix(a, "--pidfile") {
			return fmt.Errorf("restore --group: %s is set per member (DIR of --group; always detached)", a)
		}
	}
	res, err := migrate.GroupRestore(cmd.Context(), members, "", rest)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if asJSON {
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(res)
	}
	for i, m := range members {
		fmt.Fprintf(w, "%s restored in %s: pid %d\n", m.Dir, map[bool]string{true: "this netns", false: m.Netns}[m.Netns == ""], res.Pids[i])
	}
	fmt.Fprintf(w, "%d connection(s) held by drop rules (table inet %s) until the last restore\n", len(res.Tuples), res.Table)
	return nil
}
