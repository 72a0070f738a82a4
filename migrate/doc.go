// Package migrate moves a running process tree to another host (or network namespace) with
// iterative dumps on kernels without soft-dirty: memtrack (userfaultfd-WP + PAGEMAP_SCAN) finds the
// pages written between rounds, a relay between `criu dump --page-server` and the receiver turns
// the unwritten ones into PE_PARENT entries, and the receiver writes each round as a parent chain
// onto the previous one, which stock `criu restore` follows (see docs/migrate.md).
package migrate
