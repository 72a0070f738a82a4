// Package explore implements crit's `x` explorers over a CRIU images directory: the process tree
// (ps), open files (fds), memory mappings (mems), resident pages per mapping (rss) and sockets (sk).
// Each explorer returns plain data (for --json) and writes crit's text layout; unlike crit it reads
// CRIU >= 4.2 page counts (pagemap nr_pages field 5) and never crashes on odd trees.
package explore
