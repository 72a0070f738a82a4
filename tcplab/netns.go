package tcplab

import (
	"fmt"
	"github.com/criukit/criukit/internal/nsrun"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// side is one half of the topology: a fresh netns with a TUN device.
type side struct {
	ns    netns.NsHandle
	tun   int // non-blocking TUN fd
	addr  netip.Addr
	ll    netip.Addr // IPv6 link-local address (fe80::1 or ::2), IPv6 labs only
	index int        // ifindex of tl0
}

var sysctlsBase = map[string]string{
	"net/ipv4/tcp_early_retrans":         "0",
	"net/ipv4/tcp_recovery":              "0",
	"net/ipv4/tcp_frto":                  "0",
	"net/ipv4/tcp_autocorking":           "0",
	"net/ipv4/tcp_moderate_rcvbuf":       "0",
	"net/ipv4/tcp_slow_start_after_idle": "0",
	"net/ipv4/tcp_ecn":                   "0",
	"net/ipv4/tcp_no_metrics_save":       "1",
	"net/ipv4/tcp_comp_sack_nr":          "0",
	"net/ipv4/tcp_plb_enabled":           "0",
	"net/ipv4/tcp_mtu_probing":           "0",
	"net/ipv4/tcp_shrink_window":         "0",
	"net/ipv4/tcp_limit_output_bytes":    "67108864", // no TSQ throttling: bursts leave synchronously
	"net/ipv4/tcp_invalid_ratelimit":     "0",        // dup ACKs to out-of-window segments (REPAIR_OFF probes) always sent
	"net/ipv4/tcp_challenge_ack_limit":   "1000000",
	"net/ipv6/conf/all/accept_ra":        "0",
	"net/ipv6/conf/default/accept_ra":    "0",
	"net/ipv6/conf/all/disable_ipv6":     "0",
}

func writeSysctl(name, val string) error {
	if err := os.WriteFile("/proc/sys/"+name, []byte(val), 0); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(name, "/", "."), val, err)
	}
	return nil
}

type ifreq struct {
	name  [unix.IFNAMSIZ]byte
	flags uint16
	_     [22]byte
}

