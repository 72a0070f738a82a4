package pseudo

import (
	"regexp"
	"strings"
)

// systemTrees are path prefixes kept whole: distro binaries and libraries, kernel file systems.
var systemTrees = []string{"/usr/", "/lib/", "/lib64/", "/lib32/", "/libx32/", "/bin/", "/sbin/", "/proc/", "/sys/", "/etc/ld.so", "/etc/localtime", "/etc/nsswitch.conf", "/etc/passwd", "/etc/group", "/etc/hosts", "/etc/resolv.conf", "/etc/ssl/", "/etc/ca-certificates", "/etc/alternatives/", "/dev/"}

// systemComponents are path components kept wherever they appear (in normal mode).
var systemComponents = map[string]bool{}

func init() {
	for _, c := range strings.Fields(`usr lib lib64 lib32 libx32 bin sbin etc var run tmp opt home root mnt media srv boot dev
		proc sys local share include src log cache spool lock lib mail pts shm mqueue hugepages net netns cgroup fs
		self fd fdinfo task ns ttyS null zero full random urandom tty ptmx console kvm fuse tun selinux systemd
		x86_64-linux-gnu aarch64-linux-gnu i386-linux-gnu python3 locale zoneinfo dbus-1 user data pid criu
		containers overlay overlay2 diff merged upper lower work rootfs docker podman crio kubelet pods volumes
		go-build checkpoint images cpu cpuacct cpuset memory blkio devices freezer net_cls net_prio perf_event
		hugetlb pids rdma misc unified name=systemd cpu,cpuacct net_cls,net_prio system.slice user.slice init.scope
		machine.slice ssl certs private tasks notify_on_release release_agent`) {
		systemComponents[c] = true
	}
}

// PathOptions tune path mapping.
type PathOptions struct {
	// All maps every component except "/", proc, sys and dev (the paranoid level).
	All bool
}

var ghostSuffix = regexp.MustCompile(`\.cr\.[0-9]+\.ghost$`)
var linkRemap = regexp.MustCompile(`^link_remap\.[0-9]+$`)
var extRe = regexp.MustCompile(`^(\.[A-Za-z0-9_+-]{1,10})+$`)

// localTrees are inside systemTrees but hold the owner's own files: mapped like any path (their
// system components, e.g. /usr/local/bin, stay).
var localTrees = []string{"/usr/local/", "/etc/ssl/private/", "/dev/shm/", "/dev/mqueue/", "/dev/hugepages/", "/sys/fs/cgroup/"}

// IsSystemComponent reports whether c is a component kept wherever it appears (below paranoid).
func IsSystemComponent(c string) bool { return systemComponents[c] }

// IsSystemPath reports whether p is kept whole (distro files, kernel file systems, devices).
func IsSystemPath(p string) bool {
	p = strings.TrimSuffix(p, " (deleted)")
	if !strings.HasPrefix(p, "/") {
		p = "/" + strings.TrimPrefix(p, "./")
	}
	for _, s := range localTrees {
		if strings.HasPrefix(p, s) {
			return false
		}
	}
	for _, s := range systemTrees {
		if strings.HasPrefix(p, s) || p+"/" == s || p == strings.TrimSuffix(s, "/") {
			return true
		}
	}
	return false
}

// Path maps a path component by component, keeping "/", ".", "..", depth, shared prefixes,
// extensions and CRIU's suffixes (" (deleted)", ".cr.N.ghost", "link_remap.N"). Absolute,
// relative and "./" spellings of one path map consistently. Tokens keep each component's
// length, so the result has the byte length of p.
func (m *Mapper) Path(p string, o PathOptions) string {
	if p == "" || m.Kept(p) {
		return p
	}
	deleted := ""
	if strings.HasSuffix(p, " (deleted)") {
		deleted, p = " (deleted)", strings.TrimSuffix(p, " (deleted)")
	}
	if !o.All && IsSystemPath(p) {
		return p + deleted
	}
	parts := strings.Split(p, "/")
	for i, c := range parts {
		parts[i] = m.Component(c, o)
	}
	return strings.Join(parts, "/") + deleted
}

