// Package outfile writes every output file of criukit the same way: a new or regular target is
// written to a temporary file in the same directory, fsynced and renamed over it (mode of the file it
// replaces, else 0644), so a crash or Ctrl-C never leaves half a file. Targets that are not regular
// files are never renamed over: devices and FIFOs (and "-", stdout) are written in place; directories,
// symlinks to directories and sockets are refused with an error that says what the path is.
package outfile
