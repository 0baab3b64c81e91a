package main

import (
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weirnet/weir/daemon/enroll/enrollpb"
)

// podLink is what weir learns about the pod's interface from the kernel.
type podLink struct {
	// netnsInode identifies the network namespace to the eBPF side, which
	// sees it as the inode of the task's net ns.
	netnsInode uint64
	// ifIndex is the pod-side interface index inside the pod's netns.
	ifIndex int
	// hostVeth and hostVethIndex name the host-side peer when the pod-side
	// interface is a veth whose peer lives in the host netns; empty and 0
	// otherwise (macvlan, ipvlan, a peer in another netns).
	hostVeth      string
	hostVethIndex int
	// note says why hostVeth is empty, for the log; "" when found.
	note string
}

// netnsInode returns the inode of the network namespace file at path: the
// kernel's identifier of that namespace.
func netnsInode(path string) (uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("stat netns %s: %w", path, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("stat netns %s: no inode in %T", path, fi.Sys())
	}
	return st.Ino, nil
}

// inspectPodLink finds ifName inside the netns at netnsPath and, for a veth,
// its host-side peer. It asks netlink rather than reading /sys, because
// /sys/class/net shows the netns of whoever mounted /sys, not the netns the
// thread is in.
func inspectPodLink(netnsPath, ifName string) (podLink, error) {
	var pl podLink
	ino, err := netnsInode(netnsPath)
	if err != nil {
		return pl, err
	}
	pl.netnsInode = ino

	err = ns.WithNetNSPath(netnsPath, func(hostNS ns.NetNS) error {
		link, err := netlink.LinkByName(ifName)
		if err != nil {
			return fmt.Errorf("find interface %q in netns %s: %w", ifName, netnsPath, err)
		}
		pl.ifIndex = link.Attrs().Index

		veth, ok := link.(*netlink.Veth)
		if !ok {
			pl.note = fmt.Sprintf("pod interface is a %s, not a veth", link.Type())
			return nil
		}
		// IFLA_LINK_NETNSID says which netns holds the peer, as an id
		// local to the pod's netns; the kernel assigns one while dumping
		// the link, so a peer in the host netns always has the host's id.
		if peerNS := veth.Attrs().NetNsID; peerNS >= 0 {
			if hostID, err := netlink.GetNetNsIdByFd(int(hostNS.Fd())); err == nil && hostID != peerNS {
				pl.note = fmt.Sprintf("veth peer is in netns id %d, the host netns is id %d", peerNS, hostID)
				return nil
			}
		}
		// IFLA_LINK of a veth is its peer's index in the peer's netns.
		// Fall back to the ethtool statistic when the kernel omitted it.
		peerIndex := veth.Attrs().ParentIndex
		if peerIndex == 0 {
			if peerIndex, err = netlink.VethPeerIndex(veth); err != nil {
				return fmt.Errorf("find veth peer of %q in netns %s: %w", ifName, netnsPath, err)
			}
		}
		return hostNS.Do(func(ns.NetNS) error {
			peer, err := netlink.LinkByIndex(peerIndex)
			if err != nil {
				// The peer is not in the host netns (veth to another
				// pod, or it already went away): nothing to attach to.
				pl.note = fmt.Sprintf("veth peer index %d not in the host netns: %v", peerIndex, err)
				return nil
			}
			// An index is only unique per netns: make sure the host link
			// with that index really is our peer before trusting it.
			if _, isVeth := peer.(*netlink.Veth); !isVeth || peer.Attrs().ParentIndex != pl.ifIndex {
				pl.note = fmt.Sprintf("host link %q (index %d) is not the peer of pod interface %q (index %d)",
					peer.Attrs().Name, peerIndex, ifName, pl.ifIndex)
				return nil
			}
			pl.hostVeth = peer.Attrs().Name
			pl.hostVethIndex = peerIndex
			return nil
		})
	})
	return pl, err
}

// podIPs returns the addresses from the main plugin's result that belong to
// the pod-side interface ifName. Results that do not link IPs to interfaces
// (or link none to ifName) fall back to every address in the result.
func podIPs(res *current.Result, ifName string) []*enrollpb.IPConfig {
	var own, all []*enrollpb.IPConfig
	for _, ip := range res.IPs {
		if ip == nil {
			continue
		}
		c := &enrollpb.IPConfig{Address: ip.Address.String()}
		if ip.Gateway != nil {
			c.Gateway = ip.Gateway.String()
		}
		all = append(all, c)
		if ip.Interface == nil {
			continue
		}
		i := *ip.Interface
		if i >= 0 && i < len(res.Interfaces) && res.Interfaces[i].Name == ifName && res.Interfaces[i].Sandbox != "" {
			own = append(own, c)
		}
	}
	if len(own) > 0 {
		return own
	}
	return all
}

// sameAddresses reports whether a and b hold the same set of CIDR addresses,
// compared by value (so "fd00::5/64" equals "fd00:0::5/64").
func sameAddresses(a, b []*enrollpb.IPConfig) (bool, error) {
	norm := func(cs []*enrollpb.IPConfig) (map[string]bool, error) {
		set := make(map[string]bool, len(cs))
		for _, c := range cs {
			ipn, err := types.ParseCIDR(c.GetAddress())
			if err != nil {
				return nil, fmt.Errorf("address %q: %w", c.GetAddress(), err)
			}
			set[(&net.IPNet{IP: ipn.IP, Mask: ipn.Mask}).String()] = true
		}
		return set, nil
	}
	sa, err := norm(a)
	if err != nil {
		return false, err
	}
	sb, err := norm(b)
	if err != nil {
		return false, err
	}
	if len(sa) != len(sb) {
		return false, nil
	}
	for k := range sa {
		if !sb[k] {
			return false, nil
		}
	}
	return true, nil
}

func addressList(cs []*enrollpb.IPConfig) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.GetAddress())
	}
	return out
}
