package critjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
)

// KnownDiff is an accepted difference between Debian 12's crit 3.17 JSON and ours on CRIU 4.2
// images (docs/crit-compat.md lists the same).
type KnownDiff struct {
	Magic string // image magic ("*" any)
	Path  string // JSON path, [*] for any index; path.Match syntax
	Kind  string // "ours-only": key missing in crit; "crit-only"; "value": both have it, values differ
	Why   string
}

// Crit317Diffs are the differences between crit 3.17 and criukit on CRIU 4.2 images. Any other
// difference is a bug (in criukit, or a new one to explain here and in docs/crit-compat.md).
var Crit317Diffs = []KnownDiff{
	{"CORE", "entries[*].thread_core.cg_set", "ours-only", "field newer than crit 3.17's core.proto: crit drops unknown fields"},
	{"CORE", "entries[*].thread_core.creds.cap_amb", "ours-only", "newer field (ambient capabilities)"},
	{"CORE", "entries[*].thread_core.creds.no_new_privs", "ours-only", "newer field (prctl PR_SET_NO_NEW_PRIVS)"},
	{"CORE", "entries[*].tc.stop_signo", "ours-only", "newer field (signal that stopped a task dumped in the stopped state)"},
	{"CORE", "entries[*].tc.membarrier_registration_mask", "ours-only", "newer field (membarrier registrations)"},
	{"CORE", "entries[*].thread_info.fpregs.xsave.cet", "ours-only", "newer field (x86 CET user state in the xsave area)"},
	{"INVENTORY", "entries[*].plugins_entry", "ours-only", "newer inventory field"},
	{"INVENTORY", "entries[*].dump_criu_run_id", "ours-only", "newer inventory field"},
	{"INVENTORY", "entries[*].network_lock_method", "ours-only", "newer inventory field"},
	{"INVENTORY", "entries[*].allow_uprobes", "ours-only", "newer inventory field"},
	{"PAGEMAP", "entries[*].nr_pages", "value", "CRIU 4.2 moved the page count to field 5 (nr_pages); crit 3.17 names field 2 nr_pages and shows its 0"},
	{"PAGEMAP", "entries[*].compat_nr_pages", "ours-only", "field 2 is compat_nr_pages in CRIU 4.2's pagemap.proto"},
	{"FDINFO", "entries[*].type", "ours-only", "fd type PIDFD (20) is unknown to crit 3.17: Python protobuf drops unknown enum values"},
	{"FILES", "entries[*].type", "ours-only", "file type PIDFD (20), unknown to crit 3.17"},
	{"FILES", "entries[*].pidfd", "ours-only", "pidfd_entry is newer than crit 3.17"},
	{"FILES", "entries[*].isk.ip_opts.ttl", "ours-only", "newer inet socket option"},
	{"FILES", "entries[*].isk.ip_opts.tos", "ours-only", "newer inet socket option (IP_TOS)"},
	{"FILES", "entries[*].isk.ip_opts.pktinfo", "ours-only", "newer inet socket option (IP_PKTINFO)"},
	{"FILES", "entries[*].isk.tcp_opts", "ours-only", "newer inet socket options (tcp_opts)"},
	{"MEMFD_INODE", "entries[*].mode", "ours-only", "newer memfd field"},
	{"NETNS", "entries[*].ipv4_sysctl", "ours-only", "newer netns field"},
	{"*", "entries[*]*._unknown", "ours-only", "protobuf fields unknown even to criukit's (CRIU 4.2) protos, e.g. of a patched CRIU: kept as base64, crit drops them"},
	{"IPCNS_SHM", "entries[*].extra", "value", "in_pagemaps segments have no inline data: crit reads the next entry's bytes as data"},
}

// KnownCrit317 says whether a difference (kind, generic path with [*]) in an image of the given
// magic is one of Crit317Diffs.
func KnownCrit317(magic, p, kind string) bool {
	for _, k := range Crit317Diffs {
		if (k.Magic == magic || k.Magic == "*") && k.Kind == kind {
			pat := strings.NewReplacer("[", `\[`, "]", `\]`).Replace(k.Path)
			if ok, _ := path.Match(pat, p); ok {
				return true
			}
		}
	}
	return false
}

var indexRE = regexp.MustCompile(`\[\d+\]`)

// CritDiff is one difference between crit's JSON and ours.
type CritDiff struct {
	Kind  string `json:"kind"`  // ours-only, crit-only, value
	Path  string `json:"path"`  // with indexes, e.g. entries[3].tc.stop_signo
	Known bool   `json:"known"` // listed in Crit317Diffs
}

// Generic is the path with every index replaced by [*] (the form Crit317Diffs uses).
func (d CritDiff) Generic() string { return indexRE.ReplaceAllString(d.Path, "[*]") }

// CompareCrit compares crit's JSON (crit decode output) with ours for an image of the given magic
// and returns every difference, sorted, each marked known or not.
func CompareCrit(magic string, crit, ours []byte) ([]CritDiff, error) {
	a, err := decodeAny(crit)
	if err != nil {
		return nil, fmt.Errorf("crit's JSON: %w", err)
	}
	b, err := decodeAny(ours)
	if err != nil {
		return nil, fmt.Errorf("our JSON: %w", err)
	}
	var raw []string
	jsonDiff(a, b, "", &raw)
	sort.Strings(raw)
	out := make([]CritDiff, 0, len(raw))
	for _, df := range raw {
		kind, p, _ := strings.Cut(df, " ")
		p = strings.TrimPrefix(p, ".")
		d := CritDiff{Kind: kind, Path: p}
		d.Known = KnownCrit317(magic, d.Generic(), kind)
		out = append(out, d)
	}
	return out, nil
}

func decodeAny(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

func jsonDiff(a, b any, p string, out *[]string) {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			*out = append(*out, "value "+p)
			return
		}
		for k, v := range x {
			if w, ok := y[k]; ok {
				jsonDiff(v, w, p+"."+k, out)
			} else {
				*out = append(*out, "crit-only "+p+"."+k)
			}
		}
		for k := range y {
			if _, ok := x[k]; !ok {
				*out = append(*out, "ours-only "+p+"."+k)
			}
		}
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			*out = append(*out, "value "+p)
			return
		}
		for i := range x {
			jsonDiff(x[i], y[i], fmt.Sprintf("%s[%d]", p, i), out)
		}
	default:
		if fmt.Sprint(a) != fmt.Sprint(b) {
			*out = append(*out, "value "+p)
		}
	}
}
