package report

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// The environment text that may hold local paths goes through the anonymizer's log scrubber as
// sections separated by numbered marker lines (digits and dashes only: nothing a scrubber maps).

var markerRe = regexp.MustCompile(`(?m)^#####-(\d+)-#####$`)

func marker(i int) string { return fmt.Sprintf("#####-%d-#####", i) }

// envParts lists the scrubbable fields of e in a fixed order.
func envParts(e *Env) []*string {
	parts := []*string{&e.CriuVersion, &e.CheckAll}
	for i := range e.Commands {
		parts = append(parts, &e.Commands[i])
	}
	for i := range e.ConfigFiles {
		parts = append(parts, &e.ConfigFiles[i].Path, &e.ConfigFiles[i].Content)
	}
	return parts
}

func envText(e *Env) string {
	var b strings.Builder
	for i, p := range envParts(e) {
		b.WriteString(marker(i))
		b.WriteByte('\n')
		b.WriteString(strings.TrimRight(*p, "\n"))
		b.WriteByte('\n')
	}
	return b.String()
}

// parseEnvText returns a copy of e with the scrubbable fields taken from the scrubbed text.
func parseEnvText(e *Env, text string) (*Env, error) {
	c := *e
	c.CriuPath = ""
	c.Commands = append([]string(nil), e.Commands...)
	c.ConfigFiles = append([]ConfigFile(nil), e.ConfigFiles...)
	parts := envParts(&c)
	locs := markerRe.FindAllStringSubmatchIndex(text, -1)
	if len(locs) != len(parts) {
		return nil, fmt.Errorf("anonymized environment has %d sections, want %d", len(locs), len(parts))
	}
	for k, l := range locs {
		i, _ := strconv.Atoi(text[l[2]:l[3]])
		if i != k {
			return nil, fmt.Errorf("anonymized environment: section %d out of order", i)
		}
		end := len(text)
		if k+1 < len(locs) {
			end = locs[k+1][0]
		}
		start := l[1]
		if start < len(text) && text[start] == '\n' {
			start++
		}
		*parts[k] = strings.TrimRight(text[start:end], "\n")
	}
	return &c, nil
}
