// Package harness is the test-only helper for criukit's live tests: it builds and starts the
// workloads of internal/workload as real processes, dumps them with the real CRIU, restores them,
// and cleans up (processes by pid/pgid, netns, temp dirs) even when a test fails. Corpus gives every
// test process one cached dump of each corpus workload. Import it only from _test.go files.
package harness
