package anonymize

import (
	"encoding/binary"
	"net/netip"
	"regexp"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/opts"
	"github.com/criukit/criukit/anonymize/dict"
	"github.com/criukit/criukit/anonymize/logscrub"
	"github.com/criukit/criukit/anonymize/pseudo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// fieldRule classifies a string/bytes field of the image protos. Every such field must be listed
// (TestFieldCoverage): new CRIU fields make the test fail until they are classified.
type fieldRule int

const (
	ruleKeep         fieldRule = iota // not sensitive (or a cross reference)
	rulePath                          // file system path
	ruleComponent                     // one path component (cgroup dir names)
	ruleUnixName                      // unix socket name (abstract or path)
	ruleName                          // free-form name
	ruleComm                          // task/thread name (<= 15 bytes)
	ruleIfName                        // network interface name
	ruleHost                          // host or domain name
	ruleMountSource                   // mount source
	ruleMountOptions                  // mount options (may hold paths, uids)
	ruleMAC                           // link-layer address bytes
	ruleData                          // user data: filler from content on
	ruleBlob                          // policy/filter blob: dropped at paranoid
	ruleSysctl                        // sysctl string value (stable_secret)
	ruleHW                            // hardware fingerprint: token at paranoid
	ruleText                          // free text kept until paranoid
)

var fieldRules = map[protoreflect.FullName]fieldRule{
	"aa_namespace.name":                   ruleName,
	"aa_policy.blob":                      ruleBlob,
	"aa_policy.name":                      ruleName,
	"binfmt_misc_entry.extension":         ruleKeep,
	"binfmt_misc_entry.flags":             ruleKeep,
	"binfmt_misc_entry.interpreter":       rulePath,
	"binfmt_misc_entry.magic":             ruleKeep,
	"binfmt_misc_entry.mask":              ruleKeep,
	"binfmt_misc_entry.name":              ruleName,
	"bpfmap_file_entry.map_name":          ruleName,
	"cg_controller_entry.cnames":          ruleKeep,
	"cg_member_entry.name":                ruleKeep, // controller name
	"cg_member_entry.path":                rulePath,
	"cgroup_dir_entry.dir_name":           ruleComponent,
	"cgroup_prop_entry.name":              ruleKeep,
	"cgroup_prop_entry.value":             ruleText,
	"cpuinfo_x86_entry.model_id":          ruleHW,
	"creds_entry.apparmor_data":           ruleBlob,
	"creds_entry.lsm_profile":             ruleText,
	"creds_entry.lsm_sockcreate":          ruleText,
	"fanotify_mount_mark_entry.path":      rulePath,
	"fdinfo_entry.xattr_security_selinux": ruleText,
	"fh_entry.path":                       rulePath,
	"ghost_file_entry.symlnk_target":      rulePath,
	"inet_sk_entry.ifname":                ruleIfName,
	"inventory_entry.dump_criu_run_id":    ruleKeep, // links images and logs; random per run
	"irmap_cache_entry.path":              rulePath,
	"memfd_inode_entry.name":              ruleName,
	"mnt_entry.ext_key":                   ruleName,
	"mnt_entry.fsname":                    ruleKeep,
	"mnt_entry.mountpoint":                rulePath,
	"mnt_entry.options":                   ruleMountOptions,
	"mnt_entry.root":                      rulePath,
	"mnt_entry.source":                    ruleMountSource,
	"net_device_entry.address":            ruleMAC,
	"net_device_entry.name":               ruleIfName,
	"netns_entry.ext_key":                 ruleName,
	"packet_mclist.addr":                  ruleMAC,
	"pidns_entry.ext_key":                 ruleName,
	"plugins_entry.plugins":               ruleKeep,
	"reg_file_entry.name":                 rulePath,
	"seccomp_filter.filter":               ruleBlob,
	"siginfo_entry.siginfo":               ruleKeep,
	"sk_opts_entry.so_bound_dev":          ruleIfName,
	"sysctl_entry.sarg":                   ruleSysctl,
	"task_core_entry.comm":                ruleComm,
	"thread_core_entry.comm":              ruleComm,
	"tty_data_entry.data":                 ruleData,
	"tunfile_entry.netdev":                ruleIfName,
	"unix_sk_entry.name":                  ruleUnixName,
	"unix_sk_entry.name_dir":              rulePath,
	"utsns_entry.domainname":              ruleHost,
	"utsns_entry.nodename":                ruleHost,
}

// uidFields are the uid/gid fields mapped from identity on (system ids kept).
var uidFields = map[protoreflect.FullName]bool{}

func init() {
	for _, s := range strings.Fields(`creds_entry.uid creds_entry.gid creds_entry.euid creds_entry.egid creds_entry.suid
		creds_entry.sgid creds_entry.fsuid creds_entry.fsgid creds_entry.groups task_core_entry.loginuid
		fown_entry.uid fown_entry.euid ghost_file_entry.uid ghost_file_entry.gid ipc_desc_entry.uid ipc_desc_entry.gid
		ipc_desc_entry.cuid ipc_desc_entry.cgid memfd_inode_entry.uid memfd_inode_entry.gid file_perms_entry.uid
		file_perms_entry.gid tty_info_entry.uid tty_info_entry.gid tun_link_entry.owner tun_link_entry.group
		cgroup_perms.uid cgroup_perms.gid autofs_entry.uid autofs_entry.gid uid_gid_extent.lower_first`) {
		uidFields[protoreflect.FullName(s)] = true
	}
}

// mcsRe finds the category set of an SELinux context "user:role:type:s0:c1,c2".
var mcsRe = regexp.MustCompile(`^[^:]+:[^:]+:[^:]+:s\d+(?:-s\d+)?(:c\d+.*)$`)

// keptRegs are the x86 general registers kept at the structure level (restore needs them).
var keptRegs = map[string]bool{"cs": true, "ss": true, "ds": true, "es": true, "fs": true, "gs": true, "mode": true}

// zeroedFP are the x87/SSE/AVX register arrays zeroed at the structure level (lengths kept).
var zeroedFP = map[string]bool{"st_space": true, "xmm_space": true, "ymmh_space": true, "zmm_upper": true, "hi16_zmm": true, "opmask_reg": true, "bndreg_state": true, "bndcsr_state": true}

func isIPAddField(f protoreflect.FieldDescriptor) bool {
	o, ok := f.Options().(*descriptorpb.FieldOptions)
	if !ok || o == nil || !proto.HasExtension(o, opts.E_Criu) {
		return false
	}
	c, _ := proto.GetExtension(o, opts.E_Criu).(*opts.CRIU_Opts)
	return c.GetIpadd()
}

// transformMsg rewrites one decoded message in place for the run's level.
func (r *run) transformMsg(m protoreflect.Message) {
	md := m.Descriptor()
	isGP := md.FullName() == "user_x86_regs_entry"
	isFP := md.FullName() == "user_x86_fpregs_entry" || md.FullName() == "user_x86_xsave_entry"
	// structure: zero the general registers (set, since they are required fields)
	if isGP && r.lvl >= Structure {
		fs := md.Fields()
		for i := 0; i < fs.Len(); i++ {
			f := fs.Get(i)
			if keptRegs[string(f.Name())] || f.Cardinality() == protoreflect.Repeated || f.Kind() == protoreflect.MessageKind {
				continue
			}
			if m.Has(f) || f.Cardinality() == protoreflect.Required {
				m.Set(f, zeroOf(f))
			}
		}
		r.count("registers", 1)
	}
	if md.FullName() == "reg_file_entry" && r.lvl >= Identity {
		defer r.dropFingerprint(m, m.Get(md.Fields().ByName("name")).String())
	}
	m.Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := f.FullName()
		switch {
		case f.Kind() == protoreflect.MessageKind || f.Kind() == protoreflect.GroupKind:
			if f.IsList() {
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					r.transformMsg(l.Get(i).Message())
				}
			} else if !f.IsMap() {
				r.transformMsg(v.Message())
			}
		case isFP && r.lvl >= Structure && zeroedFP[string(f.Name())] && f.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				l.Set(i, zeroOf(f))
			}
		case isIPAddField(f):
			if r.lvl >= Identity {
				r.mapIPAdd(m, f, v)
			}
		case uidFields[name]:
			if r.lvl >= Identity {
				r.mapUIDField(m, f, v)
			}
		case f.Kind() == protoreflect.StringKind || f.Kind() == protoreflect.BytesKind:
			r.stringField(m, f, v)
		case name == "termios_entry.c_cc":
			// c_cc tail: uninitialised CRIU memory, restore copies only the first 32 bytes
			if f.IsList() && r.lvl >= Content {
				l := v.List()
				for i := 8; i < l.Len(); i++ {
					l.Set(i, protoreflect.ValueOfUint32(0))
				}
			}
		case r.lvl >= Paranoid && (name == "tcp_stream_entry.inq_seq" || name == "tcp_stream_entry.outq_seq" || name == "tcp_stream_entry.timestamp"):
			m.Set(f, zeroOf(f)) // connection fingerprints
			r.count("tcp-fingerprints-zeroed", 1)
		case r.lvl >= Paranoid && (name == "inet_sk_entry.src_port" || name == "inet_sk_entry.dst_port"):
			if p := uint32(v.Uint()); p != 0 {
				m.Set(f, protoreflect.ValueOfUint32(r.port(p)))
			}
		case r.lvl >= Paranoid && (name == "timeval.tv_sec" || name == "timeval.tv_usec" || name == "timespec.tv_sec" ||
			name == "timespec.tv_nsec" || name == "inventory_entry.dump_uptime"):
			m.Set(f, protoreflect.ValueOfUint64(0)) // timestamps (ghost atim/mtim, timens, uptime) normalized
			r.count("timestamps-zeroed", 1)
		}
		return true
	})
}

