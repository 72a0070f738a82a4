// Package soccr is a Go port of CRIU's libsoccr: it saves a TCP socket's state with TCP_REPAIR
// (queues, sequence numbers, options, windows, timestamp) and restores it into a fresh socket in
// exactly libsoccr's order, for ESTABLISHED, SYN_SENT and every half-closed state (the peer's FIN
// is re-created through an Injector). Snapshots convert both ways to CRIU's tcp-stream and
// inet_sk_entry images, and a Faults hook seeds known restore bugs for testing.
package soccr