// newSide creates a netns with TUN "tl0" holding addr/prefix, tuned by the sysctls and route
// options of the determinism recipe.
func newSide(addr netip.Addr, o *Options) (*side, error) {
	s := &side{tun: -1, addr: addr}
	if err := nsrun.InNew(func() error { return s.setup(o) }); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *side) setup(o *Options) error {
	var err error
	if s.ns, err = netns.Get(); err != nil {
		return err
	}
	ctl := map[string]string{}
	for k, v := range sysctlsBase {
		ctl[k] = v
	}
	ctl["net/ipv4/tcp_timestamps"] = b01(o.Timestamps)
	ctl["net/ipv4/tcp_ecn"] = b01(o.ECN)
	ctl["net/ipv4/tcp_sack"] = b01(!o.NoSack)
	ctl["net/ipv4/tcp_window_scaling"] = b01(!o.NoWscale)
	ctl["net/ipv4/tcp_rto_min_us"] = fmt.Sprint(o.RTO.Microseconds())
	ctl["net/ipv4/tcp_rto_max_ms"] = fmt.Sprint(max(1000, o.RTO.Milliseconds()))
	for k, v := range ctl {
		if err := writeSysctl(k, v); err != nil {
			return err
		}
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("open /dev/net/tun: %w", err)
	}
	s.tun = fd
	var req ifreq
	copy(req.name[:], "tl0")
	req.flags = unix.IFF_TUN | unix.IFF_NO_PI
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req))); e != 0 {
		return fmt.Errorf("TUNSETIFF: %w", e)
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err == nil {
		_ = h.LinkSetUp(lo)
	}
	link, err := h.LinkByName("tl0")
	if err != nil {
		return err
	}
	bits := 24
	flags := 0
	if s.addr.Is6() {
		bits, flags = 64, unix.IFA_F_NODAD
	}
	pfx := netip.PrefixFrom(s.addr, bits)
	ipn := &net.IPNet{IP: net.IP(s.addr.AsSlice()), Mask: net.CIDRMask(bits, s.addr.BitLen())}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipn, Flags: flags}); err != nil {
		return fmt.Errorf("addr add %v: %w", pfx, err)
	}
	s.index = link.Attrs().Index
	if s.addr.Is6() { // a link-local address too (case M02)
		b := s.addr.As16()
		s.ll = netip.AddrFrom16([16]byte{0xfe, 0x80, 15: b[15]})
		lln := &net.IPNet{IP: net.IP(s.ll.AsSlice()), Mask: net.CIDRMask(64, 128)}
		if err := h.AddrAdd(link, &netlink.Addr{IPNet: lln, Flags: unix.IFA_F_NODAD}); err != nil {
			return fmt.Errorf("addr add %v: %w", s.ll, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return err
	}
	// The noqueue qdisc makes transmission synchronous, never deferred to a softirq (which
	// made bursts interleave with replies at random). TUN's ring keeps txqueuelen packets.
	q := &netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: link.Attrs().Index, Parent: netlink.HANDLE_ROOT},
		QdiscType: "noqueue"}
	if err := h.QdiscReplace(q); err != nil {
		return fmt.Errorf("qdisc replace noqueue: %w", err)
	}
	dst := &net.IPNet{IP: net.IP(pfx.Masked().Addr().AsSlice()), Mask: ipn.Mask}
	rt := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK,
		QuickACK: b2i(!o.NoQuickack), RtoMin: int(o.RTO.Milliseconds()), Protocol: unix.RTPROT_KERNEL}
	if s.addr.Is6() {
		rt.Priority = 256
		rt.Scope = netlink.SCOPE_UNIVERSE
	} else {
		rt.Src = net.IP(s.addr.AsSlice())
	}
	if err := h.RouteReplace(rt); err != nil {
		return fmt.Errorf("route replace %v quickack 1 rto_min %v: %w", pfx.Masked(), o.RTO, err)
	}
	// IPv6 installs the local route of a NODAD address from a workqueue: wait for it, or the
	// first packets are dropped on input.
	for i := 0; ; i++ {
		rs, err := h.RouteGet(net.IP(s.addr.AsSlice()))
		ok := err == nil && len(rs) > 0 && rs[0].Type == unix.RTN_LOCAL
		if ok && s.ll.IsValid() {
			rs, err = h.RouteGet(net.IP(s.ll.AsSlice()))
			ok = err == nil && len(rs) > 0 && rs[0].Type == unix.RTN_LOCAL
		}
		if ok {
			return nil
		}
		if i == 2000 {
			return fmt.Errorf("local route of %v did not appear", s.addr)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func b01(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func (s *side) close() {
	if s.tun >= 0 {
		unix.Close(s.tun)
		s.tun = -1
	}
	if s.ns.IsOpen() {
		s.ns.Close()
	}
}

// readNetstat returns the TcpExt and Tcp counters of the side's netns.
func (s *side) readNetstat() (map[string]int64, error) {
	out := map[string]int64{}
	err := nsrun.Do(s.ns, func() error {
		for _, f := range []string{"/proc/thread-self/net/netstat", "/proc/thread-self/net/snmp"} {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			lines := strings.Split(string(b), "\n")
			for i := 0; i+1 < len(lines); i += 2 {
				h, v := strings.Fields(lines[i]), strings.Fields(lines[i+1])
				if len(h) != len(v) || len(h) == 0 {
					continue
				}
				pfx := strings.TrimSuffix(h[0], ":")
				if pfx != "TcpExt" && pfx != "Tcp" {
					continue
				}
				for j := 1; j < len(h); j++ {
					var n int64
					fmt.Sscan(v[j], &n)
					out[pfx+h[j]] = n
				}
			}
		}
		return nil
	})
	return out, err
}

// rmemMax is net.ipv4.tcp_rmem[2] of the side's netns: the largest receive buffer an
// autotuned socket can reach (6 MiB by default; 0 if unreadable).
func (s *side) rmemMax() int {
	n := 0
	_ = nsrun.Do(s.ns, func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_rmem")
		if err != nil {
			return err
		}
		if f := strings.Fields(string(b)); len(f) == 3 {
			fmt.Sscan(f[2], &n)
		}
		return nil
	})
	return n
}
