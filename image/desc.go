package image

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	apparmor "github.com/checkpoint-restore/go-criu/v8/crit/images/apparmor"
	autofs "github.com/checkpoint-restore/go-criu/v8/crit/images/autofs"
	binfmt_misc "github.com/checkpoint-restore/go-criu/v8/crit/images/binfmt-misc"
	bpfmap_data "github.com/checkpoint-restore/go-criu/v8/crit/images/bpfmap-data"
	bpfmap_file "github.com/checkpoint-restore/go-criu/v8/crit/images/bpfmap-file"
	cgroup "github.com/checkpoint-restore/go-criu/v8/crit/images/cgroup"
	cpuinfo "github.com/checkpoint-restore/go-criu/v8/crit/images/cpuinfo"
	creds "github.com/checkpoint-restore/go-criu/v8/crit/images/creds"
	criu_core "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	criu_sa "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-sa"
	eventfd "github.com/checkpoint-restore/go-criu/v8/crit/images/eventfd"
	eventpoll "github.com/checkpoint-restore/go-criu/v8/crit/images/eventpoll"
	ext_file "github.com/checkpoint-restore/go-criu/v8/crit/images/ext-file"
	fdinfo "github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	fh "github.com/checkpoint-restore/go-criu/v8/crit/images/fh"
	fifo "github.com/checkpoint-restore/go-criu/v8/crit/images/fifo"
	file_lock "github.com/checkpoint-restore/go-criu/v8/crit/images/file-lock"
	fs "github.com/checkpoint-restore/go-criu/v8/crit/images/fs"
	fsnotify "github.com/checkpoint-restore/go-criu/v8/crit/images/fsnotify"
	ghost_file "github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	inventory "github.com/checkpoint-restore/go-criu/v8/crit/images/inventory"
	ipc_msg "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-msg"
	ipc_sem "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-sem"
	ipc_shm "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-shm"
	ipc_var "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-var"
	memfd "github.com/checkpoint-restore/go-criu/v8/crit/images/memfd"
	mm "github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	mnt "github.com/checkpoint-restore/go-criu/v8/crit/images/mnt"
	netdev "github.com/checkpoint-restore/go-criu/v8/crit/images/netdev"
	ns "github.com/checkpoint-restore/go-criu/v8/crit/images/ns"
	packet_sock "github.com/checkpoint-restore/go-criu/v8/crit/images/packet-sock"
	pagemap "github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	pidfd "github.com/checkpoint-restore/go-criu/v8/crit/images/pidfd"
	pidns "github.com/checkpoint-restore/go-criu/v8/crit/images/pidns"
	pipe "github.com/checkpoint-restore/go-criu/v8/crit/images/pipe"
	pipe_data "github.com/checkpoint-restore/go-criu/v8/crit/images/pipe-data"
	pstree "github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	regfile "github.com/checkpoint-restore/go-criu/v8/crit/images/regfile"
	remap_file_path "github.com/checkpoint-restore/go-criu/v8/crit/images/remap-file-path"
	rlimit "github.com/checkpoint-restore/go-criu/v8/crit/images/rlimit"
	seccomp "github.com/checkpoint-restore/go-criu/v8/crit/images/seccomp"
	siginfo "github.com/checkpoint-restore/go-criu/v8/crit/images/siginfo"
	signalfd "github.com/checkpoint-restore/go-criu/v8/crit/images/signalfd"
	sk_inet "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-inet"
	sk_netlink "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-netlink"
	sk_packet "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-packet"
	sk_unix "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-unix"
	stats "github.com/checkpoint-restore/go-criu/v8/crit/images/stats"
	tcp_stream "github.com/checkpoint-restore/go-criu/v8/crit/images/tcp-stream"
	timens "github.com/checkpoint-restore/go-criu/v8/crit/images/timens"
	timer "github.com/checkpoint-restore/go-criu/v8/crit/images/timer"
	timerfd "github.com/checkpoint-restore/go-criu/v8/crit/images/timerfd"
	tty "github.com/checkpoint-restore/go-criu/v8/crit/images/tty"
	tun "github.com/checkpoint-restore/go-criu/v8/crit/images/tun"
	userns "github.com/checkpoint-restore/go-criu/v8/crit/images/userns"
	utsns "github.com/checkpoint-restore/go-criu/v8/crit/images/utsns"
	vma "github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Kind is the framing family of an image file.
