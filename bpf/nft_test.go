package bpf

import (
	"encoding/binary"
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// nftAcceptChains registers empty accept-all nftables base chains on the
// IPv4 PRE_ROUTING and LOCAL_IN hooks of the calling thread's network
// namespace, so every packet received there passes nf_hook_slow twice
// without being changed. It speaks nfnetlink directly: the tests/kernels
// guest has no nft or iptables binary (only the nf_tables module, when
// WEIR_KERNEL_MODULES names it). The table goes with the namespace.
func nftAcceptChains() error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("nfnetlink socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}

	const (
		subsys   = unix.NFNL_SUBSYS_NFTABLES
		newTable = subsys<<8 | unix.NFT_MSG_NEWTABLE
		newChain = subsys<<8 | unix.NFT_MSG_NEWCHAIN
		create   = unix.NLM_F_REQUEST | unix.NLM_F_CREATE | unix.NLM_F_ACK
		table    = "weir_test"
	)
	chain := func(name string, hook uint32) []byte {
		return cat(
			nlAttr(unix.NFTA_CHAIN_TABLE, cstr(table)),
			nlAttr(unix.NFTA_CHAIN_NAME, cstr(name)),
			nlAttr(unix.NFTA_CHAIN_HOOK|unix.NLA_F_NESTED, cat(
				nlAttr(unix.NFTA_HOOK_HOOKNUM, be32(hook)),
				nlAttr(unix.NFTA_HOOK_PRIORITY, be32(0)))),
			nlAttr(unix.NFTA_CHAIN_POLICY, be32(1 /* NF_ACCEPT */)),
			nlAttr(unix.NFTA_CHAIN_TYPE, cstr("filter")))
	}
	batch := cat(
		nlMsg(unix.NFNL_MSG_BATCH_BEGIN, unix.NLM_F_REQUEST, 1, unix.AF_UNSPEC, subsys, nil),
		nlMsg(newTable, create, 2, unix.NFPROTO_IPV4, 0, nlAttr(unix.NFTA_TABLE_NAME, cstr(table))),
		nlMsg(newChain, create, 3, unix.NFPROTO_IPV4, 0, chain("pre", unix.NF_INET_PRE_ROUTING)),
		nlMsg(newChain, create, 4, unix.NFPROTO_IPV4, 0, chain("in", unix.NF_INET_LOCAL_IN)),
		nlMsg(unix.NFNL_MSG_BATCH_END, unix.NLM_F_REQUEST, 5, unix.AF_UNSPEC, subsys, nil),
	)
	if err := unix.Sendto(fd, batch, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("send nftables batch: %w", err)
	}
	acked := map[uint32]bool{}
	buf := make([]byte, 1<<16)
	for len(acked) < 3 {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("nftables replies (%d of 3 acked): %w", len(acked), err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			if errno := int32(binary.LittleEndian.Uint32(m.Data)); errno != 0 {
				return fmt.Errorf("nftables message %d: %w", m.Header.Seq, unix.Errno(-errno))
			}
			acked[m.Header.Seq] = true
		}
	}
	return nil
}

// nlMsg is one netlink message with an nfgenmsg header.
func nlMsg(typ, flags uint16, seq uint32, family uint8, resID uint16, attrs []byte) []byte {
	b := make([]byte, unix.NLMSG_HDRLEN+4, unix.NLMSG_HDRLEN+4+len(attrs))
	binary.LittleEndian.PutUint16(b[4:], typ)
	binary.LittleEndian.PutUint16(b[6:], flags)
	binary.LittleEndian.PutUint32(b[8:], seq)
	b[16] = family // nfgenmsg: family, version 0, res_id (big endian)
	binary.BigEndian.PutUint16(b[18:], resID)
	b = append(b, attrs...)
	binary.LittleEndian.PutUint32(b, uint32(len(b)))
	return b
}

// nlAttr is one netlink attribute, padded to 4 bytes.
func nlAttr(typ uint16, payload []byte) []byte {
	b := make([]byte, 4, 4+len(payload)+3)
	binary.LittleEndian.PutUint16(b, uint16(4+len(payload)))
	binary.LittleEndian.PutUint16(b[2:], typ)
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func cstr(s string) []byte { return append([]byte(s), 0) }

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
