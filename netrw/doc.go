// Package netrw edits the network state of a CRIU image directory before restore: it maps socket
// addresses and ports (files.img inet sockets, the ifaddr/route/rule netlink dumps and the
// iptables/nftables text of a dumped netns) and closes chosen TCP connections so CRIU restores
// them closed (read EOF, write EPIPE) without --tcp-close. It checks the result first (pairs,
// addresses, 4-tuples), reports every connection's fate, and writes a new directory.
package netrw
