// Package image reads and writes every CRIU image file byte-exactly: magics and heads, size-prefixed
// protobuf entries (go-criu/v8 generated messages, unknown fields kept), per-entry extras (pipe data,
// socket queues, TCP queues, BPF maps, SysV IPC, ghost files), pagemaps and raw files classified by name.
// Reader streams entries and extras without loading them; Memory answers "bytes of pid P at vaddr V";
// ReadDir lists a dump directory. Encode(Decode(x)) == x for every file CRIU 4.x writes.
package image
