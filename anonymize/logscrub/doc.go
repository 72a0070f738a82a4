// Package logscrub rewrites CRIU logs (-v4 dump/restore logs) with the same pseudonyms as the
// images: paths in all their spellings, UNIX and memfd names, IPs, MACs, host names, comm,
// mount sources, interface names in sysctl paths, plus every dictionary value. Constant text,
// timestamps, pids and hex/decimal ids are kept so the log still lines up with the images.
package logscrub
