// Command mutate is the mutation harness of soccr: it applies each mutant of the catalogue
// alone (a source rewrite passed to `go test -overlay`, so the module is never modified),
// builds the tcplab test binary, runs the mutant's cases (stopping at the first case that
// fails on a behavioural oracle), and prints the score, the oracle that caught each mutant and
// the survivors. Only behavioural oracles kill (wire oracles, or the application's view: bytes,
// EOF, state, a stall): a failure made only of re-dump differences (the re-dump uses the same,
// possibly mutated, soccr.Save), of checks on the dumped data, or of a refusal of Save/Restore
// does not count, except a refusal for a mutant whose catalogue entry argues (Refusal) that it
// is the bug's whole, user-visible effect. Each line says which case and oracle killed the
// mutant and of which KIND (wire, app, refusal (argued)).
//
//	go run ./bench/mutate                 # the whole catalogue
//	go run ./bench/mutate --fast          # the CI subset
//	go run ./bench/mutate --full          # survivors re-run against the whole suite
//	go run ./bench/mutate --filter '^rst-' --json
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/criukit/criukit/tcplab"
)

// Outcome of one mutant.
type Outcome struct {
	ID         string        `json:"id"`
	Area       string        `json:"area"`
	What       string        `json:"what"`
	Status     string        `json:"status"` // killed, survived, refusal-only, snapshot-only, redump-only, equivalent, stale, stillborn, error
	CaughtBy   string        `json:"caught_by,omitempty"`
	Oracle     string        `json:"oracle,omitempty"`
	Kind       string        `json:"kind,omitempty"` // wire, app (behavioural) or "refusal (argued)"
	Detail     string        `json:"detail,omitempty"`
	Runs       int           `json:"case_runs"`
	Duration   time.Duration `json:"duration_ns"`
	Equivalent string        `json:"equivalent,omitempty"`
}

// Config of a harness run.
type Config struct {
	Root    string // module root
	Work    string // temp dir
	Full    bool
	Timeout time.Duration
	Log     func(string, ...any)
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the criukit module: run from the repository")
	}
	return filepath.Dir(gomod), nil
}

// build compiles the tcplab test binary with an optional mutant applied through -overlay.
func (c *Config) build(m *Mutant, bin string) (string, error) {
	args := []string{"test", "-c", "-o", bin}
	if m != nil {
		path := filepath.Join(c.Root, m.File)
		src, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		if n := countOf(string(src), m.Old); n != 1 {
			return "stale", fmt.Errorf("%s: the fragment occurs %d times in %s (want 1): update the catalogue", m.ID, n, m.File)
		}
		mut := filepath.Join(c.Work, m.ID+"-"+filepath.Base(m.File))
		if err := os.WriteFile(mut, []byte(strings.Replace(string(src), m.Old, m.New, 1)), 0o644); err != nil {
			return "", err
		}
		ov, _ := json.Marshal(map[string]map[string]string{"Replace": {path: mut}})
		ovf := filepath.Join(c.Work, m.ID+"-overlay.json")
		if err := os.WriteFile(ovf, ov, 0o644); err != nil {
			return "", err
		}
		args = append(args, "-overlay", ovf)
	}
	cmd := exec.Command("go", append(args, "./tcplab/")...)
	cmd.Dir = c.Root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "stillborn", fmt.Errorf("build: %v: %s", err, strings.Join(strings.Fields(string(out)), " "))
	}
	return "", nil
}

// run executes the test binary on the cases matching filter and returns the results.
func (c *Config) run(bin, filter string, failfast bool) ([]tcplab.Result, error) {
	res := bin + ".results"
	os.Remove(res)
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.run", "^TestCases$", "-test.count=1")
	cmd.Dir = filepath.Join(c.Root, "tcplab")
	cmd.Env = append(os.Environ(), "TCPLAB_FILTER="+filter, "TCPLAB_RESULTS="+res)
	if failfast {
		cmd.Env = append(cmd.Env, "TCPLAB_FAILFAST=1")
	}
	cmd.WaitDelay = 5 * time.Second
	_ = cmd.Run() // a failing case makes the test fail: the results file says which
	if ctx.Err() != nil {
		return readResults(res), fmt.Errorf("timeout after %v", c.Timeout)
	}
	return readResults(res), nil
}

func countOf(s, frag string) int { return strings.Count(s, frag) }

func readResults(path string) []tcplab.Result {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []tcplab.Result
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var r tcplab.Result
		if json.Unmarshal(sc.Bytes(), &r) == nil {
			out = append(out, r)
		}
	}
	return out
}

