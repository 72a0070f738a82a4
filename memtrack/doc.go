// Package memtrack reports which pages a live process writes, without soft-dirty: it makes the
// target call userfaultfd() once by ptrace syscall injection, takes a copy of that uffd with
// pidfd_getfd, registers the target's writable private anonymous VMAs in async write-protect mode
// and, every interval, reads and re-protects the written pages with the PAGEMAP_SCAN ioctl.
// Close unregisters everything; the target never keeps a uffd, so CRIU can dump it afterwards.
package memtrack