// port maps a port at paranoid: keeps the privileged/unprivileged class.
func (r *run) port(p uint32) uint32 {
	t := r.m.UID(100000 + p) // keyed, injective
	if p < 1024 {
		return 1 + t%1023
	}
	return 1024 + t%(65536-1024)
}

func (r *run) mapIPAdd(m protoreflect.Message, f protoreflect.FieldDescriptor, v protoreflect.Value) {
	if !f.IsList() {
		return
	}
	l := v.List()
	if l.Len() != 1 && l.Len() != 4 {
		return
	}
	b := make([]byte, 4*l.Len())
	for i := 0; i < l.Len(); i++ {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(l.Get(i).Uint()))
	}
	a, _ := netip.AddrFromSlice(b)
	out := r.mapIP(a).AsSlice()
	for i := 0; i < l.Len(); i++ {
		l.Set(i, protoreflect.ValueOfUint32(binary.LittleEndian.Uint32(out[4*i:])))
	}
}

// mapIP maps an address, recomputing EUI-64 interface ids from the dump's MACs.
func (r *run) mapIP(a netip.Addr) netip.Addr {
	out := r.mapIPRaw(a)
	r.recordIP(a, out)
	return out
}

func (r *run) mapIPRaw(a netip.Addr) netip.Addr {
	if x, ok := r.m.IP6WithMACs(a, r.macs); ok {
		return x
	}
	if plen, ok := r.netPrefix[a]; ok {
		// the network address of a route (10.1.2.0 of 10.1.2.0/24): mapped as the route
		// image maps it (prefix mapped, host bits kept), in logs and JSON too
		return r.mapNet(a, plen)
	}
	return r.m.IP(a)
}

