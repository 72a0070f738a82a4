package anonymize

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/criukit/criukit/anonymize/logscrub"
	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/image/nldump"
)

func (r *run) rawFile(name string) error {
	defer r.progressFile(name)
	d, _ := image.Classify(name)
	in := filepath.Join(r.in, name)
	out := filepath.Join(r.tmp, name)
	switch d.Raw {
	case image.RawTarGz:
		n, err := r.repackTar(in, out)
		if err != nil {
			os.Remove(out)
			r.drop(name, fmt.Sprintf("tarball does not parse (default deny): %v", err))
			return nil
		}
		r.report(name, "tar.gz", fmt.Sprintf("repacked: %d members, contents filled, names/uids mapped at identity", n))
	case image.RawIPDump:
		b, err := os.ReadFile(in)
		if err != nil {
			return err
		}
		if r.lvl >= Identity {
			n, err := r.rewriteIPDump(b)
			if err != nil {
				r.drop(name, fmt.Sprintf("netlink dump does not parse (default deny): %v", err))
				return nil
			}
			r.report(name, "ip-dump", fmt.Sprintf("%d netlink messages: addresses, labels, ifnames mapped", n))
		} else {
			r.report(name, "ip-dump", "kept")
		}
		return os.WriteFile(out, b, 0o600)
	case image.RawText:
		b, err := os.ReadFile(in)
		if err != nil {
			return err
		}
		if r.lvl >= Identity {
			b = []byte(r.rewriteRules(string(b)))
			r.report(name, "text", "addresses, interfaces and comments mapped")
		} else {
			r.report(name, "text", "kept")
		}
		return os.WriteFile(out, b, 0o600)
	case image.RawNetlink:
		if r.lvl >= Identity {
			r.drop(name, "conntrack dump: rewriting its tuples is not implemented yet (default deny)")
			return nil
		}
		b, err := os.ReadFile(in)
		if err != nil {
			return err
		}
		r.report(name, "netlink", "kept")
		return os.WriteFile(out, b, 0o600)
	default:
		r.drop(name, "legacy raw image (not written by CRIU 4.x)")
	}
	return nil
}

// repackTar rewrites a gzip'd tar (tmpfs contents): member contents become filler (dropped at
// paranoid), names and link targets go through the path map and uids/gids through the uid map
// at identity. Streamed: one member at a time.
func (r *run) repackTar(in, out string) (int, error) {
	f, err := os.Open(in)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return 0, err
	}
	o, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	defer o.Close()
	zw := gzip.NewWriter(o)
	n, err := r.repackTarStream(zr, zw)
	if err != nil {
		return n, err
	}
	return n, zw.Close()
}

// repackTarStream is repackTar on an uncompressed tar stream.
func (r *run) repackTarStream(in io.Reader, out io.Writer) (int, error) {
	tw := tar.NewWriter(out)
	tr := tar.NewReader(in)
	n := 0
	buf := make([]byte, 1<<16)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, err
		}
		n++
		nh := &tar.Header{Typeflag: h.Typeflag, Name: h.Name, Linkname: h.Linkname, Size: h.Size, Mode: h.Mode,
			Uid: h.Uid, Gid: h.Gid, ModTime: h.ModTime, Devmajor: h.Devmajor, Devminor: h.Devminor, Format: tar.FormatPAX}
		if r.lvl >= Identity {
			nh.Name = r.m.Path(h.Name, r.po)
			if h.Linkname != "" {
				nh.Linkname = r.m.Path(h.Linkname, r.po)
			}
			nh.Uid, nh.Gid = int(r.mapUID(uint32(h.Uid))), int(r.mapUID(uint32(h.Gid)))
		} else {
			nh.Uname, nh.Gname = h.Uname, h.Gname
		}
		nh.Name, nh.Linkname = r.scrubSecrets(nh.Name), r.scrubSecrets(nh.Linkname) // every level
		nh.Uname, nh.Gname = r.scrubSecrets(nh.Uname), r.scrubSecrets(nh.Gname)
		if r.lvl >= Paranoid {
			nh.ModTime = time.Unix(0, 0)
			if h.Typeflag == tar.TypeReg {
				nh.Size = 0
			}
		}
		if err := tw.WriteHeader(nh); err != nil {
			return n, err
		}
		if h.Typeflag != tar.TypeReg || nh.Size == 0 {
			continue
		}
		var left = h.Size
		for left > 0 {
			k, err := io.ReadFull(tr, buf[:min(int64(len(buf)), left)])
			if err != nil {
				return n, err
			}
			if left == h.Size {
				r.sample(buf[:k])
			}
			fillInPlace(buf[:k])
			if _, err := tw.Write(buf[:k]); err != nil {
				return n, err
			}
			left -= int64(k)
			r.count("tar-bytes", k)
		}
	}
	return n, tw.Close()
}