// classify judges the results of one mutant: killed when a case failed on a behavioural
// oracle (a wire oracle preferred over the application's view, which names the symptom
// rather than the mechanism); a failure made only of refusals counts as a kill only for a
// mutant whose catalogue entry argues that the refusal is what a user sees (Refusal), and
// failures made only of re-dump differences or checks on the dumped data never count.
func classify(o *Outcome, m *Mutant, rs []tcplab.Result) {
	o.Runs = len(rs)
	var refused, snapshot, redump *tcplab.Result
	var refusedErr, snapshotErr string
	for i := range rs {
		r := &rs[i]
		if r.Status != "fail" {
			continue
		}
		pick := ""
		for _, e := range r.Errors {
			switch k := tcplab.Oracle(e); {
			case k == "redump":
				if redump == nil {
					redump = r
				}
			case k == "refused":
				if refused == nil {
					refused, refusedErr = r, e
				}
			case k == "snapshot":
				if snapshot == nil {
					snapshot, snapshotErr = r, e
				}
			case pick == "" || (tcplab.Oracle(pick) == "app" && k != "app"):
				pick = e
			}
		}
		if pick != "" {
			o.Status, o.CaughtBy, o.Oracle = "killed", r.Name, tcplab.Oracle(pick)
			o.Kind = "wire"
			if o.Oracle == "app" {
				o.Kind = "app"
			}
			o.Detail = firstLine(pick)
			return
		}
	}
	switch {
	case refused != nil && m != nil && m.Refusal != "":
		o.Status, o.CaughtBy, o.Oracle, o.Kind, o.Detail = "killed", refused.Name, "refused", "refusal (argued)", firstLine(refusedErr)
	case refused != nil:
		o.Status, o.CaughtBy, o.Oracle, o.Detail = "refusal-only", refused.Name, "refused", firstLine(refusedErr)
	case snapshot != nil:
		o.Status, o.CaughtBy, o.Oracle, o.Detail = "snapshot-only", snapshot.Name, "snapshot", firstLine(snapshotErr)
	case redump != nil:
		o.Status, o.CaughtBy, o.Oracle = "redump-only", redump.Name, "redump"
	default:
		o.Status = "survived"
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}

// Mutate runs the harness on ms.
func (c *Config) Mutate(ms []Mutant, progress func(Outcome)) []Outcome {
	var out []Outcome
	for i := range ms {
		m := &ms[i]
		t0 := time.Now()
		o := Outcome{ID: m.ID, Area: m.Area, What: m.What, Equivalent: m.Equivalent}
		bin := filepath.Join(c.Work, m.ID+".test")
		if st, err := c.build(m, bin); err != nil {
			o.Status, o.Detail = st, firstLine(err.Error())
			if st == "" {
				o.Status = "error"
			}
		} else {
			rs, err := c.run(bin, m.Cases, true)
			classify(&o, m, rs)
			if o.Status != "killed" && c.Full {
				rs2, err2 := c.run(bin, "", true)
				classify(&o, m, append(rs, rs2...))
				err = errors.Join(err, err2)
			}
			if err != nil && o.Status != "killed" {
				o.Detail = strings.TrimSpace(o.Detail + " " + err.Error())
			}
			if o.Status != "killed" && m.Equivalent != "" {
				o.Status = "equivalent"
			}
			os.Remove(bin)
		}
		o.Duration = time.Since(t0)
		out = append(out, o)
		if progress != nil {
			progress(o)
		}
	}
	return out
}

// Score is killed / (all - equivalent - stale - stillborn), where killed means killed by a
// behavioural oracle (wire or application) or, for a mutant whose only possible effect is a
// refusal, by that refusal as argued in the catalogue (refusals = those).
func Score(os []Outcome) (killed, counted, refusals int) {
	for _, o := range os {
		switch o.Status {
		case "equivalent", "stale", "stillborn":
			continue
		case "killed":
			killed++
			if o.Oracle == "refused" {
				refusals++
			}
		}
		counted++
	}
	return
}

func main() { os.Exit(mainCode()) }

// mainCode runs the command and returns its exit status (so that deferred clean-ups run).
func mainCode() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "mutate:", err)
		return 2
	}
	filter := flag.String("filter", "", "regexp of mutant IDs to run")
	fast := flag.Bool("fast", false, "only the CI subset (Fast mutants)")
	full := flag.Bool("full", false, "re-run survivors against the whole suite")
	asJSON := flag.Bool("json", false, "print the outcomes as JSON")
	baseline := flag.Bool("baseline", true, "first check that the selected cases pass without a mutant")
	timeout := flag.Duration("timeout", 6*time.Minute, "per run of the test binary")
	list := flag.Bool("list", false, "list the catalogue and exit")
	worktree := flag.Bool("worktree", false, "mutate the working tree in place (default: a copy of the committed HEAD, so edits made meanwhile cannot leak into the builds)")
	flag.Parse()
	if *list {
		w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "ID\tAREA\tFAST\tCASES\tWHAT")
		for _, m := range Catalogue {
			fmt.Fprintf(w, "%s\t%s\t%v\t%s\t%s\n", m.ID, m.Area, m.Fast, m.Cases, m.What)
		}
		w.Flush()
		return 0
	}
	if os.Geteuid() != 0 {
		return fail(errors.New("mutate needs root (tcplab: network namespaces, TUN, TCP_REPAIR)"))
	}
	root, err := moduleRoot()
	if err != nil {
		return fail(err)
	}
	work, err := os.MkdirTemp("", "criukit-mutate-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(work)
	if !*worktree {
		src := filepath.Join(work, "src")
		if err := exportHead(root, src); err != nil {
			return fail(err)
		}
		root = src
	}
	c := &Config{Root: root, Work: work, Full: *full, Timeout: *timeout}
	ms := Select(*filter, *fast)
	if len(ms) == 0 {
		return fail(errors.New("no mutant selected"))
	}
	t0 := time.Now()
	if *baseline {
		bin := filepath.Join(work, "baseline.test")
		if _, err := c.build(nil, bin); err != nil {
			return fail(err)
		}
		rs, err := c.run(bin, Union(ms), false)
		if err != nil {
			return fail(fmt.Errorf("baseline: %w", err))
		}
		for _, r := range rs {
			if r.Status == "fail" {
				return fail(fmt.Errorf("baseline: %s fails without any mutant: %s", r.Name, firstLine(strings.Join(r.Errors, "; "))))
			}
		}
		fmt.Fprintf(os.Stderr, "baseline: %d case runs pass in %v\n", len(rs), time.Since(t0).Round(time.Millisecond))
	}
	outs := c.Mutate(ms, func(o Outcome) {
		fmt.Fprintf(os.Stderr, "%-22s %-13s %-6.1fs %s %s %s\n", o.ID, o.Status, o.Duration.Seconds(), o.CaughtBy, o.Oracle, o.Kind)
	})
	k, n, ref := Score(outs)
	if *asJSON {
		json.NewEncoder(os.Stdout).Encode(map[string]any{"outcomes": outs, "killed": k, "counted": n, "argued_refusals": ref, "total_ns": time.Since(t0)})
	} else {
		Print(os.Stdout, outs)
		fmt.Printf("\nscore: %d/%d non-equivalent mutants killed by a behavioural oracle (%.0f%%): %d on the wire or in the application, %d by a refusal argued to be the user-visible behaviour; %d mutants in %v\n",
			k, n, 100*float64(k)/float64(max(n, 1)), k-ref, ref, len(outs), time.Since(t0).Round(time.Second))
	}
	for _, o := range outs {
		if o.Status != "killed" && o.Status != "equivalent" {
			return 1
		}
	}
	return 0
}

