// Package untar extracts a tar stream into a directory: directories and regular files only, names
// cleaned and kept inside the directory, files created exclusively (never over an existing file).
// Entries of other types go to the caller, which skips or refuses each. Used where a writable copy
// of an archive is needed (anonymize's input, migrate's podman archive); ckpt reads archives in place.
package untar