// Component maps one path component (see Path).
func (m *Mapper) Component(c string, o PathOptions) string {
	if c == "" || c == "." || c == ".." || m.Kept(c) {
		return c
	}
	if o.All {
		if c == "proc" || c == "sys" || c == "dev" {
			return c
		}
	} else if systemComponents[c] {
		return c
	}
	if isNumeric(c) {
		if allDigits(c) && len(c) >= DigitsMin {
			return m.Digits(c) // card numbers, account ids: a short number (pid, version) stays
		}
		return c
	}
	if linkRemap.MatchString(c) {
		return c
	}
	if loc := ghostSuffix.FindStringIndex(c); loc != nil && loc[0] > 0 {
		return m.Component(c[:loc[0]], o) + c[loc[0]:]
	}
	if strings.HasPrefix(c, "memfd:") {
		return "memfd:" + m.Token(CatName, c[len("memfd:"):])
	}
	// keep a leading dot (hidden files) and the extension
	lead := ""
	if strings.HasPrefix(c, ".") {
		lead, c = ".", c[1:]
		if !o.All && systemComponents[c] {
			return lead + c
		}
	}
	if !o.All && systemComponents[c] {
		return lead + c
	}
	if i := strings.IndexByte(c, '.'); !o.All && i > 0 && systemComponents[c[:i]] {
		return lead + c // cpu.cfs_quota_us, python3.11, cgroup.procs
	}
	stem, ext := splitExt(c)
	if !o.All && systemComponents[stem] && ext != "" && extRe.MatchString(ext) {
		return lead + c
	}
	if strings.Contains(stem, ".") {
		// a domain-shaped name ("www.example-corp.com"): label by label, like a host name, so
		// a label found alone (a fragment of a buffer, a log line) maps the same way
		labels := strings.Split(stem, ".")
		for i, l := range labels {
			if l != "" && !isNumeric(l) && (o.All || !systemComponents[l]) {
				labels[i] = m.Token(CatPath, l)
			}
		}
		return lead + strings.Join(labels, ".") + ext
	}
	return lead + m.Token(CatPath, stem) + ext
}

// splitExt splits the file extension off a component: the last dot-suffix of 1-5 letters or
// digits (".tar" before ".gz"/".xz"/".zst" too). "www.example.com" keeps ".com" only: every other
// label is part of the stem and mapped.
func splitExt(c string) (stem, ext string) {
	stem = c
	for {
		i := strings.LastIndexByte(stem, '.')
		n := len(stem) - i - 1
		if i <= 0 || n == 0 || n > 7 || !extRe.MatchString(stem[i:]) {
			return stem, ext
		}
		piece := stem[i:]
		stem, ext = stem[:i], piece+ext
		// a version (".6" of libc.so.6) or ".tar" of ".tar.gz": the next piece belongs too
		if isCompressExt(piece) && strings.HasSuffix(stem, ".tar") && len(stem) > 4 {
			return stem[:len(stem)-4], ".tar" + ext
		}
		if !allDigits(piece[1:]) {
			return stem, ext
		}
	}
}

func isCompressExt(e string) bool {
	return e == ".gz" || e == ".xz" || e == ".zst" || e == ".bz2"
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// isNumeric: decimal numbers, dotted numbers (versions, IPv4) and 0x hex numbers are kept.
func isNumeric(s string) bool {
	if len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		for i := 2; i < len(s); i++ {
			if !strings.ContainsRune("0123456789abcdefABCDEF", rune(s[i])) {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return s != "" && s[0] != '.'
}

// UnixName maps a UNIX socket name as stored by CRIU: a leading NUL means abstract (a name),
// otherwise a path; a trailing NUL is kept.
func (m *Mapper) UnixName(b []byte, o PathOptions) []byte {
	if len(b) == 0 {
		return b
	}
	s := string(b)
	tail := ""
	if strings.HasSuffix(s, "\x00") && len(s) > 1 {
		s, tail = s[:len(s)-1], "\x00"
	}
	if s[0] == 0 {
		return []byte("\x00" + m.Token(CatName, s[1:]) + tail)
	}
	return []byte(m.Path(s, o) + tail)
}
