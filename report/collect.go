package report

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/criukit/criukit/doctor"
)

// Env is the environment a CRIU issue needs. It never holds the host name. Text that may carry
// local paths (check output, command lines, config files) is anonymized before it is bundled.
type Env struct {
	CriuPath      string            `json:"-"`              // local path, not bundled
	CriuVersion   string            `json:"criu_version"`   // output of `criu --version`
	CheckAll      string            `json:"criu_check_all"` // output of `criu check --all`
	Features      []doctor.Feature  `json:"features"`       // per-feature table (doctor's probes)
	KernelRelease string            `json:"kernel_release"` // uname -r
	KernelVersion string            `json:"kernel_version"` // uname -v
	Arch          string            `json:"arch"`           // uname -m
	DistroID      string            `json:"distro_id"`      // /etc/os-release ID
	DistroVersion string            `json:"distro_version"` // /etc/os-release VERSION_ID
	DistroName    string            `json:"distro_name"`    // /etc/os-release PRETTY_NAME
	KernelConfig  map[string]string `json:"kernel_config"`  // relevant CONFIG_* options ("n" = not set)
	ConfigSource  string            `json:"kernel_config_source,omitempty"`
	Runtimes      []Runtime         `json:"container_runtimes"`
	Commands      []string          `json:"criu_command_lines,omitempty"` // found in the logs
	ConfigFiles   []ConfigFile      `json:"criu_config_files,omitempty"`
}

// Runtime is a container runtime found on PATH.
type Runtime struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// ConfigFile is a CRIU config file that was used (named in a log, CRIU_CONFIG_FILE or a default path).
type ConfigFile struct {
	Path    string `json:"path"`
	Content string `json:"content"`
}

// KernelConfigOptions are the kernel options reported (CRIU's requirements and the usual suspects).
var KernelConfigOptions = []string{
	"CONFIG_CHECKPOINT_RESTORE", "CONFIG_NAMESPACES", "CONFIG_UTS_NS", "CONFIG_IPC_NS", "CONFIG_PID_NS",
	"CONFIG_NET_NS", "CONFIG_USER_NS", "CONFIG_TIME_NS", "CONFIG_MEM_SOFT_DIRTY", "CONFIG_USERFAULTFD",
	"CONFIG_PTE_MARKER_UFFD_WP", "CONFIG_PROC_CHILDREN", "CONFIG_KCMP", "CONFIG_FHANDLE", "CONFIG_EVENTFD",
	"CONFIG_EPOLL", "CONFIG_INOTIFY_USER", "CONFIG_FANOTIFY", "CONFIG_UNIX_DIAG", "CONFIG_INET_DIAG",
	"CONFIG_INET_TCP_DIAG", "CONFIG_INET_UDP_DIAG", "CONFIG_PACKET_DIAG", "CONFIG_NETLINK_DIAG",
	"CONFIG_NF_TABLES", "CONFIG_TUN", "CONFIG_MEMCG", "CONFIG_CGROUPS", "CONFIG_RSEQ", "CONFIG_SECCOMP",
	"CONFIG_BPF_SYSCALL", "CONFIG_IO_URING", "CONFIG_PERF_EVENTS", "CONFIG_KVM", "CONFIG_TRANSPARENT_HUGEPAGE",
}

// RuntimeNames are the container runtimes looked up on PATH.
var RuntimeNames = []string{"containerd", "crun", "docker", "podman", "runc"}

// DefaultConfigFiles are CRIU's default config files (criu.txt, "Configuration files").
var DefaultConfigFiles = []string{"/etc/criu/default.conf", "~/.criu/default.conf", "/etc/criu/runc.conf"}

