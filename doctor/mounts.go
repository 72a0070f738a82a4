package doctor

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// Mount is one line of /proc/PID/mountinfo.
type Mount struct {
	ID, Parent string
	Dev        string // major:minor
	Root       string
	Point      string
	Shared     []string // peer group ids (shared:N)
	Master     []string // master peer groups (master:N)
	FSType     string
	Source     string
}

// ParseMountinfo parses mountinfo text; malformed lines are skipped.
func ParseMountinfo(r io.Reader) []Mount {
	var out []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 6 || len(qf) < 2 {
			continue
		}
		m := Mount{ID: pf[0], Parent: pf[1], Dev: pf[2], Root: unescape(pf[3]), Point: unescape(pf[4]), FSType: qf[0], Source: qf[1]}
		for _, opt := range pf[6:] {
			if v, ok := strings.CutPrefix(opt, "shared:"); ok {
				m.Shared = append(m.Shared, v)
			} else if v, ok := strings.CutPrefix(opt, "master:"); ok {
				m.Master = append(m.Master, v)
			}
		}
		out = append(out, m)
	}
	return out
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] >= '0' && s[i+1] <= '3' {
			v := (s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0')
			b.WriteByte(v)
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// virtualFS are filesystems whose bind mounts CRIU handles without a root mount.
var virtualFS = map[string]bool{"proc": true, "sysfs": true, "devpts": true, "mqueue": true, "cgroup": true, "cgroup2": true,
	"nsfs": true, "bpf": true, "debugfs": true, "tracefs": true, "securityfs": true, "pstore": true, "fusectl": true, "configfs": true, "binfmt_misc": true}

// mounts checks the tree's mount namespace when it is not criu's own (CRIU dumps mounts only then).
func (r *Report) mounts(o Options) {
	a, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", o.Pid))
	b, err2 := os.Readlink("/proc/self/ns/mnt")
	if err1 != nil || err2 != nil || a == b {
		return
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", o.Pid))
	if err != nil {
		return
	}
	defer f.Close()
	for _, fd := range mountFindings(o.Pid, ParseMountinfo(f), o.DumpArgs) {
		r.add(fd)
	}
}

// mountFindings checks the mounts of a tree's own mount namespace.
func mountFindings(pid int, ms []Mount, dumpArgs []string) []Finding {
	var out []Finding
	shared := map[string]bool{}
	rootOf := map[string]bool{}
	for _, m := range ms {
		for _, s := range m.Shared {
			shared[s] = true
		}
		if m.Root == "/" {
			rootOf[m.Dev] = true
		}
	}
	external := hasArg(dumpArgs, "--external")
	for _, m := range ms {
		where := fmt.Sprintf("pid %d mount %s (mnt_id %s, %s)", pid, m.Point, m.ID, m.FSType)
		for _, master := range m.Master {
			if !shared[master] && !hasArg(dumpArgs, "--enable-external-masters") && !external {
				out = append(out, Finding{ID: "mntns-unreachable-sharing", Severity: SevError, Pid: pid, FD: -1, Path: m.Point, Where: where,
					What: fmt.Sprintf("mount %s is a slave of peer group %s, which lives outside the tree's mount namespace", m.Point, master),
					Why:  "the tree has its own mount namespace (e.g. started by `ip netns exec`) that receives propagation from outside",
					Fix:  "run the workload and criu in the same mount namespace (nsenter --net=... instead of ip netns exec), or dump with --enable-external-masters / --external mnt[...]"})
				break
			}
		}
		if m.Root != "/" && !rootOf[m.Dev] && !virtualFS[m.FSType] && !external {
			out = append(out, Finding{ID: "external-bind-mount", Severity: SevWarning, Pid: pid, FD: -1, Path: m.Point, Where: where,
				What: fmt.Sprintf("bind mount of %s from %s whose filesystem root is not mounted in the tree", m.Root, m.Source),
				Why:  "CRIU cannot dump a bind mount without its root mount (\"doesn't have a proper root mount\")",
				Fix:  fmt.Sprintf("--external mnt[%s]:KEY on dump and --external mnt[KEY]:HOSTPATH on restore", m.Point)})
		}
	}
	return out
}
