// Package criurun finds a usable CRIU binary (>= 4.2) and runs `criu dump`, `criu restore -d` and
// `criu check` as subprocesses, optionally inside a network namespace (nsenter --net=PATH), always
// with a verbose log file. Failures return *Error, which carries the log's last Error lines (minus
// the harmless RLIMIT_NOFILE one) and the log path.
package criurun
