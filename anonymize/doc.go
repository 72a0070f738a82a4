// Package anonymize makes CRIU image dirs and logs safe to attach to public bug reports: at five
// levels (inventory, content, identity, structure, paranoid) it replaces payloads, memory, paths,
// names, hosts, IPs, MACs and ids with keyed same-length pseudonyms, drops what it cannot parse
// (default deny), writes MANIFEST.json, verifies the output (decode, cross references, leak scan)
// and only then renames it into place.
package anonymize