type Kind int

const (
	KindUnknown Kind = iota // name matches no CRIU pattern: kept as opaque bytes, never guessed
	KindProto               // head + size-prefixed protobuf entries (each maybe followed by an extra)
	KindPagemap             // head + pagemap_head + pagemap_entry...
	KindGhost               // head + ghost_file_entry + (content to EOF | ghost_chunk_entry+data ...)
	KindRaw                 // no magic: pages, tar.gz, iproute2/netlink dumps, iptables/nft text
)

func (k Kind) String() string {
	switch k {
	case KindProto:
		return "proto"
	case KindPagemap:
		return "pagemap"
	case KindGhost:
		return "ghost"
	case KindRaw:
		return "raw"
	}
	return "unknown"
}

// Extra says what follows each entry's payload.
type Extra int

const (
	ExtraNone      Extra = iota
	ExtraPipeData        // pipe_data_entry.bytes raw bytes (pipes-data, fifo-data)
	ExtraSkQueue         // sk_packet_entry.length raw bytes (sk-queues)
	ExtraTCPStream       // inq_len then outq_len bytes (tcp-stream)
	ExtraBPFMap          // keys_bytes then values_bytes (bpfmap-data)
	ExtraIPCSem          // nsems u16 values, padded to 8 bytes (ipcns-sem)
	ExtraIPCMsg          // qnum x (u32 size, ipc_msg, mtext padded to 8) (ipcns-msg)
	ExtraIPCShm          // legacy: segment bytes padded to 4; none when in_pagemaps (ipcns-shm)
	ExtraGhost           // ghost file content (raw to EOF, or per chunk)
)

var extraNames = [...]string{"none", "pipe-data", "sk-queue", "tcp-stream", "bpfmap", "ipc-sem", "ipc-msg", "ipc-shm", "ghost"}

func (e Extra) String() string {
	if int(e) < len(extraNames) {
		return extraNames[e]
	}
	return "?"
}

// RawFormat names the format of a raw (magic-less) image.
type RawFormat string

const (
	RawPages   RawFormat = "pages"   // concatenated pages (pages-%u.img)
	RawTarGz   RawFormat = "tar.gz"  // gzip'd tar of a tmpfs
	RawIPDump  RawFormat = "ip-dump" // `ip addr/route/rule save`: u32 magic + rtnetlink messages
	RawText    RawFormat = "text"    // iptables-save / ip6tables-save / nft list ruleset
	RawNetlink RawFormat = "netlink" // conntrack dump: raw nlmsghdr stream
	RawLegacy  RawFormat = "legacy"  // pre-1.x page images kept as bytes
)

// Head magics.
const (
	MagicImgCommon  uint32 = 0x54564319
	MagicImgService uint32 = 0x55105940
	MagicRaw        uint32 = 0
)

// Desc describes one image type of criu/image-desc.c.
type Desc struct {
	Name       string               // CRIU's CR_FD_ name without prefix, e.g. "CORE", "SHMEM_PAGEMAP", "TMPFS_DEV"
	Pattern    string               // file name pattern, e.g. "core-%u.img", "stats-%s"
	Magic      string               // magic name as in magic.h without _MAGIC (crit JSON "magic"); "" for raw
	MagicValue uint32               // type magic; 0 for raw
	Head       uint32               // MagicImgCommon, MagicImgService, or 0 (inventory: type magic only; raw: none)
	Kind       Kind                 //
	Extra      Extra                //
	Raw        RawFormat            // for KindRaw
	Legacy     bool                 // read by CRIU 4.x restore but never written by 4.x dumps
	New        func() proto.Message // message of the entries (of entries after the first for pagemap/ghost); nil for raw
	NewFirst   func() proto.Message // message of entry 0 when it differs (pagemap_head, ghost_file_entry)
}

