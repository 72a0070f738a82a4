// Package tcplab runs two real kernel TCP sockets in two fresh network namespaces joined by TUN
// devices, with every packet passing through a switch in this process that can hold, drop,
// reorder, duplicate, modify or inject it, and checkpoints/restores either socket with soccr.
// Cases (the matrix of tcp.md section 5) run in lock-step, give canonical traces hashed per
// case, optional pcaps, and are checked by oracles (streams, RST, window, TS, re-dump, nstat).
package tcplab
