// Package doctor explains, before a dump, what will fail and why: kernel features (soft-dirty,
// userfaultfd, PAGEMAP_SCAN, time namespaces, from /proc, the kernel config and `criu check`),
// the CRIU version against the kernel, and for a process tree every object CRIU cannot dump
// (KVM, userfaultfd, io_uring, perf, VFIO, other anon inodes and devices, external mounts), ghost
// files over the limit and TCP connections without --tcp-established. Finding ids match knownissues rules.
package doctor
