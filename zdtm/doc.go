// Package zdtm runs CRIU's own test suite (zdtm, built by scripts/zdtm) as criukit's conformance
// suite: Roundtrip puts every image of a dump through JSON and back (byte-exact) for the
// `roundtrip` mode; CheckDir is the codec's corpus check of one dump dir (decode/encode, JSON vs
// crit, ls, info, x, pages against the pagemap); Results/Table read scripts/zdtm's results.tsv
// and print the mode x (pass, fail, skip) table of bench/zdtm.
package zdtm
