// Package critjson converts CRIU images to and from the JSON of CRIU's crit tool: same keys,
// same representation of bytes (base64), enums, addresses, flags, devices and extras, with and
// without --pretty. Unlike crit it is lossless: unknown protobuf fields, non-zero padding and
// fields newer than crit are kept, so Encode(Decode(x)) == x byte for byte (docs/crit-compat.md).
package critjson
