package anonymize

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/criukit/criukit/anonymize/dict"
	"github.com/criukit/criukit/anonymize/logscrub"
	"github.com/criukit/criukit/anonymize/pseudo"
	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/internal/compress"
	"github.com/criukit/criukit/internal/untar"
)

// ErrNotArchive: the input file is not a container checkpoint archive.
var ErrNotArchive = fmt.Errorf("not a container checkpoint archive (tar or tar.gz with checkpoint/)")

// runArchive handles container checkpoint archives as podman (container checkpoint --export),
// CRI-O and the kubelet write them: a tar or tar.gz with the CRIU images under checkpoint/ and
// the runtime's metadata (config.dump, spec.dump, network.status, ...) and rootfs-diff.tar next
// to it. The output is an archive of the same shape and compression.
func runArchive(ctx context.Context, in, out string, o Options) (*Manifest, error) {
	if o.Level == Inventory {
		return nil, fmt.Errorf("anonymize: level inventory writes no images: use InventoryReport()")
	}
	if _, err := os.Lstat(out); err == nil {
		return nil, fmt.Errorf("anonymize: %s: %w (pick a new name; it is never overwritten)", out, ErrOutExists)
	}
	scratch, err := os.MkdirTemp(filepath.Dir(out), ".criukit-archive-")
	if err != nil {
		return nil, fmt.Errorf("anonymize: %w", err)
	}
	defer os.RemoveAll(scratch)
	src, dst := filepath.Join(scratch, "in"), filepath.Join(scratch, "out")
	kind, err := extractArchive(in, src)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(filepath.Join(src, "checkpoint")); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("anonymize: %s: %w", in, ErrNotArchive)
	}
	if err := os.MkdirAll(filepath.Join(dst, "checkpoint"), 0o700); err != nil {
		return nil, err
	}
	r, err := newRun(filepath.Join(src, "checkpoint"), filepath.Join(dst, "checkpoint"), o)
	if err != nil {
		return nil, err
	}
	r.ctx = ctx
	r.archive = true
	r.collectArchiveSchema(src)
	if err := r.scan(); err != nil {
		return r.man, err
	}
	// runtime metadata before the images: its values (names, env, paths) join the dictionary used
	// for memory; the images' public vocabulary is known already (scan)
	meta, err := r.archiveMeta(src, dst)
	if err != nil {
		return r.man, err
	}
	if err := r.write(); err != nil {
		return r.man, err
	}
	if err := r.verify(); err != nil {
		return r.man, err
	}
	leak := func(file, where string, h dict.Hit) {
		r.man.Verification.Leaks = append(r.man.Verification.Leaks, fmt.Sprintf("%s %s: %s value (%d bytes)", file, where, h.Entry.Kind, len(h.Entry.From)))
	}
	for _, m := range meta {
		p := filepath.Join(dst, m)
		if metaKind(filepath.Base(m)) == "json" {
			r.scanJSON(p, m, leak) // decoded: values and user keys (escapes cannot hide a value)
			continue
		}
		if err := r.scanFile(p, m, true, leak); err != nil {
			return r.man, err
		}
		switch {
		case strings.HasSuffix(m, ".tar") || strings.HasSuffix(m, ".tar.gz"):
			if err := r.scanPlainTar(p, m, leak); err != nil {
				return r.man, err
			}
		case strings.HasSuffix(m, ".json") || metaKind(filepath.Base(m)) == "json":
			r.scanJSON(p, m, leak)
		}
	}
	if len(r.man.Verification.Leaks) > 0 {
		sort.Strings(r.man.Verification.Leaks)
		return r.man, fmt.Errorf("%w (nothing was written to the output):\n  %s", ErrLeak, strings.Join(r.man.Verification.Leaks, "\n  "))
	}
	if err := r.finish(); err != nil {
		return r.man, err
	}
	if err := os.Rename(filepath.Join(dst, "checkpoint", "MANIFEST.json"), filepath.Join(dst, "MANIFEST.json")); err != nil {
		return r.man, err
	}
	var sfx [6]byte
	rand.Read(sfx[:])
	tmp := out + ".partial-" + hex.EncodeToString(sfx[:])
	if err := packArchive(dst, tmp, kind); err != nil {
		os.Remove(tmp)
		return r.man, err
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return r.man, err
	}
	return r.man, nil
}

// collectArchiveSchema reads the runtime JSON files before anything is mapped: their keys and
// enum values are the runtime's vocabulary (see collectSchema).
func (r *run) collectArchiveSchema(src string) {
	var files []string
	ents, _ := os.ReadDir(src)
	for _, e := range ents {
		if !e.IsDir() && metaKind(e.Name()) == "json" {
			files = append(files, filepath.Join(src, e.Name()))
		}
	}
	files = append(files, filepath.Join(src, "checkpoint", "descriptors.json"))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			var v any
			if json.Unmarshal(b, &v) == nil {
				r.collectSchema(v, "")
			}
		}
	}
}

