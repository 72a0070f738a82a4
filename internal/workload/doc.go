// Package workload holds the processes that criukit's live tests (and `criukit workload`) start and
// dump with CRIU: each registered workload sets up kernel objects (files, sockets, namespaces, ...),
// calls Ctx.Ready, then sleeps until killed. They run as separate processes through the entry
// binaries internal/workload/criukit-workload and the hidden `criukit workload` command.
package workload