// mapNet maps a prefix: the first plen bits as the prefix-preserving map does, the rest kept.
func (r *run) mapNet(a netip.Addr, plen int) netip.Addr {
	m := r.m.IP(a)
	p, err := m.Prefix(plen)
	if err != nil {
		return m
	}
	orig, mb := a.AsSlice(), p.Addr().AsSlice()
	for i := range mb {
		bit := i * 8
		if bit >= plen {
			mb[i] = orig[i]
		} else if bit+8 > plen {
			mask := byte(0xff << (8 - (plen - bit)))
			mb[i] = mb[i]&mask | orig[i]&^mask
		}
	}
	out, _ := netip.AddrFromSlice(mb)
	return out
}

// recordIP notes an address that left the output (for the leak scan and the dictionary).
func (r *run) recordIP(a, out netip.Addr) {
	if out != a && !r.changedIPs[a] {
		r.changedIPs[a] = true
		r.ipFinal[a] = out
	}
}

func (r *run) mapUIDField(m protoreflect.Message, f protoreflect.FieldDescriptor, v protoreflect.Value) {
	conv := func(x protoreflect.Value) protoreflect.Value {
		switch f.Kind() {
		case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
			id := uint32(int32(x.Int()))
			n := r.mapUID(id)
			return protoreflect.ValueOfInt32(int32(n))
		default:
			return protoreflect.ValueOfUint32(r.mapUID(uint32(x.Uint())))
		}
	}
	if f.IsList() {
		l := v.List()
		for i := 0; i < l.Len(); i++ {
			l.Set(i, conv(l.Get(i)))
		}
		return
	}
	m.Set(f, conv(v))
}