// MessageFor returns a new empty message for entry i of an image of this type, nil for raw files.
func (d *Desc) MessageFor(i int) proto.Message {
	if d == nil || d.New == nil {
		return nil
	}
	if i == 0 && d.NewFirst != nil {
		return d.NewFirst()
	}
	return d.New()
}

func nw[T any, P interface {
	*T
	proto.Message
}]() func() proto.Message {
	return func() proto.Message { return P(new(T)) }
}

// descs is ordered: more specific patterns first where two could match the same name.
var descs = []*Desc{
	{Name: "INVENTORY", Pattern: "inventory.img", Magic: "INVENTORY", MagicValue: 0x58313116, Kind: KindProto, New: nw[inventory.InventoryEntry]()},
	{Name: "STATS", Pattern: "stats-%s", Magic: "STATS", MagicValue: 0x57093306, Head: MagicImgService, Kind: KindProto, New: nw[stats.StatsEntry]()},
	{Name: "IRMAP_CACHE", Pattern: "irmap-cache", Magic: "IRMAP_CACHE", MagicValue: 0x57004059, Head: MagicImgService, Kind: KindProto, New: nw[fh.IrmapCacheEntry]()},
	{Name: "FDINFO", Pattern: "fdinfo-%u.img", Magic: "FDINFO", MagicValue: 0x56213732, Kind: KindProto, New: nw[fdinfo.FdinfoEntry]()},
	{Name: "SHMEM_PAGEMAP", Pattern: "pagemap-shmem-%lu.img", Magic: "PAGEMAP", MagicValue: 0x56084025, Kind: KindPagemap, NewFirst: nw[pagemap.PagemapHead](), New: nw[pagemap.PagemapEntry]()},
	{Name: "PAGEMAP", Pattern: "pagemap-%lu.img", Magic: "PAGEMAP", MagicValue: 0x56084025, Kind: KindPagemap, NewFirst: nw[pagemap.PagemapHead](), New: nw[pagemap.PagemapEntry]()},
	{Name: "SHM_PAGES_OLD", Pattern: "pages-shmem-%ld.img", Kind: KindRaw, Raw: RawLegacy, Legacy: true},
	{Name: "PAGES", Pattern: "pages-%u.img", Kind: KindRaw, Raw: RawPages},
	{Name: "REG_FILES", Pattern: "reg-files.img", Magic: "REG_FILES", MagicValue: 0x50363636, Kind: KindProto, Legacy: true, New: nw[regfile.RegFileEntry]()},
	{Name: "EXT_FILES", Pattern: "ext-files.img", Magic: "EXT_FILES", MagicValue: 0x59255641, Kind: KindProto, Legacy: true, New: nw[ext_file.ExtFileEntry]()},
	{Name: "NS_FILES", Pattern: "ns-files.img", Magic: "NS_FILES", MagicValue: 0x61394011, Kind: KindProto, Legacy: true, New: nw[ns.NsFileEntry]()},
	{Name: "EVENTFD_FILE", Pattern: "eventfd.img", Magic: "EVENTFD_FILE", MagicValue: 0x44523722, Kind: KindProto, Legacy: true, New: nw[eventfd.EventfdFileEntry]()},
	{Name: "EVENTPOLL_FILE", Pattern: "eventpoll.img", Magic: "EVENTPOLL_FILE", MagicValue: 0x45023858, Kind: KindProto, Legacy: true, New: nw[eventpoll.EventpollFileEntry]()},
	{Name: "EVENTPOLL_TFD", Pattern: "eventpoll-tfd.img", Magic: "EVENTPOLL_TFD", MagicValue: 0x44433746, Kind: KindProto, Legacy: true, New: nw[eventpoll.EventpollTfdEntry]()},
	{Name: "SIGNALFD", Pattern: "signalfd.img", Magic: "SIGNALFD", MagicValue: 0x57323820, Kind: KindProto, Legacy: true, New: nw[signalfd.SignalfdEntry]()},
	{Name: "INOTIFY_FILE", Pattern: "inotify.img", Magic: "INOTIFY_FILE", MagicValue: 0x48424431, Kind: KindProto, Legacy: true, New: nw[fsnotify.InotifyFileEntry]()},
	{Name: "INOTIFY_WD", Pattern: "inotify-wd.img", Magic: "INOTIFY_WD", MagicValue: 0x54562009, Kind: KindProto, Legacy: true, New: nw[fsnotify.InotifyWdEntry]()},
	{Name: "FANOTIFY_FILE", Pattern: "fanotify.img", Magic: "FANOTIFY_FILE", MagicValue: 0x55096122, Kind: KindProto, Legacy: true, New: nw[fsnotify.FanotifyFileEntry]()},
	{Name: "FANOTIFY_MARK", Pattern: "fanotify-mark.img", Magic: "FANOTIFY_MARK", MagicValue: 0x56506035, Kind: KindProto, Legacy: true, New: nw[fsnotify.FanotifyMarkEntry]()},
	{Name: "CORE", Pattern: "core-%u.img", Magic: "CORE", MagicValue: 0x55053847, Kind: KindProto, New: nw[criu_core.CoreEntry]()},
	{Name: "IDS", Pattern: "ids-%u.img", Magic: "IDS", MagicValue: 0x54432030, Kind: KindProto, New: nw[criu_core.TaskKobjIdsEntry]()},
	{Name: "MM", Pattern: "mm-%u.img", Magic: "MM", MagicValue: 0x57492820, Kind: KindProto, New: nw[mm.MmEntry]()},
	{Name: "VMAS", Pattern: "vmas-%u.img", Magic: "VMAS", MagicValue: 0x54123737, Kind: KindProto, Legacy: true, New: nw[vma.VmaEntry]()},
	{Name: "PIPES", Pattern: "pipes.img", Magic: "PIPES", MagicValue: 0x56513555, Kind: KindProto, Legacy: true, New: nw[pipe.PipeEntry]()},
	{Name: "PIPES_DATA", Pattern: "pipes-data.img", Magic: "PIPES_DATA", MagicValue: 0x56453709, Kind: KindProto, Extra: ExtraPipeData, New: nw[pipe_data.PipeDataEntry]()},
	{Name: "FIFO", Pattern: "fifo.img", Magic: "FIFO", MagicValue: 0x58364939, Kind: KindProto, Legacy: true, New: nw[fifo.FifoEntry]()},
	{Name: "FIFO_DATA", Pattern: "fifo-data.img", Magic: "FIFO_DATA", MagicValue: 0x59333054, Kind: KindProto, Extra: ExtraPipeData, New: nw[pipe_data.PipeDataEntry]()},
	{Name: "PSTREE", Pattern: "pstree.img", Magic: "PSTREE", MagicValue: 0x50273030, Kind: KindProto, New: nw[pstree.PstreeEntry]()},
	{Name: "SIGACT", Pattern: "sigacts-%u.img", Magic: "SIGACT", MagicValue: 0x55344201, Kind: KindProto, Legacy: true, New: nw[criu_sa.SaEntry]()},
	{Name: "UNIXSK", Pattern: "unixsk.img", Magic: "UNIXSK", MagicValue: 0x54373943, Kind: KindProto, Legacy: true, New: nw[sk_unix.UnixSkEntry]()},
	{Name: "INETSK", Pattern: "inetsk.img", Magic: "INETSK", MagicValue: 0x56443851, Kind: KindProto, Legacy: true, New: nw[sk_inet.InetSkEntry]()},
	{Name: "PACKETSK", Pattern: "packetsk.img", Magic: "PACKETSK", MagicValue: 0x60454618, Kind: KindProto, Legacy: true, New: nw[packet_sock.PacketSockEntry]()},
	{Name: "NETLINK_SK", Pattern: "netlinksk.img", Magic: "NETLINK_SK", MagicValue: 0x58005614, Kind: KindProto, Legacy: true, New: nw[sk_netlink.NetlinkSkEntry]()},
	{Name: "SK_QUEUES", Pattern: "sk-queues.img", Magic: "SK_QUEUES", MagicValue: 0x56264026, Kind: KindProto, Extra: ExtraSkQueue, New: nw[sk_packet.SkPacketEntry]()},
	{Name: "ITIMERS", Pattern: "itimers-%u.img", Magic: "ITIMERS", MagicValue: 0x57464056, Kind: KindProto, Legacy: true, New: nw[timer.ItimerEntry]()},
	{Name: "POSIX_TIMERS", Pattern: "posix-timers-%u.img", Magic: "POSIX_TIMERS", MagicValue: 0x52603957, Kind: KindProto, Legacy: true, New: nw[timer.PosixTimerEntry]()},
	{Name: "CREDS", Pattern: "creds-%u.img", Magic: "CREDS", MagicValue: 0x54023547, Kind: KindProto, Legacy: true, New: nw[creds.CredsEntry]()},
	{Name: "UTSNS", Pattern: "utsns-%u.img", Magic: "UTSNS", MagicValue: 0x54473203, Kind: KindProto, New: nw[utsns.UtsnsEntry]()},
	{Name: "IPC_VAR", Pattern: "ipcns-var-%u.img", Magic: "IPC_VAR", MagicValue: 0x53115007, Kind: KindProto, New: nw[ipc_var.IpcVarEntry]()},
	{Name: "IPCNS_SHM", Pattern: "ipcns-shm-%u.img", Magic: "IPCNS_SHM", MagicValue: 0x46283044, Kind: KindProto, Extra: ExtraIPCShm, New: nw[ipc_shm.IpcShmEntry]()},
	{Name: "IPCNS_MSG", Pattern: "ipcns-msg-%u.img", Magic: "IPCNS_MSG", MagicValue: 0x55453737, Kind: KindProto, Extra: ExtraIPCMsg, New: nw[ipc_msg.IpcMsgEntry]()},
	{Name: "IPCNS_SEM", Pattern: "ipcns-sem-%u.img", Magic: "IPCNS_SEM", MagicValue: 0x59573019, Kind: KindProto, Extra: ExtraIPCSem, New: nw[ipc_sem.IpcSemEntry]()},
	{Name: "FS", Pattern: "fs-%u.img", Magic: "FS", MagicValue: 0x51403912, Kind: KindProto, New: nw[fs.FsEntry]()},
	{Name: "REMAP_FPATH", Pattern: "remap-fpath.img", Magic: "REMAP_FPATH", MagicValue: 0x59133954, Kind: KindProto, New: nw[remap_file_path.RemapFilePathEntry]()},
	{Name: "GHOST_FILE", Pattern: "ghost-file-%x.img", Magic: "GHOST_FILE", MagicValue: 0x52583605, Kind: KindGhost, Extra: ExtraGhost, NewFirst: nw[ghost_file.GhostFileEntry](), New: nw[ghost_file.GhostChunkEntry]()},
	{Name: "MEMFD_INODE", Pattern: "memfd.img", Magic: "MEMFD_INODE", MagicValue: 0x48453499, Kind: KindProto, New: nw[memfd.MemfdInodeEntry]()},
	{Name: "TCP_STREAM", Pattern: "tcp-stream-%x.img", Magic: "TCP_STREAM", MagicValue: 0x51465506, Kind: KindProto, Extra: ExtraTCPStream, New: nw[tcp_stream.TcpStreamEntry]()},
	{Name: "MNTS", Pattern: "mountpoints-%u.img", Magic: "MNTS", MagicValue: 0x55563928, Kind: KindProto, New: nw[mnt.MntEntry]()},
	{Name: "NETDEV", Pattern: "netdev-%u.img", Magic: "NETDEV", MagicValue: 0x57373951, Kind: KindProto, New: nw[netdev.NetDeviceEntry]()},
	{Name: "NETNF_CT", Pattern: "netns-ct-%u.img", Kind: KindRaw, Raw: RawNetlink},
	{Name: "NETNF_EXP", Pattern: "netns-exp-%u.img", Kind: KindRaw, Raw: RawNetlink},
	{Name: "NETNS", Pattern: "netns-%u.img", Magic: "NETNS", MagicValue: 0x55933752, Kind: KindProto, New: nw[netdev.NetnsEntry]()},
	{Name: "IFADDR", Pattern: "ifaddr-%u.img", Kind: KindRaw, Raw: RawIPDump},
	{Name: "ROUTE", Pattern: "route-%u.img", Kind: KindRaw, Raw: RawIPDump},
	{Name: "ROUTE6", Pattern: "route6-%u.img", Kind: KindRaw, Raw: RawIPDump},
	{Name: "RULE", Pattern: "rule-%u.img", Kind: KindRaw, Raw: RawIPDump},
	{Name: "IPTABLES", Pattern: "iptables-%u.img", Kind: KindRaw, Raw: RawText},
	{Name: "IP6TABLES", Pattern: "ip6tables-%u.img", Kind: KindRaw, Raw: RawText},
	{Name: "NFTABLES", Pattern: "nftables-%u.img", Kind: KindRaw, Raw: RawText},
	{Name: "TMPFS_DEV", Pattern: "tmpfs-dev-%u.tar.gz.img", Kind: KindRaw, Raw: RawTarGz},
	{Name: "TMPFS_IMG", Pattern: "tmpfs-%u.tar.gz.img", Kind: KindRaw, Raw: RawTarGz, Legacy: true},
	{Name: "AUTOFS", Pattern: "autofs-%u.img", Magic: "AUTOFS", MagicValue: 0x49353943, Kind: KindProto, New: nw[autofs.AutofsEntry]()},
	{Name: "BINFMT_MISC_OLD", Pattern: "binfmt-misc-%u.img", Magic: "BINFMT_MISC", MagicValue: 0x67343323, Kind: KindProto, Legacy: true, New: nw[binfmt_misc.BinfmtMiscEntry]()},
	{Name: "BINFMT_MISC", Pattern: "binfmt-misc.img", Magic: "BINFMT_MISC", MagicValue: 0x67343323, Kind: KindProto, New: nw[binfmt_misc.BinfmtMiscEntry]()},
	{Name: "TTY_FILES", Pattern: "tty.img", Magic: "TTY_FILES", MagicValue: 0x59433025, Kind: KindProto, Legacy: true, New: nw[tty.TtyFileEntry]()},
	{Name: "TTY_INFO", Pattern: "tty-info.img", Magic: "TTY_INFO", MagicValue: 0x59453036, Kind: KindProto, New: nw[tty.TtyInfoEntry]()},
	{Name: "TTY_DATA", Pattern: "tty-data.img", Magic: "TTY_DATA", MagicValue: 0x59413026, Kind: KindProto, New: nw[tty.TtyDataEntry]()},
	{Name: "FILE_LOCKS", Pattern: "filelocks.img", Magic: "FILE_LOCKS", MagicValue: 0x54323616, Kind: KindProto, New: nw[file_lock.FileLockEntry]()},
	{Name: "RLIMIT", Pattern: "rlimit-%u.img", Magic: "RLIMIT", MagicValue: 0x57113925, Kind: KindProto, Legacy: true, New: nw[rlimit.RlimitEntry]()},
	{Name: "SIGNAL", Pattern: "signal-s-%u.img", Magic: "SIGNAL", MagicValue: 0x59255647, Kind: KindProto, Legacy: true, New: nw[siginfo.SiginfoEntry]()},
	{Name: "PSIGNAL", Pattern: "signal-p-%u.img", Magic: "SIGNAL", MagicValue: 0x59255647, Kind: KindProto, Legacy: true, New: nw[siginfo.SiginfoEntry]()},
	{Name: "TUNFILE", Pattern: "tunfile.img", Magic: "TUNFILE", MagicValue: 0x57143751, Kind: KindProto, Legacy: true, New: nw[tun.TunfileEntry]()},
	{Name: "CGROUP", Pattern: "cgroup.img", Magic: "CGROUP", MagicValue: 0x59383330, Kind: KindProto, New: nw[cgroup.CgroupEntry]()},
	{Name: "TIMERFD", Pattern: "timerfd.img", Magic: "TIMERFD", MagicValue: 0x50493712, Kind: KindProto, Legacy: true, New: nw[timerfd.TimerfdEntry]()},
	{Name: "CPUINFO", Pattern: "cpuinfo.img", Magic: "CPUINFO", MagicValue: 0x61404013, Kind: KindProto, New: nw[cpuinfo.CpuinfoEntry]()},
	{Name: "SECCOMP", Pattern: "seccomp.img", Magic: "SECCOMP", MagicValue: 0x64413049, Kind: KindProto, New: nw[seccomp.SeccompEntry]()},
	{Name: "USERNS", Pattern: "userns-%u.img", Magic: "USERNS", MagicValue: 0x55474906, Kind: KindProto, New: nw[userns.UsernsEntry]()},
	{Name: "FILES", Pattern: "files.img", Magic: "FILES", MagicValue: 0x56303138, Kind: KindProto, New: nw[fdinfo.FileEntry]()},
	{Name: "TIMENS", Pattern: "timens-%u.img", Magic: "TIMENS", MagicValue: 0x43114433, Kind: KindProto, New: nw[timens.TimensEntry]()},
	{Name: "PIDNS", Pattern: "pidns-%u.img", Magic: "PIDNS", MagicValue: 0x61157326, Kind: KindProto, New: nw[pidns.PidnsEntry]()},
	{Name: "BPFMAP_FILE", Pattern: "bpfmap-file.img", Magic: "BPFMAP_FILE", MagicValue: 0x57506142, Kind: KindProto, Legacy: true, New: nw[bpfmap_file.BpfmapFileEntry]()},
	{Name: "BPFMAP_DATA", Pattern: "bpfmap-data.img", Magic: "BPFMAP_DATA", MagicValue: 0x64324033, Kind: KindProto, Extra: ExtraBPFMap, New: nw[bpfmap_data.BpfmapDataEntry]()},
	{Name: "APPARMOR", Pattern: "apparmor.img", Magic: "APPARMOR", MagicValue: 0x59423047, Kind: KindProto, New: nw[apparmor.ApparmorEntry]()},
	{Name: "PIDFD", Pattern: "pidfd.img", Magic: "PIDFD", MagicValue: 0x54435556, Kind: KindProto, Legacy: true, New: nw[pidfd.PidfdEntry]()},
}

