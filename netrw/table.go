package netrw

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteTable prints the peer report for people: one line per inet socket, then file changes,
// data loss, warnings and errors.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INO\tPROTO\tSTATE\tLOCAL\tREMOTE\tPEER\tACTION\tNEW LOCAL\tNEW REMOTE")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, s := range r.Sockets {
		peer := s.Peer
		if s.PeerIno != 0 {
			peer = fmt.Sprintf("%s(%#x)", s.Peer, s.PeerIno)
		}
		fmt.Fprintf(tw, "%#x\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Ino, s.Proto, s.State, s.Local, dash(s.Remote), dash(peer),
			s.Action, dash(s.NewLocal), dash(s.NewRemote))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range r.Sockets {
		if s.Note != "" && s.Action != ActUnchanged {
			fmt.Fprintf(w, "  %#x: %s\n", s.Ino, s.Note)
		}
	}
	if len(r.Files) > 0 {
		fmt.Fprintln(w, "\nfiles:")
		for _, f := range r.Files {
			if f.Removed {
				fmt.Fprintf(w, "  %s: removed\n", f.Name)
				continue
			}
			fmt.Fprintf(w, "  %s: %d change(s)\n", f.Name, f.Changes)
			for _, d := range f.Details {
				fmt.Fprintf(w, "    %s\n", d)
			}
		}
	}
	if len(r.DataLoss) > 0 {
		fmt.Fprintln(w, "\ndata loss (closed sockets whose queues held data):")
		for _, s := range r.DataLoss {
			fmt.Fprintf(w, "  %#x %s -> %s: %d bytes received but unread, %d bytes in the send queue (%d never sent)\n",
				s.Ino, s.Local, s.Remote, s.Queue.In, s.Queue.Out, s.Queue.Unsent)
		}
	}
	for _, m := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", m)
	}
	for _, m := range r.Errors {
		fmt.Fprintf(w, "error: %s\n", m)
	}
	switch {
	case r.Written:
		fmt.Fprintf(w, "\nwritten: %s\n", r.Output)
	case len(r.Errors) > 0:
		fmt.Fprintln(w, "\nnothing written")
	default:
		fmt.Fprintln(w, "\ndry run: nothing written")
	}
	return nil
}
