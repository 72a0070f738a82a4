package soccr

import (
	"encoding/binary"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// deleteNftTable deletes the nftables table "inet name" of the caller's netns (what `nft delete
// table inet NAME` does; there is no nft binary here). It stands for CRIU's network unlock in
// a migration where soccr, not CRIU, restores the socket. ENOENT means no such table.
func deleteNftTable(name string) error { return deleteNftTableFamily(name, unix.NFPROTO_INET) }

// listNftTables returns "family name" of every nftables table of the caller's netns.
func listNftTables() (map[string]uint8, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	ne := binary.NativeEndian
	req := make([]byte, 20)
	ne.PutUint32(req[0:], 20)
	ne.PutUint16(req[4:], 10<<8|1) // NFT_MSG_GETTABLE
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], 1)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	out := map[string]uint8{}
	buf := make([]byte, 65536)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, err
		}
		for b := buf[:n]; len(b) >= 16; {
			l := int(ne.Uint32(b[0:]))
			if l < 16 || l > len(b) {
				return out, nil
			}
			switch ne.Uint16(b[4:]) {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				return out, fmt.Errorf("nft list tables: errno %d", -int32(ne.Uint32(b[16:])))
			}
			fam := b[16]
			for a := b[20:l]; len(a) >= 4; {
				al := int(ne.Uint16(a[0:]))
				if al < 4 || al > len(a) {
					break
				}
				if ne.Uint16(a[2:])&0x7fff == 1 {
					v := a[4:al]
					if len(v) > 0 && v[len(v)-1] == 0 {
						v = v[:len(v)-1]
					}
					out[string(v)] = fam
				}
				a = a[(al+3)&^3:]
			}
			b = b[(l+3)&^3:]
		}
	}
}

func deleteNftTableFamily(name string, family uint8) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	ne := binary.NativeEndian
	msg := func(typ uint16, flags uint16, seq uint32, family uint8, resID uint16, attrs []byte) []byte {
		b := make([]byte, 16+4, 16+4+len(attrs))
		b = append(b, attrs...)
		ne.PutUint32(b[0:], uint32(len(b)))
		ne.PutUint16(b[4:], typ)
		ne.PutUint16(b[6:], flags)
		ne.PutUint32(b[8:], seq)
		b[16] = family
		binary.BigEndian.PutUint16(b[18:], resID)
		return b
	}
	nameAttr := func(s string) []byte {
		v := append([]byte(s), 0)
		l := 4 + len(v)
		a := make([]byte, (l+3)&^3)
		ne.PutUint16(a[0:], uint16(l))
		ne.PutUint16(a[2:], 1) // NFTA_TABLE_NAME
		copy(a[4:], v)
		return a
	}
	const subsys = 10 // NFNL_SUBSYS_NFTABLES
	var batch []byte
	batch = append(batch, msg(0x10, unix.NLM_F_REQUEST, 1, unix.AF_UNSPEC, subsys, nil)...)
	batch = append(batch, msg(subsys<<8|2, unix.NLM_F_REQUEST|unix.NLM_F_ACK, 2, family, 0, nameAttr(name))...)
	batch = append(batch, msg(0x11, unix.NLM_F_REQUEST, 3, unix.AF_UNSPEC, subsys, nil)...)
	if err := unix.Sendto(fd, batch, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 8192)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return err
	}
	for b := buf[:n]; len(b) >= 16; {
		l := int(ne.Uint32(b[0:]))
		if l < 16 || l > len(b) {
			break
		}
		if ne.Uint16(b[4:]) == unix.NLMSG_ERROR && l >= 20 {
			if e := int32(ne.Uint32(b[16:])); e != 0 {
				return fmt.Errorf("nft delete table inet %s: %w", name, unix.Errno(-e))
			}
		}
		b = b[(l+3)&^3:]
	}
	return nil
}

func unlockCRIU() error {
	tables, err := listNftTables()
	if err != nil {
		return err
	}
	var deleted bool
	for name, fam := range tables {
		if strings.HasPrefix(name, "CRIU") {
			if err := deleteNftTableFamily(name, fam); err != nil {
				return err
			}
			deleted = true
		}
	}
	if !deleted {
		return fmt.Errorf("no CRIU nftables table among %v", tables)
	}
	return nil
}
