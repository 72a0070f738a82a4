// Package ckpt opens a checkpoint wherever it lives — a CRIU images directory, an unpacked container
// checkpoint (checkpoint/ + config.dump...), or a container checkpoint archive (tar, tar+gzip,
// tar+zstd as podman, CRI-O and containerd write them) — behind one read-only io/fs.FS. Files of an
// uncompressed tar are served in place (io.SectionReader at their tar offsets, nothing copied);
// compressed archives are decompressed once, streaming, and only checkpoint/ plus the small metadata
// files are spooled to one unlinked temporary file (rootfs-diff.tar and friends are sized, not kept).
package ckpt
