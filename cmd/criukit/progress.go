package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"
)

// EnvProgress forces progress lines on stderr even when it is not a terminal (CRIUKIT_PROGRESS=1).
const EnvProgress = "CRIUKIT_PROGRESS"

// progress prints one self-overwriting status line on stderr for long operations (cow dedup,
// anonymize, report), at most every 100 ms. It is silent when stderr is not a terminal (unless
// CRIUKIT_PROGRESS=1) and with --json. The one progress style of the CLI.
type progress struct {
	mu   sync.Mutex
	w    io.Writer
	last time.Time
	used bool
}

// newProgress returns nil (a no-op progress) when no line should be shown.
func newProgress(cmd *cobra.Command, asJSON bool) *progress {
	w := cmd.ErrOrStderr()
	on := os.Getenv(EnvProgress) == "1"
	if f, ok := w.(*os.File); ok && !on {
		on = isTerminal(f)
	}
	if !on || asJSON && os.Getenv(EnvProgress) != "1" {
		return nil
	}
	return &progress{w: w}
}

// printf updates the line (throttled unless final is true).
func (p *progress) printf(final bool, format string, args ...any) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !final && time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last, p.used = time.Now(), true
	fmt.Fprintf(p.w, "\r\033[K"+format, args...)
}

// done clears the line.
func (p *progress) done() {
	if p == nil || !p.used {
		return
	}
	p.used = false
	fmt.Fprint(p.w, "\r\033[K")
}