// descsByFirst holds, for each first byte of a file name, the descs (in table order) whose
// pattern can match such a name: Classify then tries a handful of patterns instead of all.
var descsByFirst [256][]*Desc

func init() {
	for _, d := range descs {
		if d.Kind != KindRaw && d.Head == 0 && d.Name != "INVENTORY" {
			d.Head = MagicImgCommon
		}
	}
	for _, d := range descs { // table order is kept within each list
		if d.Pattern != "" && d.Pattern[0] != '%' {
			descsByFirst[d.Pattern[0]] = append(descsByFirst[d.Pattern[0]], d)
			continue
		}
		for c := range descsByFirst { // (no such pattern today) could match any first byte
			descsByFirst[c] = append(descsByFirst[c], d)
		}
	}
}

// Descs returns every known image type (a copy of the table; the *Desc values are shared, don't modify them).
func Descs() []*Desc { return append([]*Desc(nil), descs...) }

// DescByName returns the Desc whose Name (CR_FD_ name, e.g. "CORE", "PAGES") is name.
func DescByName(name string) *Desc {
	for _, d := range descs {
		if d.Name == name {
			return d
		}
	}
	return nil
}

// DescsByMagic returns the protobuf image types using the magic name (crit JSON "magic", e.g. "PAGEMAP"
// gives PAGEMAP and SHMEM_PAGEMAP). Legacy types come last.
func DescsByMagic(magic string) []*Desc {
	var out []*Desc
	for _, d := range descs {
		if d.Magic == magic {
			out = append(out, d)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return !out[i].Legacy && out[j].Legacy })
	return out
}