// rewriteIPDump maps addresses (multipath gateways and RTA_VIA included) and interface names of
// an iproute2 save dump in place (same length) and returns its number of messages.
func (r *run) rewriteIPDump(b []byte) (int, error) {
	d, err := nldump.Parse(b)
	if err != nil {
		return 0, err
	}
	data := d.Bytes()
	for _, f := range d.Fields() {
		plen := f.Bits
		if d.Kind == nldump.KindAddr {
			plen = -1 // an interface address is mapped whole; its prefix length stays
		}
		r.rewriteAddr(data[f.Offset:f.Offset+f.Addr.BitLen()/8], plen)
	}
	for _, f := range d.Names() {
		r.rewriteName(data[f.Offset : f.Offset+f.Len])
	}
	copy(b, data)
	return d.Len(), nil
}

// rewriteAddr maps an address in place; with a prefix length >= 0 the host bits stay zero-based
// (a route to 10.1.2.0/24 stays a network address).
func (r *run) rewriteAddr(val []byte, plen int) {
	a, ok := netip.AddrFromSlice(val)
	if !ok {
		return
	}
	defer func() {
		na, _ := netip.AddrFromSlice(val)
		r.recordIP(a, na)
	}()
	if plen >= 0 && plen < a.BitLen() {
		// keep the original host bits (zero for a network), so the kernel accepts the route
		if p, err := a.Prefix(plen); err == nil && p.Addr() == a {
			if _, seen := r.netPrefix[a]; !seen {
				r.netPrefix[a] = plen // the same address in text (logs, JSON) maps alike
			}
			plen = r.netPrefix[a]
		}
		copy(val, r.mapNet(a, plen).AsSlice())
		return
	}
	copy(val, r.mapIPRaw(a).AsSlice())
}

func (r *run) rewriteName(val []byte) {
	s := string(bytes.TrimRight(val, "\x00"))
	ns := logscrub.IfName(r.m, s)
	copy(val, ns)
}

var (
	ruleIP        = regexp.MustCompile(`\b\d{1,3}(?:\.\d{1,3}){3}(?:/\d{1,2})?\b|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]*:[0-9A-Fa-f.]*(?:/\d{1,3})?`)
	ruleCommentRe = regexp.MustCompile(`(--comment\s+|\bcomment\s+)("[^"]*"|[^\s"-]\S*)`)
	ruleIfFlag    = regexp.MustCompile(`((?:^|\s)(?:-i|-o|--in-interface|--out-interface|iifname|oifname|iif|oif) !?\s*"?)([A-Za-z0-9_.+:@-]+)`)
)

// rewriteRules maps addresses (prefixes keep host bits), interface names and comments in
// iptables-save / nft text.
func (r *run) rewriteRules(s string) string {
	s = ruleIP.ReplaceAllStringFunc(s, func(x string) string {
		addr, plen, hasLen := strings.Cut(x, "/")
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return x
		}
		if hasLen {
			var n int
			fmt.Sscanf(plen, "%d", &n)
			b := a.AsSlice()
			r.rewriteAddr(b, n)
			na, _ := netip.AddrFromSlice(b)
			return na.String() + "/" + plen
		}
		return r.mapIP(a).String()
	})
	s = ruleCommentRe.ReplaceAllStringFunc(s, func(x string) string {
		m := ruleCommentRe.FindStringSubmatch(x)
		c := m[2]
		if strings.HasPrefix(c, "-") {
			return x // "-m comment --comment ..."
		}
		if strings.HasPrefix(c, `"`) && len(c) >= 2 {
			return m[1] + `"` + r.m.Token("text", c[1:len(c)-1]) + `"`
		}
		return m[1] + r.m.Token("text", c)
	})
	s = ruleIfFlag.ReplaceAllStringFunc(s, func(x string) string {
		m := ruleIfFlag.FindStringSubmatch(x)
		return m[1] + logscrub.IfName(r.m, m[2])
	})
	return s
}
