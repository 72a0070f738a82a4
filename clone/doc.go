// Package clone restores several copies of one dumped process tree side by side: it lints the
// images for conflicts between copies (path-bound unix sockets, outside TCP peers, file locks,
// ghost files, ...), prepares one image dir per copy (pages-*.img hard-linked, addresses moved
// to the copy's share of an IP pool with netrw), and restores each copy with criu in its own
// network namespace and a new pid+mount namespace, then checks that it runs.
package clone
