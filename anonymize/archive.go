package anonymize

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
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
	"github.com/criukit/criukit/anonymize/pseudo"
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
	gz, err := extractArchive(in, src)
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
	// runtime metadata first: its values (names, env, paths) join the dictionary used for memory
	meta, err := r.archiveMeta(src, dst)
	if err != nil {
		return r.man, err
	}
	if err := r.process(); err != nil {
		return r.man, err
	}
	if err := r.verify(); err != nil {
		return r.man, err
	}
	for _, m := range meta {
		p := filepath.Join(dst, m)
		leak := func(file, where string, h dict.Hit) {
			r.man.Verification.Leaks = append(r.man.Verification.Leaks, fmt.Sprintf("%s %s: %s value (%d bytes)", file, where, h.Entry.Kind, len(h.Entry.From)))
		}
		if err := r.scanFile(p, m, true, leak); err != nil {
			return r.man, err
		}
		if strings.HasSuffix(m, ".tar") || strings.HasSuffix(m, ".tar.gz") {
			if err := r.scanPlainTar(p, m, leak); err != nil {
				return r.man, err
			}
		}
	}
	if len(r.man.Verification.Leaks) > 0 {
		return r.man, fmt.Errorf("%w:\n  %s", ErrLeak, strings.Join(r.man.Verification.Leaks, "\n  "))
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
	if err := packArchive(dst, tmp, gz); err != nil {
		os.Remove(tmp)
		return r.man, err
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return r.man, err
	}
	return r.man, nil
}

// archiveMeta rewrites the runtime files next to checkpoint/ and returns the names written.
func (r *run) archiveMeta(src, dst string) ([]string, error) {
	ents, err := os.ReadDir(src)
	if err != nil {
		return nil, err
	}
	var written []string
	for _, e := range ents {
		name := e.Name()
		if name == "checkpoint" {
			continue
		}
		in, out := filepath.Join(src, name), filepath.Join(dst, name)
		switch {
		case e.IsDir():
			r.drop(name+"/", "archive directory other than checkpoint/ (default deny)")
		case strings.HasSuffix(name, ".tar") || strings.HasSuffix(name, ".tar.gz"):
			f, err := os.Open(in)
			if err != nil {
				return nil, err
			}
			o, err := os.Create(out)
			if err != nil {
				f.Close()
				return nil, err
			}
			var rd io.Reader = bufio.NewReader(f)
			var zw *gzip.Writer
			var w io.Writer = o
			if strings.HasSuffix(name, ".gz") {
				zr, err := gzip.NewReader(rd)
				if err == nil {
					rd, zw = zr, gzip.NewWriter(o)
					w = zw
				}
			}
			n, err := r.repackTarStream(rd, w)
			if err == nil && zw != nil {
				err = zw.Close()
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
		default:
			b, err := os.ReadFile(in)
			if err != nil {
				return nil, err
			}
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.UseNumber()
			var v any
			if err := dec.Decode(&v); err != nil {
				r.drop(name, "runtime file is not JSON (default deny)")
				continue
			}
			v = r.jsonValue("", v)
			nb, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				return nil, err
			}
			if err := os.WriteFile(out, nb, 0o600); err != nil {
				return nil, err
			}
			r.report(name, "json", "string values pseudonymized (keys kept)")
			written = append(written, name)
		}
	}
	return written, nil
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
		for k, e := range x {
			x[k] = r.jsonValue(k, e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = r.jsonValue(key, e)
		}
		return x
	case json.Number:
		if r.lvl >= Identity && (key == "uid" || key == "gid" || key == "hostID" || key == "containerID") {
			var n uint64
			if _, err := fmt.Sscan(string(x), &n); err == nil && n < 1<<32 {
				return json.Number(fmt.Sprint(r.mapUID(uint32(n))))
			}
		}
		return x
	case string:
		if r.lvl < Identity {
			if (key == "env" || key == "Env") && envLike.MatchString(x) {
				k, val, _ := strings.Cut(x, "=")
				return k + "=" + r.envValue(val)
			}
			return x
		}
		return r.jsonString(key, x)
	}
	return v
}

func (r *run) jsonString(key, s string) string {
	switch {
	case s == "":
		return s
	case strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./"):
		return r.path(s)
	case envLike.MatchString(s):
		k, val, _ := strings.Cut(s, "=")
		r.keepString(k + "=")
		return k + "=" + r.envValue(val)
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
	var rd io.Reader = f
	if strings.HasSuffix(name, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
		rd = zr
	}
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

// extractArchive unpacks a tar or tar.gz (regular files and dirs only, no escaping names).
func extractArchive(in, dir string) (gz bool, err error) {
	f, err := os.Open(in)
	if err != nil {
		return false, fmt.Errorf("anonymize: %w", err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var rd io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return false, fmt.Errorf("anonymize: %s: %w", in, err)
		}
		rd, gz = zr, true
	}
	tr := tar.NewReader(rd)
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return gz, fmt.Errorf("anonymize: %s: %w: %v", in, ErrNotArchive, err)
		}
		n++
		name := filepath.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." {
			continue
		}
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return gz, fmt.Errorf("anonymize: %s: member %q escapes the archive", in, h.Name)
		}
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o700); err != nil {
				return gz, err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return gz, err
			}
			o, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return gz, err
			}
			_, err = io.Copy(o, tr)
			o.Close()
			if err != nil {
				return gz, err
			}
		default:
			// symlinks, devices: not part of checkpoint archives; left out (default deny)
		}
	}
	if n == 0 {
		return gz, fmt.Errorf("anonymize: %s: %w", in, ErrNotArchive)
	}
	return gz, nil
}

// packArchive writes dir as a tar (gzip'd when gz) with sorted names and fixed metadata, so one
// key gives byte-identical archives.
func packArchive(dir, out string, gz bool) error {
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
	var w io.Writer = o
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(o)
		w = zw
	}
	tw := tar.NewWriter(w)
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
	if zw != nil {
		if err := zw.Close(); err != nil {
			return err
		}
	}
	return o.Sync()
}
