// Package knownissues maps CRIU log errors to known causes and fixes. The rules are data
// (rules.json, embedded): a regexp per rule, an explanation, a fix, references, and sample log
// lines taken from real failing CRIU runs made by the tests. Scan reads a log and returns the
// rules it matches, ignoring the harmless RLIMIT_NOFILE error line.
package knownissues