// MagicName returns the magic.h name of a type or head magic value ("" if unknown).
func MagicName(v uint32) string {
	switch v {
	case MagicImgCommon:
		return "IMG_COMMON"
	case MagicImgService:
		return "IMG_SERVICE"
	}
	for _, d := range descs {
		if d.MagicValue == v && v != 0 {
			return d.Magic
		}
	}
	return ""
}

// Classify finds the image type of a file from its base name (raw files have no magic, so the name
// decides). It returns ErrUnknownImage for names no CRIU version writes (logs, plugin images, ...).
func Classify(name string) (*Desc, error) {
	base := filepath.Base(name)
	for _, d := range descsByFirst[base[0]] { // filepath.Base never returns ""
		if matchPattern(d.Pattern, base) {
			return d, nil
		}
	}
	return nil, fmt.Errorf("%w: %q matches no CRIU image name", ErrUnknownImage, base)
}

// matchPattern matches a printf-like CRIU name pattern: %u %lu (decimal), %d %ld (optionally signed
// decimal), %x (hex), %s (any non-empty string without '/').
func matchPattern(pat, s string) bool {
	for len(pat) > 0 {
		i := strings.IndexByte(pat, '%')
		if i < 0 {
			return pat == s
		}
		if !strings.HasPrefix(s, pat[:i]) {
			return false
		}
		s = s[i:]
		pat = pat[i+1:]
		verb := pat[0]
		if verb == 'l' {
			pat = pat[1:]
			verb = pat[0]
		}
		pat = pat[1:]
		rest := pat // literal that follows up to next % determines the end; our patterns have a literal suffix
		var n int
		switch verb {
		case 'u', 'd':
			if verb == 'd' && strings.HasPrefix(s, "-") {
				n = 1
			}
			j := n
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			if j == n {
				return false
			}
			n = j
		case 'x':
			j := 0
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] >= 'a' && s[j] <= 'f') {
				j++
			}
			if j == 0 {
				return false
			}
			n = j
		case 's':
			// %s is only used as the last element ("stats-%s").
			if rest != "" || s == "" || strings.ContainsRune(s, '/') {
				return false
			}
			return true
		default:
			return false
		}
		s = s[n:]
	}
	return s == ""
}

// msgNames caches, per Desc, the full protobuf names of its entry messages: checking an entry's
// type then costs no allocation (MessageFor makes a new message).
var msgNames sync.Map // *Desc -> *[2]protoreflect.FullName{first, rest}

// messageName returns the full name of the message of entry i ("" for raw files).
func (d *Desc) messageName(i int) protoreflect.FullName {
	if d == nil || d.New == nil {
		return ""
	}
	v, ok := msgNames.Load(d)
	if !ok {
		var n [2]protoreflect.FullName
		n[1] = d.New().ProtoReflect().Descriptor().FullName()
		n[0] = n[1]
		if d.NewFirst != nil {
			n[0] = d.NewFirst().ProtoReflect().Descriptor().FullName()
		}
		v, _ = msgNames.LoadOrStore(d, &n)
	}
	n := v.(*[2]protoreflect.FullName)
	if i == 0 {
		return n[0]
	}
	return n[1]
}
