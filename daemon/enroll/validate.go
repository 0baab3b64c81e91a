package enroll

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/weirnet/weir/enrollapi/enrollpb"
)

// Bounds on what one pod record may hold. They keep the registry file (one
// record per pod, rewritten on every change) and every reply that lists
// pods small, whatever a caller sends. Each is far above what a real pod
// needs; README "Enrollment limits" lists them.
const (
	// MaxIPs bounds pod.ips: a dual-stack pod has two, multi-address
	// setups a handful.
	MaxIPs = 16
	// MaxNameBytes bounds the Kubernetes names (namespace, name) and the
	// network name: a DNS subdomain is at most 253 bytes.
	MaxNameBytes = 253
	// MaxIDBytes bounds container_id, infra_container_id and uid.
	MaxIDBytes = 128
	// MaxIfnameBytes bounds ifname and host_veth: IFNAMSIZ is 16 with the
	// terminating NUL.
	MaxIfnameBytes = 15
	// MaxPathBytes bounds the netns path.
	MaxPathBytes = 512
	// MaxCNIVersionBytes bounds cni_version.
	MaxCNIVersionBytes = 32
	// MaxAddressBytes bounds each ips[].address and gateway.
	MaxAddressBytes = 64
	// MaxGCRemovedListed bounds GCResponse.removed; removed_count always
	// says how many were removed.
	MaxGCRemovedListed = 256
)

// ValidatePod returns an error naming the first missing, malformed or
// oversized field of p, using the proto field names the plugin author sees.
// It checks the record alone; checks against the node (Host) come after.
func ValidatePod(p *enrollpb.Pod) error {
	switch {
	case p == nil:
		return errors.New("pod is required")
	case p.GetNetwork() == "":
		return errors.New("pod.network is required")
	case p.GetContainerId() == "":
		return errors.New("pod.container_id is required")
	case p.GetIfname() == "":
		return errors.New("pod.ifname is required")
	case p.GetNetns() == "":
		return errors.New("pod.netns is required")
	case !filepath.IsAbs(p.GetNetns()):
		return fmt.Errorf("pod.netns %q must be an absolute path", p.GetNetns())
	case p.GetNetnsInode() == 0:
		return errors.New("pod.netns_inode must be non-zero (the inode of the netns file)")
	case p.GetIfIndex() < 0:
		return fmt.Errorf("pod.if_index must not be negative, got %d", p.GetIfIndex())
	case p.GetHostVethIndex() < 0:
		return fmt.Errorf("pod.host_veth_index must not be negative, got %d", p.GetHostVethIndex())
	case len(p.GetIps()) > MaxIPs:
		return fmt.Errorf("pod.ips has %d addresses, at most %d are accepted", len(p.GetIps()), MaxIPs)
	}
	for _, f := range []struct {
		name  string
		value string
		max   int
	}{
		{"pod.network", p.GetNetwork(), MaxNameBytes},
		{"pod.container_id", p.GetContainerId(), MaxIDBytes},
		{"pod.ifname", p.GetIfname(), MaxIfnameBytes},
		{"pod.netns", p.GetNetns(), MaxPathBytes},
		{"pod.host_veth", p.GetHostVeth(), MaxIfnameBytes},
		{"pod.namespace", p.GetNamespace(), MaxNameBytes},
		{"pod.name", p.GetName(), MaxNameBytes},
		{"pod.uid", p.GetUid(), MaxIDBytes},
		{"pod.infra_container_id", p.GetInfraContainerId(), MaxIDBytes},
		{"pod.cni_version", p.GetCniVersion(), MaxCNIVersionBytes},
	} {
		if len(f.value) > f.max {
			return fmt.Errorf("%s is %d bytes, at most %d are accepted", f.name, len(f.value), f.max)
		}
	}
	seen := make(map[netip.Addr]bool, len(p.GetIps()))
	for i, ip := range p.GetIps() {
		if len(ip.GetAddress()) > MaxAddressBytes || len(ip.GetGateway()) > MaxAddressBytes {
			return fmt.Errorf("pod.ips[%d] is longer than %d bytes", i, MaxAddressBytes)
		}
		pr, err := netip.ParsePrefix(ip.GetAddress())
		if err != nil {
			return fmt.Errorf("pod.ips[%d].address %q is not a CIDR address: %v", i, ip.GetAddress(), err)
		}
		if seen[pr.Addr().Unmap()] {
			return fmt.Errorf("pod.ips[%d].address %q is listed twice", i, ip.GetAddress())
		}
		seen[pr.Addr().Unmap()] = true
		if gw := ip.GetGateway(); gw != "" {
			if _, err := netip.ParseAddr(gw); err != nil {
				return fmt.Errorf("pod.ips[%d].gateway %q is not an IP address: %v", i, gw, err)
			}
		}
	}
	return nil
}
