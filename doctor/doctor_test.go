package doctor

import (
	"strings"
	"testing"
)

func TestParseKernelConfig(t *testing.T) {
	cfg := ParseKernelConfig(strings.NewReader(`#
# Automatically generated file
CONFIG_USERFAULTFD=y
# CONFIG_MEM_SOFT_DIRTY is not set
CONFIG_LOCALVERSION="-x"
CONFIG_KVM=m
garbage line
`))
	for k, want := range map[string]string{"CONFIG_USERFAULTFD": "y", "CONFIG_MEM_SOFT_DIRTY": "n", "CONFIG_LOCALVERSION": "-x", "CONFIG_KVM": "m"} {
		if cfg[k] != want {
			t.Errorf("%s = %q, want %q", k, cfg[k], want)
		}
	}
	if len(cfg) != 4 {
		t.Errorf("extra keys: %v", cfg)
	}
}

func FuzzParseKernelConfig(f *testing.F) {
	f.Add("CONFIG_A=y\n# CONFIG_B is not set\n")
	f.Add("=\n# \nCONFIG_")
	f.Fuzz(func(t *testing.T, s string) {
		for k := range ParseKernelConfig(strings.NewReader(s)) {
			if !strings.HasPrefix(k, "CONFIG_") {
				t.Fatalf("key %q", k)
			}
		}
	})
}

const mountinfo = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
66 22 0:4 net:[4026532300] /run/netns/x rw shared:200 master:2 - nsfs nsfs rw
70 22 254:0 /srv/data /data rw,relatime master:1 - ext4 /dev/vda rw
71 22 0:50 / /mnt/with\040space rw - tmpfs tmpfs rw
bad line
`

func TestParseMountinfo(t *testing.T) {
	ms := ParseMountinfo(strings.NewReader(mountinfo))
	if len(ms) != 4 {
		t.Fatalf("%d mounts: %+v", len(ms), ms)
	}
	if m := ms[1]; m.Point != "/run/netns/x" || m.FSType != "nsfs" || len(m.Master) != 1 || m.Master[0] != "2" || m.Shared[0] != "200" {
		t.Errorf("mount 66: %+v", m)
	}
	if ms[2].Root != "/srv/data" || ms[3].Point != "/mnt/with space" {
		t.Errorf("root/escape: %+v %+v", ms[2], ms[3])
	}
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add(mountinfo)
	f.Add(" - \n1 2 3 4 5 6 - a b\n\\777")
	f.Fuzz(func(t *testing.T, s string) {
		for _, m := range ParseMountinfo(strings.NewReader(s)) {
			if m.FSType == "" {
				t.Fatalf("mount without fstype: %+v", m)
			}
		}
	})
}

func TestAddr(t *testing.T) {
	for in, want := range map[string]string{"0100007F:1F90": "127.0.0.1:8080", "00000000000000000000000001000000:0050": "[00000000000000000000000001000000]:80", "zz": "zz"} {
		if got := addr(in); got != want {
			t.Errorf("addr(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestVersions(t *testing.T) {
	if a, b := kernelVersion("6.18.44-fc-v769"); a != 6 || b != 18 {
		t.Errorf("kernel %d.%d", a, b)
	}
	if a, b := parseMajMin("3.17.1"); a != 3 || b != 17 {
		t.Errorf("criu %d.%d", a, b)
	}
	if a, b := parseMajMin("garbage"); a != 0 || b != 0 {
		t.Errorf("garbage %d.%d", a, b)
	}
}

func TestMountFindings(t *testing.T) {
	ms := ParseMountinfo(strings.NewReader(mountinfo))
	ids := func(fs []Finding) (out []string) {
		for _, f := range fs {
			out = append(out, f.ID+" "+f.Path)
		}
		return out
	}
	got := ids(mountFindings(7, ms, nil))
	// /data's master:1 is the root's shared:1 (reachable), and 254:0 has a "/" mount: only the
	// nsfs mount (master:2, whose peer group is outside) is reported.
	want := []string{"mntns-unreachable-sharing /run/netns/x"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("findings %q, want %q", got, want)
	}
	// Without the root mount of 254:0 the bind mount of /srv/data is external.
	got = ids(mountFindings(7, ms[1:], nil))
	if len(got) != 3 || got[2] != "external-bind-mount /data" {
		t.Errorf("without root mount: %q", got)
	}
	if got := mountFindings(7, ms, []string{"--enable-external-masters"}); len(got) != 0 {
		t.Errorf("with --enable-external-masters: %+v", got)
	}
}
