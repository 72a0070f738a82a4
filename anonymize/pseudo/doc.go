// Package pseudo makes keyed, deterministic, injective pseudonyms for the values criukit
// anonymize replaces: names, path components, host labels, IPv4/IPv6 (prefix-preserving,
// Crypto-PAn style), MACs (I/G and U/L bits kept, EUI-64 recomputed) and uids/gids.
// Tokens keep the byte length of what they replace, so the same token can be used in protobuf
// fields, logs and in-place memory patches. The forward map is exported only on request.
package pseudo