// Collect gathers the environment. criu is the criu binary ("" = criurun.Find); noCriu skips
// running criu (no --version / check --all). Logs are searched for command lines and config files.
func Collect(ctx context.Context, criu string, noCriu bool, logs []string) (*Env, error) {
	rep, err := doctor.Run(ctx, doctor.Options{Criu: criu, NoCriu: noCriu})
	if err != nil {
		return nil, err
	}
	e := &Env{CriuPath: rep.Criu, CheckAll: rep.CheckAll, Features: rep.Features,
		KernelRelease: rep.Kernel, KernelVersion: rep.KernelVer, Arch: rep.Arch, KernelConfig: map[string]string{}}
	if e.CheckAll == "" {
		e.CheckAll = "(not run)"
	}
	e.CriuVersion = "(criu not found)"
	if rep.Criu != "" && !noCriu {
		e.CriuVersion = run(ctx, rep.Criu, "--version")
	} else if rep.CriuVersion != "" {
		e.CriuVersion = "Version: " + rep.CriuVersion
	}
	if f, err := os.Open("/etc/os-release"); err == nil {
		kv := ParseOSRelease(f)
		f.Close()
		e.DistroID, e.DistroVersion, e.DistroName = kv["ID"], kv["VERSION_ID"], kv["PRETTY_NAME"]
	}
	if cfg := doctor.KernelConfig(e.KernelRelease); cfg != nil {
		e.ConfigSource = "/proc/config.gz"
		if _, err := os.Stat("/proc/config.gz"); err != nil {
			e.ConfigSource = "/boot/config-" + e.KernelRelease
		}
		for _, k := range KernelConfigOptions {
			v, ok := cfg[k]
			if !ok {
				v = "n"
			}
			e.KernelConfig[k] = v
		}
	}
	for _, n := range RuntimeNames {
		p, err := exec.LookPath(n)
		if err != nil {
			continue
		}
		arg := "--version"
		if v := firstLine(run(ctx, p, arg)); v != "" {
			e.Runtimes = append(e.Runtimes, Runtime{Name: n, Version: v})
		}
	}
	cfgPaths := map[string]bool{}
	for _, l := range logs {
		f, err := os.Open(l)
		if err != nil {
			return nil, err
		}
		cmds, cfgs := ScanLog(f)
		f.Close()
		e.Commands = append(e.Commands, cmds...)
		for _, c := range cfgs {
			cfgPaths[c] = true
		}
	}
	if v := os.Getenv("CRIU_CONFIG_FILE"); v != "" {
		cfgPaths[v] = true
	}
	home, _ := os.UserHomeDir()
	for _, p := range DefaultConfigFiles {
		if strings.HasPrefix(p, "~/") {
			if home == "" {
				continue
			}
			p = filepath.Join(home, p[2:])
		}
		cfgPaths[p] = true
	}
	paths := make([]string, 0, len(cfgPaths))
	for p := range cfgPaths {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if len(b) > 64<<10 {
			b = b[:64<<10]
		}
		e.ConfigFiles = append(e.ConfigFiles, ConfigFile{Path: p, Content: string(b)})
	}
	return e, nil
}

func run(ctx context.Context, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return strings.TrimSpace(string(out))
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(s)
}

// ParseOSRelease parses os-release(5) text: KEY=value lines, values optionally quoted.
func ParseOSRelease(r io.Reader) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
			v = strings.NewReplacer(`\"`, `"`, `\\`, `\`, `\$`, `$`, "\\`", "`").Replace(v)
		}
		m[k] = v
	}
	return m
}

var (
	// a criu invocation as wrappers (runc, podman, scripts) log it
	cmdRe = regexp.MustCompile(`(?:^|[\s"'=:])((?:\S*/)?criu(?:-ns)?\s+(?:-\S+\s+)*(?:dump|pre-dump|restore|page-server|lazy-pages|check|swrk)\b.*)$`)
	// a config file CRIU or a wrapper names
	cfgRe = regexp.MustCompile(`(?:CRIU_CONFIG_FILE=|--config[= ]|[Cc]onfig(?:uration)? file:?\s+)"?(/[^\s"',;]+)`)
)

// MaxCommands bounds the command lines ScanLog returns.
const MaxCommands = 20

// ScanLog finds criu command lines and config file paths in a log. Lines longer than 64 KiB are skipped.
func ScanLog(r io.Reader) (cmds, configs []string) {
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for {
		if !sc.Scan() {
			if sc.Err() == bufio.ErrTooLong {
				sc = bufio.NewScanner(r)
				sc.Buffer(make([]byte, 64<<10), 64<<10)
				continue
			}
			break
		}
		l := sc.Text()
		if m := cmdRe.FindStringSubmatch(l); m != nil && len(cmds) < MaxCommands {
			c := strings.TrimSpace(strings.TrimRight(m[1], `"'`))
			if !seen[c] {
				seen[c] = true
				cmds = append(cmds, c)
			}
		}
		for _, m := range cfgRe.FindAllStringSubmatch(l, -1) {
			if !seen["cfg:"+m[1]] {
				seen["cfg:"+m[1]] = true
				configs = append(configs, m[1])
			}
		}
	}
	return cmds, configs
}