// metaKind classifies a runtime file of a checkpoint archive (podman, CRI-O, containerd) by name:
// "json" (spec.dump, config.dump, network.status, deleted.files, bind.mounts, pod.options,
// pod.dump, descriptors.json, status files), "tar" (rootfs-diff.tar, devshm-checkpoint.tar),
// "image" (stats-dump: a CRIU image), "log" (ctr.log, dump.log, restore.log) or "" (unknown:
// dropped, default deny).
func metaKind(name string) string {
	switch {
	case name == "stats-dump" || name == "stats-restore":
		return "image"
	case strings.HasSuffix(name, ".tar") || strings.HasSuffix(name, ".tar.gz"):
		return "tar"
	case strings.HasSuffix(name, ".log"):
		return "log"
	}
	switch name {
	case "spec.dump", "config.dump", "network.status", "deleted.files", "bind.mounts", "pod.options",
		"pod.dump", "descriptors.json", "checkpointed.pod", "status", "status.dump", "container.dump":
		return "json"
	}
	if strings.HasSuffix(name, ".json") {
		return "json"
	}
	return ""
}

// scanJSON decodes a written JSON member and scans every key and string (escaped spellings such
// as \u003c cannot hide a value from the raw scan this way).
func (r *run) scanJSON(path, name string, leak func(file, where string, h dict.Hit)) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var v any
	if json.Unmarshal(b, &v) != nil {
		r.man.Verification.Leaks = append(r.man.Verification.Leaks, name+": written JSON does not decode")
		return
	}
	var walk func(v any)
	check := func(s string) {
		r.d.Find([]byte(s), len(s), 0, func(h dict.Hit) bool { leak(name, "decoded JSON", h); return false })
	}
	var walkK func(v any, parent string)
	walkK = func(v any, parent string) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if annotationMap[parent] || ifaceMap[parent] {
					check(k) // user data; other keys are the runtime's schema
				}
				walkK(e, k)
			}
		case []any:
			for _, e := range x {
				walkK(e, parent)
			}
		case string:
			check(x)
		}
	}
	_ = walk
	walkK(v, "")
}

// archiveMeta rewrites the runtime files next to checkpoint/ (and checkpoint/descriptors.json)
// and returns the names written (relative to the archive root).
func (r *run) archiveMeta(src, dst string) ([]string, error) {
	ents, err := os.ReadDir(src)
	if err != nil {
		return nil, err
	}
	var members []string
	for _, e := range ents {
		if e.Name() == "checkpoint" {
			continue
		}
		if e.IsDir() {
			sub, _ := os.ReadDir(filepath.Join(src, e.Name()))
			if len(sub) == 0 {
				// podman's empty artifacts/ dir: kept (restore expects the layout)
				if err := os.MkdirAll(filepath.Join(dst, e.Name()), 0o700); err != nil {
					return nil, err
				}
				continue
			}
			for _, se := range sub {
				members = append(members, filepath.Join(e.Name(), se.Name()))
			}
			continue
		}
		members = append(members, e.Name())
	}
	if _, err := os.Stat(filepath.Join(src, "checkpoint", "descriptors.json")); err == nil {
		members = append(members, filepath.Join("checkpoint", "descriptors.json"))
	}
	sort.Strings(members)
	var written []string
	for _, name := range members {
		in, out := filepath.Join(src, name), filepath.Join(dst, name)
		if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
			return nil, err
		}
		if st, err := os.Lstat(in); err != nil || !st.Mode().IsRegular() {
			r.drop(name, "not a regular file (default deny)")
			continue
		}
		switch metaKind(filepath.Base(name)) {
		case "tar":
			f, err := os.Open(in)
			if err != nil {
				return nil, err
			}
			o, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				f.Close()
				return nil, err
			}
			var n int
			zr, kind, err := compress.NewReader(f)
			if err == nil {
				var zw io.WriteCloser
				if zw, err = compress.NewWriter(o, kind); err == nil {
					n, err = r.repackTarStream(zr, zw)
					if cerr := zw.Close(); err == nil {
						err = cerr
					}
				}
				zr.Close()
			}
			f.Close()
			o.Close()
			if err != nil {
				os.Remove(out)
				r.drop(name, fmt.Sprintf("tar does not parse (default deny): %v", err))
				continue
			}
			r.report(name, "tar", fmt.Sprintf("repacked: %d members, contents filled, names/uids mapped at identity", n))
			written = append(written, name)
		case "image":
			img, err := image.ReadFile(in)
			if err != nil {
				r.drop(name, fmt.Sprintf("does not decode (default deny): %v", err))
				continue
			}
			tr, err := r.transformImage(img)
			if err != nil {
				r.drop(name, err.Error())
				continue
			}
			if err := writeImage(out, img); err != nil {
				return nil, err
			}
			r.report(name, "proto", tr...)
			written = append(written, name)
		case "log":
			r.metaLogs = append(r.metaLogs, [2]string{in, out})
			written = append(written, name)
		case "json":
			b, err := os.ReadFile(in)
			if err != nil {
				return nil, err
			}
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.UseNumber()
			var v any
			if len(bytes.TrimSpace(b)) == 0 {
				v = nil
			} else if err := dec.Decode(&v); err != nil {
				r.drop(name, "runtime file is not JSON (default deny)")
				continue
			}
			var nb []byte
			if v != nil {
				v = r.jsonValue("", v)
				if nb, err = json.MarshalIndent(v, "", "  "); err != nil {
					return nil, err
				}
			}
			if err := os.WriteFile(out, nb, 0o600); err != nil {
				return nil, err
			}
			tr := "JSON: env values and --secret values replaced"
			if r.lvl >= Identity {
				tr = "JSON: string values and annotation/label keys pseudonymized"
			}
			r.report(name, "json", tr)
			written = append(written, name)
		default:
			r.drop(name, "unknown runtime file (default deny)")
		}
	}
	return written, nil
}