func (r *run) mapUID(id uint32) uint32 {
	n := r.m.UID(id)
	if r.lvl >= Paranoid && n == id && id != 0 && id != ^uint32(0) {
		n = r.m.UID(id + 1<<30) // map system ids too, except root and "unset"
	}
	if n != id {
		r.changedUIDs[id] = true
	}
	return n
}

func (r *run) stringField(m protoreflect.Message, f protoreflect.FieldDescriptor, v protoreflect.Value) {
	rule, known := fieldRules[f.FullName()]
	if !known {
		// default deny inside known images: an unclassified text field is tokenized at identity
		rule = ruleName
		r.note("unclassified field %s tokenized", f.FullName())
	}
	if f.IsList() {
		l := v.List()
		for i := 0; i < l.Len(); i++ {
			if nv, ok := r.applyRule(rule, f, l.Get(i)); ok {
				l.Set(i, nv)
			}
		}
		return
	}
	if rule == ruleSysctl && r.lvl >= Identity {
		// stable_secret (the IPv6 stable-privacy key): cleared, as when it is unset
		if a, err := netip.ParseAddr(v.String()); err == nil && a.Is6() {
			m.Clear(f)
			r.count("secrets-cleared", 1)
		}
		return
	}
	if nv, ok := r.applyRule(rule, f, v); ok {
		m.Set(f, nv)
	}
}

func (r *run) applyRule(rule fieldRule, f protoreflect.FieldDescriptor, v protoreflect.Value) (protoreflect.Value, bool) {
	nv, ok := r.applyRule1(rule, f, v)
	// --secret values and their pieces leave every string at every level
	cur := v
	if ok && nv.IsValid() {
		cur = nv
	}
	if f.Kind() == protoreflect.BytesKind {
		b := append([]byte(nil), cur.Bytes()...)
		if len(b) >= dict.MinLen && r.sec.ReplaceBytes(b, len(b)) > 0 {
			nv, ok = protoreflect.ValueOfBytes(b), true
		}
	} else if s := r.scrubSecrets(cur.String()); s != cur.String() {
		nv, ok = protoreflect.ValueOfString(s), true
	}
	if ok && nv.Interface() != nil {
		var a, b string
		if f.Kind() == protoreflect.BytesKind {
			a, b = string(v.Bytes()), string(nv.Bytes())
		} else {
			a, b = v.String(), nv.String()
		}
		if a == b {
			r.keepString(a)
		}
	}
	return nv, ok
}

