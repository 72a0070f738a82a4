package knownissues

import (
	"bufio"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"

	"github.com/criukit/criukit/internal/criurun"
)

//go:embed rules.json
var rulesJSON []byte

// ErrBadRules is returned by Parse for a rules file that cannot be used.
var ErrBadRules = errors.New("bad known-issue rules")

// Rule is one known issue.
type Rule struct {
	ID       string   `json:"id"`
	Title    string   `json:"title"`
	Pattern  string   `json:"pattern"`
	Explain  string   `json:"explain"`
	Fix      string   `json:"fix"`
	Severity string   `json:"severity"`
	Refs     []string `json:"refs"`
	Samples  []string `json:"samples"`
	Source   string   `json:"source"`

	re *regexp.Regexp
}

// Regexp returns the compiled pattern.
func (r *Rule) Regexp() *regexp.Regexp { return r.re }

// Set is an ordered list of rules: the first rule whose pattern matches a line wins.
type Set struct {
	Version int     `json:"version"`
	Rules   []*Rule `json:"rules"`
}

// Parse reads a rules file (the format of rules.json).
func Parse(data []byte) (*Set, error) {
	var s Set
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRules, err)
	}
	seen := map[string]bool{}
	for i, r := range s.Rules {
		if r == nil || r.ID == "" || r.Pattern == "" {
			return nil, fmt.Errorf("%w: rule %d has no id or pattern", ErrBadRules, i)
		}
		if seen[r.ID] {
			return nil, fmt.Errorf("%w: duplicate rule id %q", ErrBadRules, r.ID)
		}
		seen[r.ID] = true
		re, err := regexp.Compile(r.Pattern)
		if err != nil {
			return nil, fmt.Errorf("%w: rule %q: %v", ErrBadRules, r.ID, err)
		}
		r.re = re
	}
	return &s, nil
}

var builtin = sync.OnceValues(func() (*Set, error) { return Parse(rulesJSON) })

// Default returns the embedded rule set. It panics only if the embedded file is broken, which the
// package's tests rule out.
func Default() *Set {
	s, err := builtin()
	if err != nil {
		panic(err)
	}
	return s
}

// Rule returns the rule with this id, or nil.
func (s *Set) Rule(id string) *Rule {
	for _, r := range s.Rules {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// IsErrorLine reports whether a log line is a CRIU error that matters ("Error (" or a BUG
// report), not the harmless RLIMIT_NOFILE line: criurun.IsErrorLine.
func IsErrorLine(line string) bool { return criurun.IsErrorLine(line) }

// MatchLine returns the first rule matching an error line, or nil (also for non-error lines).
func (s *Set) MatchLine(line string) *Rule {
	if !IsErrorLine(line) {
		return nil
	}
	for _, r := range s.Rules {
		if r.re.MatchString(line) {
			return r
		}
	}
	return nil
}

// Match is a rule found in a log.
type Match struct {
	Rule    *Rule             `json:"-"`
	ID      string            `json:"id"`
	Title   string            `json:"title"`
	File    string            `json:"file,omitempty"`
	LineNo  int               `json:"line"` // first occurrence, 1-based
	Line    string            `json:"text"`
	Count   int               `json:"count"`
	Fields  map[string]string `json:"fields,omitempty"` // named groups of the pattern (path, size, pid, fd ...)
	Explain string            `json:"explain"`
	Fix     string            `json:"fix"`
	Refs    []string          `json:"refs,omitempty"`
}

// Result is what Scan found in one log.
type Result struct {
	Matches   []*Match `json:"matches"`
	Unmatched []string `json:"unmatched_errors,omitempty"` // error lines no rule explains (first 20)
	Errors    int      `json:"error_lines"`
}

// MaxLine is the longest log line Scan reads; longer lines are cut.
const MaxLine = 1 << 20

// Scan reads a CRIU log (or criu's output) and returns the known issues in order of first
// appearance, one Match per rule.
func (s *Set) Scan(r io.Reader, file string) (*Result, error) {
	res := &Result{}
	by := map[string]*Match{}
	br := bufio.NewReaderSize(r, 64<<10)
	for n := 1; ; n++ {
		line, err := readLine(br)
		if line != "" && IsErrorLine(line) {
			res.Errors++
			if rule := s.MatchLine(line); rule != nil {
				if m := by[rule.ID]; m != nil {
					m.Count++
				} else {
					m = &Match{Rule: rule, ID: rule.ID, Title: rule.Title, File: file, LineNo: n, Line: strings.TrimSpace(line), Count: 1,
						Fields: fields(rule.re, line), Explain: rule.Explain, Fix: rule.Fix, Refs: rule.Refs}
					by[rule.ID] = m
					res.Matches = append(res.Matches, m)
				}
			} else if len(res.Unmatched) < 20 {
				res.Unmatched = append(res.Unmatched, strings.TrimSpace(line))
			}
		}
		if err == io.EOF {
			return res, nil
		}
		if err != nil {
			return res, fmt.Errorf("read %s line %d: %w", file, n, err)
		}
	}
}

// ScanFile scans one log file.
func (s *Set) ScanFile(path string) (*Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return s.Scan(f, path)
}

// readLine returns one line without its newline, cut at MaxLine bytes.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(b) < MaxLine {
			room := MaxLine - len(b)
			if len(frag) > room {
				frag = frag[:room]
			}
			b = append(b, frag...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return strings.TrimRight(string(b), "\r\n"), err
	}
}

func fields(re *regexp.Regexp, line string) map[string]string {
	m := re.FindStringSubmatch(line)
	if m == nil {
		return nil
	}
	var out map[string]string
	for i, name := range re.SubexpNames() {
		if name != "" && i < len(m) && m[i] != "" {
			if out == nil {
				out = map[string]string{}
			}
			out[name] = m[i]
		}
	}
	return out
}
