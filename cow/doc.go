// Package cow stores the copy-on-write memory of a dumped process tree once: it rewrites a stock
// CRIU images directory so that pages equal to another process' pages become PE_PARENT entries
// resolved through a synthetic, self-contained `parent` chain (cow-1, cow-2, ...) that stock
// `criu restore` follows (research cow.md §4.1). It also materializes such a directory back to the
// stock layout, reports who shares what, and guards restores against options that corrupt it.
package cow