// annotationMap are the JSON keys whose object keys are user data (annotations, labels).
var annotationMap = map[string]bool{"annotations": true, "Annotations": true, "labels": true, "Labels": true,
	"ContainerAnnotations": true, "PodAnnotations": true, "PodLabels": true, "ContainerLabels": true}

// ifaceMap are JSON keys whose object keys are interface names (network.status).
var ifaceMap = map[string]bool{"interfaces": true}

// publicKeyPrefixes are annotation/label namespaces of the runtimes (kept).
var publicKeyPrefixes = []string{"io.kubernetes.", "io.podman.", "io.container.", "io.containers.", "org.opencontainers.",
	"io.cri-o.", "io.katacontainers.", "run.oci.", "com.docker.", "io.buildah.", "org.systemd."}

// annotationKey maps an annotation or label key at identity: runtime namespaces are kept, any
// other key is a same-length pseudonym per dot-separated part (public words stay).
func publicKey(k string) bool {
	for _, p := range publicKeyPrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

func (r *run) annotationKey(k string) string {
	if publicKey(k) {
		return r.scrubSecrets(k)
	}
	parts := strings.Split(k, ".")
	for i, p := range parts {
		if len(p) > 0 {
			parts[i] = r.m.Token(pseudo.CatName, p)
		}
	}
	return strings.Join(parts, ".")
}

var (
	envLike  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)
	enumLike = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,15}$`)
)

// jsonKeep are keys whose (enum-like) string values are kept: OCI/runtime vocabulary.
var jsonKeep = map[string]bool{"ociVersion": true, "type": true, "options": true, "propagation": true, "kind": true,
	"state": true, "status": true, "mode": true, "driver": true, "os": true, "architecture": true, "arch": true,
	"runtime": true, "runtimeType": true, "action": true, "defaultAction": true, "names": true, "op": true,
	"capabilities": true, "bounding": true, "effective": true, "permitted": true, "inheritable": true, "ambient": true,
	"access": true, "policy": true, "family": true, "protocol": true, "cniVersion": true, "version": true}

// jsonValue pseudonymizes a decoded JSON document: keys kept, strings by shape (paths, KEY=VALUE,
// addresses, runtime vocabulary kept, anything else a same-length token), uid/gid numbers mapped.
func (r *run) jsonValue(key string, v any) any {
	switch x := v.(type) {
	case map[string]any:
		if r.lvl >= Identity && ifaceMap[key] {
			y := make(map[string]any, len(x))
			for k, e := range x {
				y[logscrub.IfName(r.m, k)] = r.jsonValue(k, e)
			}
			return y
		}
		if annotationMap[key] {
			y := make(map[string]any, len(x))
			for k, e := range x {
				nk, ne := k, e
				if str, ok := e.(string); ok && !publicKey(k) && r.lvl < Identity {
					ne = r.scrubSecrets(r.envValue(str)) // content: user values, like env values
				} else {
					ne = r.jsonValue(k, e)
				}
				if r.lvl >= Identity {
					nk = r.annotationKey(k)
				}
				y[r.scrubSecrets(nk)] = ne
			}
			return y
		}
		for k, e := range x {
			x[k] = r.jsonValue(k, e)
		}
		if r.sec.Len() > 0 {
			y := make(map[string]any, len(x))
			for k, e := range x {
				y[r.scrubSecrets(k)] = e
			}
			return y
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = r.jsonValue(key, e)
		}
		return x
	case json.Number:
		if r.lvl >= Paranoid && (key == "hostPort" || key == "containerPort" || key == "host_port" || key == "container_port" || key == "port") {
			var n uint64
			if _, err := fmt.Sscan(string(x), &n); err == nil && n > 0 && n < 65536 {
				return json.Number(fmt.Sprint(r.port(uint32(n)))) // the images' and logs' port map
			}
		}
		if r.lvl >= Identity && (key == "uid" || key == "gid" || key == "hostID" || key == "containerID") {
			var n uint64
			if _, err := fmt.Sscan(string(x), &n); err == nil && n < 1<<32 {
				return json.Number(fmt.Sprint(r.mapUID(uint32(n))))
			}
		}
		return x
	case string:
		if r.lvl < Identity {
			if key == "args" || key == "CreateCommand" || key == "command" {
				return r.scrubSecrets(r.argValue(2, x)) // content: argv values, as in memory
			}
			// content: every KEY=VALUE (spec env, podman's CreateCommand -e) has its value replaced
			if envLike.MatchString(x) {
				k, val, _ := strings.Cut(x, "=")
				return r.scrubSecrets(k + "=" + r.envValue(val))
			}
			return r.scrubSecrets(x)
		}
		return r.scrubSecrets(r.jsonString(key, x))
	}
	return v
}

func (r *run) jsonString(key, s string) string {
	switch {
	case s == "":
		return s
	case key == "interface_name" || key == "ifname" || key == "interface":
		return logscrub.IfName(r.m, s)
	case strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./"):
		return r.path(s)
	case envLike.MatchString(s):
		k, val, _ := strings.Cut(s, "=")
		return r.envName(k) + "=" + r.envValue(val)
	case jsonKeep[key] && enumLike.MatchString(s):
		r.keepString(s)
		return s
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return r.mapIP(a).String()
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		b := p.Addr().AsSlice()
		r.rewriteAddr(b, p.Bits())
		na, _ := netip.AddrFromSlice(b)
		return netip.PrefixFrom(na, p.Bits()).String()
	}
	if hw, err := net.ParseMAC(s); err == nil && len(hw) == 6 {
		return net.HardwareAddr(r.m.MAC(hw)).String()
	}
	if s == "true" || s == "false" || isNumeric(s) {
		return s
	}
	return r.m.Token(pseudo.CatName, s)
}

func isNumeric(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && c != '.' && c != '-' && c != ':' {
			return false
		}
	}
	return s != ""
}

func (r *run) scanPlainTar(path, name string, leak func(file, where string, h dict.Hit)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	rd, _, err := compress.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %v", name, err)
	}
	defer rd.Close()
	tr := tar.NewReader(rd)
	for i := 1; ; i++ {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
		r.man.Verification.TarMembers++
		r.d.Find([]byte(h.Name), len(h.Name), 0, func(hit dict.Hit) bool { leak(name, fmt.Sprintf("member %d name", i), hit); return false })
		if _, err := r.d.Stream(tr, nil, false, func(hit dict.Hit) bool {
			leak(name, fmt.Sprintf("member %d offset %d", i, hit.Offset), hit)
			return false
		}); err != nil {
			return err
		}
	}
}

// extractArchive unpacks a tar, tar+gzip or tar+zstd (regular files and dirs only, no escaping
// names) and returns its compression.
func extractArchive(in, dir string) (compress.Kind, error) {
	f, err := os.Open(in)
	if err != nil {
		return compress.None, fmt.Errorf("anonymize: %w", err)
	}
	defer f.Close()
	rd, kind, err := compress.NewReader(f)
	if err != nil {
		return kind, fmt.Errorf("anonymize: %s: %w: %v", in, ErrNotArchive, err)
	}
	defer rd.Close()
	// symlinks, hard links, devices: not part of checkpoint archives; left out (default deny)
	n, err := untar.Extract(rd, dir, nil)
	if err != nil {
		var re *untar.ReadError
		if errors.As(err, &re) {
			return kind, fmt.Errorf("anonymize: %s (%s): %w: %v", in, kind, ErrNotArchive, re.Err)
		}
		return kind, fmt.Errorf("anonymize: %s: %w", in, err)
	}
	if n == 0 {
		return kind, fmt.Errorf("anonymize: %s: %w", in, ErrNotArchive)
	}
	return kind, nil
}

// packArchive writes dir as a tar (gzip'd when gz) with sorted names and fixed metadata, so one
// key gives byte-identical archives.
func packArchive(dir, out string, kind compress.Kind) error {
	var names []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	o, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer o.Close()
	zw, err := compress.NewWriter(o, kind)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	for _, p := range names {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h := &tar.Header{Name: rel, Mode: 0o644, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if fi.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, rel+"/", 0o755
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			continue
		}
		h.Typeflag, h.Size = tar.TypeReg, fi.Size()
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return o.Sync()
}
