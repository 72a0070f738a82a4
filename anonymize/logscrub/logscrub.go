package logscrub

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/criukit/criukit/anonymize/dict"
	"github.com/criukit/criukit/anonymize/pseudo"
)

// Scrubber scrubs log text. D may be nil (no dictionary pass).
type Scrubber struct {
	M    *pseudo.Mapper
	D    *dict.Dict
	Path pseudo.PathOptions
	// Roots are the first components that make a relative path ("tmp/x/y") a path; nil means
	// DefaultRoots. "./x" and "/x" are always paths.
	Roots map[string]bool
	// Drop, when set, removes the lines it returns true for (counted as "dropped-lines").
	Drop func(line string) bool
	// IP, when set, maps addresses (the run's map: a network address of a route maps like the
	// route image maps it); nil uses M.IP.
	IP func(netip.Addr) netip.Addr
	// Port, when set (paranoid), maps the port numbers of socket lines ("port 6379",
	// "dst_port=443") the way the images map them.
	Port func(uint32) uint32
	// Counts of replaced tokens per family.
	Counts map[string]int
}

var portRe = regexp.MustCompile(`\b((?:src_|dst_|s|d)?port)(\s+|=|:\s*)(\d{1,5})\b`)

// DefaultRoots are the usual top-level directories.
var DefaultRoots = map[string]bool{}

func init() {
	for _, s := range strings.Fields("tmp home root var run mnt opt srv media usr etc data proc sys dev lib lib64 bin sbin boot workspace work") {
		DefaultRoots[s] = true
	}
}

var (
	// CRIU source locations "(criu/files-reg.c:2175)" and sysctl paths are protected from the path rule.
	srcRef    = regexp.MustCompile(`\b(?:criu|compel|lib|plugins|soccr|include|arch)/[A-Za-z0-9_/.-]+\.[ch]:\d+`)
	sysctlRe  = regexp.MustCompile(`\b(net/(?:ipv4|ipv6)/(?:conf|neigh)/)([A-Za-z0-9_.:@-]+)(/[A-Za-z0-9_]+)`)
	runningOn = regexp.MustCompile(`(Running on )(\S+)( Linux)`)
	commRe    = regexp.MustCompile(`(\bcomm:? )([^\s)]{1,16})`)
	sourceRe  = regexp.MustCompile(`(\bsource )(\S+)( mnt_id)`)
	abstract  = regexp.MustCompile(`(\bname @)([^\s)]+)`)
	memfdRe   = regexp.MustCompile(`(\bmemfd:)([^\s()\]/']+)`)
	macRe     = regexp.MustCompile(`\b[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}\b`)
	ip4Re     = regexp.MustCompile(`\b\d{1,3}(?:\.\d{1,3}){3}\b`)
	ip6Re     = regexp.MustCompile(`[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]*:[0-9A-Fa-f.]*`)
	pathRe    = regexp.MustCompile(`(?:\.?/)?[A-Za-z0-9_.@:+~,=-]+(?:/[A-Za-z0-9_.@:+~,=-]*)+(?: \(deleted\))?|/[A-Za-z0-9_.@:+~,=-]+(?: \(deleted\))?`)
)

// triggers are substrings a line must hold for the regexp to be tried.
var triggers = map[*regexp.Regexp]string{runningOn: "Running on ", commRe: "comm", sourceRe: "source ", abstract: "name @", memfdRe: "memfd:", sysctlRe: "net/ipv"}

var stdIfnames = regexp.MustCompile(`^(lo|all|default|eth\d+|ens\d+\w*|enp\w+|eno\d+|wlan\d+|bond\d+|docker0|tunl0|gre0|gretap0|erspan0|ip_vti0|ip6_vti0|sit0|ip6tnl0|ip6gre0)$`)

// IfName maps a network interface name; standard kernel/distro names are kept.
// IsStdIfName reports whether n is a kernel/runtime default interface name (kept).
func IsStdIfName(n string) bool { return stdIfnames.MatchString(n) }

func IfName(m *pseudo.Mapper, n string) string {
	if stdIfnames.MatchString(n) {
		return n
	}
	return m.Name(n)
}

// MountSource maps a mount source: paths by the path map, "host:/export" by host + path,
// kernel pseudo sources (none, proc, tmpfs, ...) kept, other labels as names.
func MountSource(m *pseudo.Mapper, s string, o pseudo.PathOptions) string {
	switch {
	case s == "" || keepSources[s]:
		return s
	case strings.HasPrefix(s, "/"):
		return m.Path(s, o)
	}
	if i := strings.Index(s, ":/"); i > 0 {
		return m.Host(s[:i]) + ":" + m.Path(s[i+1:], o)
	}
	return m.Name(s)
}

var keepSources = map[string]bool{}

func init() {
	for _, s := range strings.Fields("none proc sysfs tmpfs devtmpfs devpts mqueue cgroup cgroup2 overlay shm securityfs debugfs tracefs bpf pstore hugetlbfs configfs fusectl binfmt_misc nsfs rootfs udev autofs systemd-1 efivarfs selinuxfs rpc_pipefs nfsd sunrpc fuse ramfs") {
		keepSources[s] = true
	}
}

