// Package podlink reads a pod attachment's network identity from the
// kernel: the inode of its network namespace, the pod-side interface index
// and the host-side veth peer. The CNI plugin uses it during ADD, and
// weir-daemon when it repairs an enrollment the plugin never delivered.
//
// It lives in the module's internal tree, not under daemon/, because the
// per-pod plugin binary must not import the daemon; and not under enrollapi,
// because it is shared code that fills the contract's fields, not the
// contract.
package podlink

import (
	"fmt"
	"os"
	"syscall"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weirnet/weir/enrollapi/enrollpb"
)

// Link is what weir learns about the pod's interface from the kernel.
type Link struct {
	// netnsInode identifies the network namespace to the eBPF side, which
	// sees it as the inode of the task's net ns.
	NetnsInode uint64
	// ifIndex is the pod-side interface index inside the pod's netns.
	IfIndex int
	// hostVeth and hostVethIndex name the host-side peer when the pod-side
	// interface is a veth whose peer lives in the host netns; empty and 0
	// otherwise (macvlan, ipvlan, a peer in another netns).
	HostVeth      string
	HostVethIndex int
	// note says why hostVeth is empty, for the log; "" when found.
	Note string
}

// NetnsInode returns the inode of the network namespace file at path: the
// kernel's identifier of that namespace.
func NetnsInode(path string) (uint64, error) {
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

// Inspect finds ifName inside the netns at netnsPath and, for a veth,
// its host-side peer. It asks netlink rather than reading /sys, because
// /sys/class/net shows the netns of whoever mounted /sys, not the netns the
// thread is in.
func Inspect(netnsPath, ifName string) (Link, error) {
	var pl Link
	ino, err := NetnsInode(netnsPath)
	if err != nil {
		return pl, err
	}
	pl.NetnsInode = ino

	err = ns.WithNetNSPath(netnsPath, func(hostNS ns.NetNS) error {
		link, err := netlink.LinkByName(ifName)
		if err != nil {
			return fmt.Errorf("find interface %q in netns %s: %w", ifName, netnsPath, err)
		}
		pl.IfIndex = link.Attrs().Index

		veth, ok := link.(*netlink.Veth)
		if !ok {
			pl.Note = fmt.Sprintf("pod interface is a %s, not a veth", link.Type())
			return nil
		}
		// IFLA_LINK_NETNSID says which netns holds the peer, as an id
		// local to the pod's netns; the kernel assigns one while dumping
		// the link, so a peer in the host netns always has the host's id.
		if peerNS := veth.Attrs().NetNsID; peerNS >= 0 {
			if hostID, err := netlink.GetNetNsIdByFd(int(hostNS.Fd())); err == nil && hostID != peerNS {
				pl.Note = fmt.Sprintf("veth peer is in netns id %d, the host netns is id %d", peerNS, hostID)
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
				pl.Note = fmt.Sprintf("veth peer index %d not in the host netns: %v", peerIndex, err)
				return nil
			}
			// An index is only unique per netns: make sure the host link
			// with that index really is our peer before trusting it.
			if _, isVeth := peer.(*netlink.Veth); !isVeth || peer.Attrs().ParentIndex != pl.IfIndex {
				pl.Note = fmt.Sprintf("host link %q (index %d) is not the peer of pod interface %q (index %d)",
					peer.Attrs().Name, peerIndex, ifName, pl.IfIndex)
				return nil
			}
			pl.HostVeth = peer.Attrs().Name
			pl.HostVethIndex = peerIndex
			return nil
		})
	})
	return pl, err
}

// PodIPs returns the addresses from the main plugin's result that belong to
// the pod-side interface ifName. Results that do not link IPs to interfaces
// (or link none to ifName) fall back to every address in the result.
func PodIPs(res *current.Result, ifName string) []*enrollpb.IPConfig {
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
