package tcplab

import (
	"regexp"
	"time"
)

// Flaky describes a case whose result or trace hash differed between repeated runs.
type Flaky struct {
	Name     string   `json:"name"`
	Statuses []string `json:"statuses"`
	Hashes   []string `json:"hashes"`
}

// Report is the outcome of RunAll.
type Report struct {
	Results []Result      `json:"results"` // last run of each case
	Flaky   []Flaky       `json:"flaky,omitempty"`
	Runs    int           `json:"runs"`
	Total   time.Duration `json:"total_ns"`
}

// RunAll runs the selected cases repeat times (sequentially) and reports differences.
func RunAll(filter *regexp.Regexp, repeat int, ro RunOptions, progress func(Result)) Report {
	if repeat < 1 {
		repeat = 1
	}
	t0 := time.Now()
	sel := Select(Cases(), filter)
	statuses := map[string][]string{}
	hashes := map[string][]string{}
	var last []Result
	for i := 0; i < repeat; i++ {
		last = last[:0]
		for _, r := range sel {
			res := RunCase(r.Case, r.Family, ro)
			statuses[res.Name] = append(statuses[res.Name], res.Status)
			hashes[res.Name] = append(hashes[res.Name], res.Hash)
			last = append(last, res)
			if progress != nil {
				progress(res)
			}
		}
	}
	rep := Report{Results: last, Runs: repeat, Total: time.Since(t0)}
	for _, r := range last {
		st, hs := statuses[r.Name], hashes[r.Name]
		if !allSame(st) || (!r.TraceVaries && !allSame(hs)) {
			rep.Flaky = append(rep.Flaky, Flaky{Name: r.Name, Statuses: st, Hashes: hs})
		}
	}
	return rep
}

func allSame(s []string) bool {
	for _, x := range s {
		if x != s[0] {
			return false
		}
	}
	return true
}

// IsFlaky reports whether name is in the report's flaky list.
func (r *Report) IsFlaky(name string) bool {
	for _, f := range r.Flaky {
		if f.Name == name {
			return true
		}
	}
	return false
}