func (r *run) applyRule1(rule fieldRule, f protoreflect.FieldDescriptor, v protoreflect.Value) (protoreflect.Value, bool) {
	str := func(s string) (protoreflect.Value, bool) {
		if f.Kind() == protoreflect.BytesKind {
			return protoreflect.ValueOfBytes([]byte(s)), true
		}
		return protoreflect.ValueOfString(s), true
	}
	var s string
	if f.Kind() == protoreflect.BytesKind {
		s = string(v.Bytes())
	} else {
		s = v.String()
	}
	if r.lvl < Identity && rule != ruleData && rule != ruleMAC {
		r.keepString(s) // kept at this level: part of the output as is
	}
	switch rule {
	case ruleData:
		if r.lvl >= Paranoid {
			return str("")
		}
		if r.lvl >= Content {
			r.count("payload-bytes", len(s))
			return str(string(filler([]byte(s))))
		}
	case ruleBlob:
		if r.lvl >= Paranoid && s != "" {
			r.count("blobs-dropped", 1)
			return str("")
		}
	case ruleHW:
		if r.lvl >= Paranoid {
			return str(r.m.Token(pseudo.CatText, s))
		}
	case ruleText:
		if r.lvl >= Paranoid {
			return str(r.m.Token(pseudo.CatText, s))
		}
		if r.lvl >= Identity {
			if m := mcsRe.FindStringSubmatchIndex(s); m != nil {
				// SELinux MCS categories identify tenants: keep user:role:type:level only
				r.count("mcs-categories-dropped", 1)
				return str(s[:m[2]])
			}
		}
		r.keepString(s)
	case ruleKeep:
		r.keepString(s)
	}
	if r.lvl < Identity {
		return v, false
	}
	switch rule {
	case rulePath:
		return str(r.path(s))
	case ruleComponent:
		parts := strings.Split(s, "/")
		for i := range parts {
			parts[i] = r.m.Component(parts[i], r.po)
		}
		return str(strings.Join(parts, "/"))
	case ruleUnixName:
		return str(string(r.m.UnixName([]byte(s), r.po)))
	case ruleName, ruleComm:
		if strings.HasPrefix(s, "/") {
			return str(r.path(s)) // e.g. memfd "/dev/zero" of anonymous shared mappings
		}
		return str(r.m.Name(s))
	case ruleIfName:
		return str(logscrub.IfName(r.m, s))
	case ruleHost:
		return str(r.m.Host(s))
	case ruleMountSource:
		return str(logscrub.MountSource(r.m, s, r.po))
	case ruleMountOptions:
		return str(r.mountOptions(s))
	case ruleMAC:
		return str(string(r.m.MAC([]byte(s))))
	}
	return v, false
}

func (r *run) path(s string) string {
	out := r.m.Path(s, r.po)
	if out == s {
		r.keepString(s)
	} else {
		r.fullPaths[s] = out
	}
	if first, _, ok := strings.Cut(strings.TrimPrefix(s, "/"), "/"); ok && first != "" && strings.HasPrefix(s, "/") {
		r.roots[first] = true
	}
	return out
}

// mountOptions maps paths (overlay lowerdir=a:b, upperdir=, workdir=) and uid=/gid= values.
func (r *run) mountOptions(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		switch {
		case strings.Contains(v, "/"):
			ps := strings.Split(v, ":")
			for j := range ps {
				ps[j] = r.path(ps[j])
			}
			parts[i] = k + "=" + strings.Join(ps, ":")
		case k == "uid" || k == "gid":
			var n uint64
			okNum := v != ""
			for _, c := range v {
				if c < '0' || c > '9' {
					okNum = false
					break
				}
				n = n*10 + uint64(c-'0')
			}
			if okNum && n < 1<<32 {
				parts[i] = k + "=" + uitoa(r.mapUID(uint32(n)))
			}
		}
	}
	return strings.Join(parts, ",")
}

func uitoa(n uint32) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

// filler replaces every non-zero byte with 'X' (zeros kept: sparse regions stay sparse).
func filler(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if c != 0 {
			out[i] = 'X'
		}
	}
	return out
}

func fillInPlace(b []byte) {
	for i, c := range b {
		if c != 0 {
			b[i] = 'X'
		}
	}
}

// zeroOf is the zero value of a scalar field kind.
func zeroOf(f protoreflect.FieldDescriptor) protoreflect.Value {
	switch f.Kind() {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(0)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(0)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(0)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(0)
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(false)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(0)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(0)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(f.Enum().Values().Get(0).Number())
	case protoreflect.StringKind:
		return protoreflect.ValueOfString("")
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes(nil)
	}
	return f.Default()
}

// dropFingerprint clears build_id and checksum of a file whose path was mapped: they identify a
// private binary, and a restore kit (files of equal size) could not match them anyway. CRIU then
// validates the size only.
func (r *run) dropFingerprint(m protoreflect.Message, orig string) {
	fs := m.Descriptor().Fields()
	if m.Get(fs.ByName("name")).String() == orig && r.lvl < Paranoid {
		return
	}
	for _, n := range []protoreflect.Name{"build_id", "checksum", "checksum_config", "checksum_parameter"} {
		if f := fs.ByName(n); f != nil && m.Has(f) {
			m.Clear(f)
			r.count("fingerprints-dropped", 1)
		}
	}
}
