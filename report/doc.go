// Package report builds a ready-to-file CRIU bug report: it collects what CRIU's issue template
// asks for (criu --version, criu check --all, kernel, arch, distro, kernel config, container
// runtimes, command lines and config files), runs the known-issue matcher over the logs,
// anonymizes logs, images and environment text with one mapping (package anonymize) and writes a
// deterministic tar.gz bundle with ISSUE.md, summary.json and the manifest; Submit files it on GitHub.
package report
