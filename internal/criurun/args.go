package criurun

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// HasArg reports whether args hold the option name as "name", "name=value" or, for a short
// option (-x), "-xVALUE".
func HasArg(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") || len(name) == 2 && name[0] == '-' && name[1] != '-' && strings.HasPrefix(a, name) {
			return true
		}
	}
	return false
}

// CutArg returns args without every occurrence of the boolean option name, and whether it was there.
func CutArg(args []string, name string) ([]string, bool) {
	out, found := make([]string, 0, len(args)), false
	for _, a := range args {
		if a == name {
			found = true
			continue
		}
		out = append(out, a)
	}
	return out, found
}

// Parsed is a criu command line as criukit commands that wrap criu read it.
type Parsed struct {
	Pid       int               // -t/--tree
	ImagesDir string            // -D/--images-dir
	LogFile   string            // -o/--log-file
	Help      bool              // -h/--help
	Own       map[string]string // the caller's own options found (name -> value; "" for booleans)
	Pass      []string          // everything else, passed through to criu in order
}

// ParseArgs splits a criu command line (dump or restore options, as users type them for criu) into
// what criukit reads itself and what goes through to criu. own names the caller's extra options
// (true: takes a value). Values may be given as "--opt value", "--opt=value" or, for short
// options, "-tPID". -v/--verbosity is dropped: criukit always logs with -v4. The one parser for
// every criukit command that wraps criu (dump, cow dump).
func ParseArgs(args []string, own map[string]bool) (*Parsed, error) {
	p := &Parsed{Own: map[string]string{}}
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := a, "", false
		switch {
		case strings.HasPrefix(a, "--"):
			name, val, hasVal = strings.Cut(a, "=")
		case len(a) > 2 && a[0] == '-' && (a[1] == 't' || a[1] == 'D' || a[1] == 'o'):
			name, val, hasVal = a[:2], a[2:], true
		}
		value := func() (string, error) {
			if hasVal {
				return val, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s needs a value", name)
			}
			i++
			return args[i], nil
		}
		var err error
		switch name {
		case "-h", "--help":
			p.Help = true
		case "-t", "--tree":
			var v string
			if v, err = value(); err == nil {
				if p.Pid, err = strconv.Atoi(v); err != nil || p.Pid <= 0 {
					err = fmt.Errorf("%s: bad pid %q", name, v)
				}
			}
		case "-D", "--images-dir":
			p.ImagesDir, err = value()
		case "-o", "--log-file":
			p.LogFile, err = value()
		case "--verbosity":
			if !hasVal && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				i++
			}
		default:
			if strings.HasPrefix(a, "-v") && strings.Trim(a[1:], "v0123456789") == "" {
				continue // -v, -vvv, -v4: criukit always logs with -v4
			}
			takes, ok := own[name]
			switch {
			case !ok:
				p.Pass = append(p.Pass, a)
			case takes:
				p.Own[name], err = value()
			case hasVal:
				err = fmt.Errorf("%s takes no value", name)
			default:
				p.Own[name] = ""
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Command returns the criu command line Dump/Restore would run for op with extra args (after
// Opts.Args), without starting it: for callers that need to add files or wire its output.
func (o Opts) Command(ctx context.Context, op string, extra ...string) (*exec.Cmd, error) {
	o.Args = append(append([]string(nil), o.Args...), extra...)
	return o.command(ctx, op, nil)
}
