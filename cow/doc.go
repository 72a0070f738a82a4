// Package cow stores a dumped tree's copy-on-write memory once: pages equal to another process'
// become PE_PARENT entries resolved through a self-contained `parent` chain (cow-1, cow-2, ...)
// that stock `criu restore` follows (research cow.md §4.1). It dedups stock dumps or, as criu's
// page server, while dumping (pages of an already received frame are spliced away unread); it
// materializes back to the stock layout, reports who shares what, and guards restores.
package cow