func (s *Scrubber) count(k string) {
	if s.Counts == nil {
		s.Counts = map[string]int{}
	}
	s.Counts[k]++
}

type span struct{ a, b int }

// Line scrubs one log line (without its newline).
func (s *Scrubber) Line(line string) string {
	type repl struct {
		a, b int
		to   string
	}
	if s.Counts == nil {
		s.Counts = map[string]int{}
	}
	var rs []repl
	taken := func(a, b int) bool {
		for _, r := range rs {
			if a < r.b && r.a < b {
				return true
			}
		}
		return false
	}
	add := func(a, b int, to, fam string) {
		if taken(a, b) {
			return
		}
		rs = append(rs, repl{a, b, to})
		if to != line[a:b] {
			s.count(fam)
		}
	}
	for _, loc := range srcRef.FindAllStringIndex(line, -1) {
		add(loc[0], loc[1], line[loc[0]:loc[1]], "")
	}
	sub := func(re *regexp.Regexp, fam string, f func(string) string) {
		if t := triggers[re]; t != "" && !strings.Contains(line, t) {
			return // cheap pre-filter: most lines have none of these
		}
		for _, m := range re.FindAllStringSubmatchIndex(line, -1) {
			add(m[4], m[5], f(line[m[4]:m[5]]), fam)
		}
	}
	sub(runningOn, "host", s.M.Host)
	sub(sourceRe, "mount-source", func(v string) string { return MountSource(s.M, v, s.Path) })
	sub(abstract, "unix-name", s.M.Name)
	sub(memfdRe, "name", s.M.Name)
	sub(commRe, "comm", s.M.Name)
	sub(sysctlRe, "ifname", func(v string) string { return IfName(s.M, v) })
	hasColon, hasDot, hasSlash := strings.IndexByte(line, ':') >= 0, strings.IndexByte(line, '.') >= 0, strings.IndexByte(line, '/') >= 0
	var macs, paths [][]int
	if hasColon {
		macs = macRe.FindAllStringIndex(line, -1)
	}
	if hasSlash {
		paths = pathRe.FindAllStringIndex(line, -1)
	}
	for _, loc := range macs {
		hw, err := net.ParseMAC(line[loc[0]:loc[1]])
		if err == nil {
			add(loc[0], loc[1], net.HardwareAddr(s.M.MAC(hw)).String(), "mac")
		}
	}
	for _, re := range []*regexp.Regexp{ip4Re, ip6Re} {
		if re == ip4Re && !hasDot || re == ip6Re && !hasColon {
			continue
		}
		for _, loc := range re.FindAllStringIndex(line, -1) {
			a, err := netip.ParseAddr(line[loc[0]:loc[1]])
			if err == nil {
				m := s.M.IP(a)
				if s.IP != nil {
					m = s.IP(a)
				}
				add(loc[0], loc[1], m.String(), "ip")
			}
		}
	}
	for _, loc := range paths {
		a, b := loc[0], loc[1]
		// do not start in the middle of a word (e.g. "x86:" or "ab/cd" glued to text)
		if a > 0 && !strings.ContainsRune(" \t[('\"`=<,", rune(line[a-1])) {
			continue
		}
		p := line[a:b]
		if !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "./") {
			roots := s.Roots
			if roots == nil {
				roots = DefaultRoots
			}
			first, _, _ := strings.Cut(p, "/")
			if !roots[first] {
				continue
			}
		}
		if taken(a, b) {
			continue
		}
		add(a, b, s.M.Path(p, s.Path), "path")
	}
	if len(rs) == 0 && s.D == nil {
		return line
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].a < rs[j].a })
	var sb strings.Builder
	prev := 0
	for _, r := range rs {
		sb.WriteString(line[prev:r.a])
		sb.WriteString(r.to)
		prev = r.b
	}
	sb.WriteString(line[prev:])
	out := sb.String()
	if s.D != nil && s.D.Len() > 0 {
		b := []byte(out)
		if n := s.D.ReplaceBytes(b, len(b)); n > 0 {
			s.Counts["dictionary"] += n
			out = string(b)
		}
	}
	return out
}

// Scrub copies a log, scrubbing every line. Lines are kept (count and order).
func (s *Scrubber) Scrub(r io.Reader, w io.Writer) error {
	br := bufio.NewReaderSize(r, 1<<16)
	bw := bufio.NewWriterSize(w, 1<<16)
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 && s.Drop != nil && s.Drop(strings.TrimSuffix(line, "\n")) {
			s.count("dropped-lines")
			line = ""
		}
		if len(line) > 0 {
			nl := strings.HasSuffix(line, "\n")
			out := s.Line(strings.TrimSuffix(line, "\n"))
			if s.Port != nil {
				out = portRe.ReplaceAllStringFunc(out, func(x string) string {
					m := portRe.FindStringSubmatch(x)
					n, err := strconv.ParseUint(m[3], 10, 32)
					if err != nil || n == 0 || n > 65535 {
						return x
					}
					s.count("port")
					return m[1] + m[2] + strconv.FormatUint(uint64(s.Port(uint32(n))), 10)
				})
			}
			bw.WriteString(out)
			if nl {
				bw.WriteByte('\n')
			}
		}
		if err == io.EOF {
			return bw.Flush()
		}
		if err != nil {
			return err
		}
	}
}
