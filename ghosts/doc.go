// Package ghosts predicts, for a live process tree, every copy of file data CRIU will store beside
// its images (deleted-but-open files checked against --ghost-limit, memfd, tmpfs, SysV shm, pipe and
// socket queues), audits the image sizes of a finished dump, and enforces a total copy budget
// (CRIUKIT_COPY_BUDGET) that CRIU lacks. The ghost rule mirrors CRIU 4.2 criu/files-reg.c: a file
// with st_nlink 0 fails the dump when st_blocks*512 > ghost limit.
package ghosts
