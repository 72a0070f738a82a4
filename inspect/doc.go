// Package inspect answers "what is in this checkpoint?" for container checkpoint archives and plain
// CRIU images directories alike (opened through package ckpt): the container (engine, image, id,
// sizes), the process tree with command lines and environments read from dumped memory, files,
// sockets, mounts, CRIU statistics, per-process memory maps, memory search with filters, a deep diff of
// two checkpoints, and a self-contained HTML report. JSON field names follow checkpointctl's.
package inspect
