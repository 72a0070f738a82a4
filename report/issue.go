package report

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/criukit/criukit/report/knownissues"
)

// Issue is what gets filed: a title and the ISSUE.md body.
type Issue struct {
	Title string `json:"title"`
	Body  string `json:"body"`
}

// Excerpt sizes: lines before the first error, after the last one, and at most in all.
const (
	ExcerptBefore = 20
	ExcerptAfter  = 5
	ExcerptMax    = 120
)

// Excerpt returns the part of a CRIU log around its errors (from before lines ahead of the first
// error to after lines past the last, at most ExcerptMax lines) and the last error line. The
// harmless RLIMIT_NOFILE line is not an error. No error: nil, "".
func Excerpt(log string, before, after int) ([]string, string) {
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	first, last := -1, -1
	for i, l := range lines {
		if knownissues.IsErrorLine(l) {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return nil, ""
	}
	lo, hi := max(0, first-before), min(len(lines), last+after+1)
	if hi-lo <= ExcerptMax {
		return append([]string(nil), lines[lo:hi]...), strings.TrimSpace(lines[last])
	}
	head := ExcerptMax / 2
	out := append([]string(nil), lines[lo:lo+head]...)
	out = append(out, fmt.Sprintf("[... %d lines left out: see the full log in the bundle ...]", hi-lo-ExcerptMax+1))
	out = append(out, lines[hi-(ExcerptMax-head-1):hi]...)
	return out, strings.TrimSpace(lines[last])
}

var errPrefix = regexp.MustCompile(`^\(\s*[0-9.]+\)\s*(?:(?:Error|Warn)\s*\([^)]*\):)?\s*`)

// ErrorText strips the timestamp and "Error (file:line):" prefix of a CRIU log line.
func ErrorText(line string) string {
	return strings.TrimSpace(errPrefix.ReplaceAllString(strings.TrimSpace(line), ""))
}

// Title is the issue title: the first known issue's error, else the first unexplained error.
func Title(s *Summary) string {
	t := ""
	switch {
	case len(s.Findings) > 0:
		t = ErrorText(s.Findings[0].Line)
	case len(s.Unmatched) > 0:
		t = ErrorText(s.Unmatched[0])
	case s.LastError != "":
		t = ErrorText(s.LastError)
	}
	if t == "" {
		return "CRIU problem report"
	}
	if len(t) > 110 {
		t = t[:107] + "..."
	}
	return "criu: " + t
}

func fence(b *strings.Builder, text string) {
	f := "```"
	for strings.Contains(text, f) {
		f += "`"
	}
	fmt.Fprintf(b, "%s\n%s\n%s\n", f, strings.TrimRight(text, "\n"), f)
}

func details(b *strings.Builder, summary, text string) {
	fmt.Fprintf(b, "<details><summary>%s</summary>\n<p>\n\n", summary)
	fence(b, text)
	b.WriteString("\n</p>\n</details>\n\n")
}

// IssueMarkdown renders ISSUE.md in the shape of CRIU's .github/ISSUE_TEMPLATE.md, pre-filled
// from the (anonymized) summary and log excerpt.
func IssueMarkdown(s *Summary, excerpt []string) string {
	var b strings.Builder
	e := s.Env
	b.WriteString("<!--\nPrepared by criukit report (level " + s.Level + "): logs, images and paths are anonymized with one\n" +
		"mapping; the full bundle (anonymized images, full logs, MANIFEST.json) should be attached to this issue.\n" +
		"Fill in the parts marked TODO before filing.\n-->\n\n")
	b.WriteString("**Description**\n\n")
	if s.LastError != "" {
		fmt.Fprintf(&b, "CRIU failed (log `%s`): `%s`; its last error: `%s`.\n\n", s.ErrorLog, strings.TrimPrefix(s.Title, "criu: "), ErrorText(s.LastError))
	}
	b.WriteString("TODO: briefly describe the problem.\n\n")
	b.WriteString("**Steps to reproduce the issue:**\n1. TODO\n2.\n3.\n\n")
	b.WriteString("**Describe the results you received:**\n\n")
	errs := []string{}
	for _, m := range s.Findings {
		errs = append(errs, m.Line)
	}
	errs = append(errs, s.Unmatched...)
	if len(errs) > 0 {
		if len(errs) > 15 {
			errs = errs[:15]
		}
		fence(&b, strings.Join(errs, "\n"))
		b.WriteString("\n")
	} else {
		b.WriteString("TODO\n\n")
	}
	b.WriteString("**Describe the results you expected:**\n\nTODO\n\n")
	b.WriteString("**Additional information you deem important (e.g. issue happens only occasionally):**\n\n")
	if len(s.Findings) == 0 {
		b.WriteString("The criukit known-issue matcher found no known issue in the logs.\n\n")
	} else {
		b.WriteString("Known issues found by `criukit report` in the logs:\n\n")
		for _, m := range s.Findings {
			fmt.Fprintf(&b, "- **%s** (`%s`, %s line %d, %d time(s)): %s\n  - Fix: %s\n", m.Title, m.ID, m.File, m.LineNo, m.Count, m.Explain, m.Fix)
			if len(m.Refs) > 0 {
				fmt.Fprintf(&b, "  - Refs: %s\n", strings.Join(m.Refs, ", "))
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("**CRIU logs and information:**\n\n")
	logText := "(no CRIU error found in the logs)"
	if len(excerpt) > 0 {
		logText = fmt.Sprintf("%s (excerpt around the errors; full logs in the bundle: %s)\n%s", s.ErrorLog, strings.Join(s.Logs, ", "), strings.Join(excerpt, "\n"))
	}
	details(&b, "CRIU full dump/restore logs:", logText)
	details(&b, "Output of `criu --version`:", e.CriuVersion)
	details(&b, "Output of `criu check --all`:", e.CheckAll)
	b.WriteString("**Additional environment details:**\n\n")
	fmt.Fprintf(&b, "- Kernel: `%s` `%s`, arch `%s`\n", e.KernelRelease, e.KernelVersion, e.Arch)
	distro := strings.TrimSpace(e.DistroID + " " + e.DistroVersion)
	if e.DistroName != "" {
		distro += " (" + e.DistroName + ")"
	}
	if distro == "" {
		distro = "unknown (no /etc/os-release)"
	}
	fmt.Fprintf(&b, "- Distribution: %s\n", distro)
	if len(e.Runtimes) == 0 {
		b.WriteString("- Container runtimes on PATH: none\n")
	} else {
		var rs []string
		for _, r := range e.Runtimes {
			rs = append(rs, fmt.Sprintf("%s `%s`", r.Name, r.Version))
		}
		fmt.Fprintf(&b, "- Container runtimes on PATH: %s\n", strings.Join(rs, "; "))
	}
	if len(e.Commands) > 0 {
		b.WriteString("- CRIU command lines found in the logs:\n")
		for _, c := range e.Commands {
			fmt.Fprintf(&b, "  - `%s`\n", strings.ReplaceAll(c, "`", "'"))
		}
	} else {
		b.WriteString("- CRIU command line: TODO (not found in the logs)\n")
	}
	b.WriteString("\n")
	if len(e.Features) > 0 {
		b.WriteString("| feature | available | source | detail |\n|---|---|---|---|\n")
		for _, f := range e.Features {
			ok := "no"
			if f.OK {
				ok = "yes"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", f.Name, ok, mdCell(f.Source), mdCell(f.Detail))
		}
		b.WriteString("\n")
	}
	if len(e.KernelConfig) > 0 {
		keys := make([]string, 0, len(e.KernelConfig))
		for k := range e.KernelConfig {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var lines []string
		for _, k := range keys {
			lines = append(lines, k+"="+e.KernelConfig[k])
		}
		details(&b, "Kernel config ("+e.ConfigSource+"):", strings.Join(lines, "\n"))
	}
	for _, c := range e.ConfigFiles {
		details(&b, "CRIU config file `"+strings.ReplaceAll(c.Path, "`", "'")+"`:", c.Content)
	}
	if len(s.Images) > 0 {
		fmt.Fprintf(&b, "Anonymized images in the bundle: %d files (level %s); dropped: %d (see MANIFEST.json).\n", len(s.Images), s.Level, len(s.Dropped))
	}
	return b.String()
}

func mdCell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
