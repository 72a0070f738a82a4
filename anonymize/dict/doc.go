// Package dict is the typed dictionary of sensitive values found in a CRIU image dir and their
// same-length replacements, with a fast multi-pattern matcher used to replace them in place
// (memory pages, logs) and to scan outputs for leaks (raw bytes, streamed in chunks).
package dict