// exportHead copies the committed tree of the repository at root into dir (git archive).
func exportHead(root, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cmd := exec.Command("sh", "-c", `git -C "$1" archive --format=tar HEAD | tar -x -C "$2"`, "sh", root, dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("export HEAD of %s: %v: %s", root, err, out)
	}
	return nil
}

// Select returns the mutants matching filter (and Fast when fast).
func Select(filter string, fast bool) []Mutant {
	var re *regexp.Regexp
	if filter != "" {
		re = regexp.MustCompile(filter)
	}
	var out []Mutant
	for _, m := range Catalogue {
		if (fast && !m.Fast) || (re != nil && !re.MatchString(m.ID)) {
			continue
		}
		out = append(out, m)
	}
	return out
}

// Union is a regexp matching every case any of ms runs.
func Union(ms []Mutant) string {
	var parts []string
	for _, m := range ms {
		parts = append(parts, "(?:"+m.Cases+")")
	}
	return strings.Join(parts, "|")
}

// Print writes the mutation table.
func Print(f *os.File, outs []Outcome) {
	w := tabwriter.NewWriter(f, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "MUTANT\tAREA\tSTATUS\tCAUGHT BY\tORACLE\tKIND\tRUNS\tTIME\tDETAIL")
	for _, o := range outs {
		d := o.Detail
		if o.Status == "equivalent" {
			d = "equivalent: " + o.Equivalent
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%.1fs\t%s\n", o.ID, o.Area, o.Status, o.CaughtBy, o.Oracle, o.Kind, o.Runs, o.Duration.Seconds(), d)
	}
	w.Flush()
}
