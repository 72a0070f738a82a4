package anonymize

import (
	"os"
	"path/filepath"
	"sort"
)

// Report is the result of the inventory level: what would be replaced, by category, with samples.
// It holds original values: keep it local, never attach it to a public report.
type Report struct {
	Level    string              `json:"level"`
	Counts   map[string]int      `json:"counts"`
	Samples  map[string][]string `json:"samples"`
	Files    []FileReport        `json:"files"`
	Dropped  []Dropped           `json:"dropped"`
	Verified bool                `json:"identity_output_verified"`
	Problem  string              `json:"problem,omitempty"`
}

// InventoryReport reports what the identity level would replace in the image dir, without writing
// anything next to it (a scratch output in the temp dir is made, verified and removed).
func InventoryReport(in string, o Options) (*Report, error) {
	scratch, err := os.MkdirTemp("", "criukit-inventory-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	if st, err := os.Stat(in); err == nil && !st.IsDir() {
		// container checkpoint archive: inventory of its checkpoint/ dir
		if _, err := extractArchive(in, filepath.Join(scratch, "in")); err != nil {
			return nil, err
		}
		in = filepath.Join(scratch, "in", "checkpoint")
	}
	o.Level = Identity
	o.MapOut = ""
	out := filepath.Join(scratch, "out")
	tmp := out + ".partial"
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, err
	}
	r, err := newRun(in, tmp, o)
	if err != nil {
		return nil, err
	}
	rep := &Report{Level: Inventory.String(), Samples: map[string][]string{}}
	if err := r.process(); err != nil {
		return nil, err
	}
	if err := r.verify(); err != nil {
		rep.Problem = err.Error()
	} else {
		rep.Verified = true
	}
	if err := r.finish(); err != nil {
		return nil, err
	}
	rep.Counts = r.man.Counts
	rep.Files, rep.Dropped = r.man.Files, r.man.Dropped
	for _, p := range r.m.Pairs() {
		c := string(p.Category)
		if len(rep.Samples[c]) < 5 {
			rep.Samples[c] = append(rep.Samples[c], p.From)
		}
	}
	for _, s := range rep.Samples {
		sort.Strings(s)
	}
	return rep, nil
}
