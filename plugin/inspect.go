package main

import (
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/weirnet/weir/enrollapi/enrollpb"
	"github.com/weirnet/weir/internal/podlink"
)

// podLink is what weir learns about the pod's interface from the kernel
// (see package podlink).
type podLink struct {
	netnsInode    uint64
	ifIndex       int
	hostVeth      string
	hostVethIndex int
	note          string
}

func inspectPodLink(netnsPath, ifName string) (podLink, error) {
	l, err := podlink.Inspect(netnsPath, ifName)
	return podLink{
		netnsInode: l.NetnsInode, ifIndex: l.IfIndex, hostVeth: l.HostVeth, hostVethIndex: l.HostVethIndex, note: l.Note,
	}, err
}

// podIPs returns the addresses from the main plugin's result that belong to
// the pod-side interface ifName (see podlink.PodIPs).
func podIPs(res *current.Result, ifName string) []*enrollpb.IPConfig {
	return podlink.PodIPs(res, ifName)
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
