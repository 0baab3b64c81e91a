package registry

import (
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weirnet/weir/enrollapi/enrollpb"
)

// Pod is one enrolled pod attachment as the daemon knows it: what the CNI
// plugin reported at ADD, plus the id and enrollment time the registry gave
// it. It is the daemon's own type; the enrollment contract's record
// (enrollpb.Pod) is converted to and from it only where that contract is
// spoken: the enrollment service (package enroll) and the registry file.
type Pod struct {
	ID               uint32 // registry id, the eBPF side's pod id; never reused
	Network          string // CNI network name from the conflist
	ContainerID      string // CNI_CONTAINERID (the sandbox ID)
	Ifname           string // CNI_IFNAME inside the pod
	Netns            string // CNI_NETNS path
	NetnsInode       uint64 // inode of the netns file: the kernel's net ns id
	IfIndex          int32  // pod-side interface index
	HostVeth         string // host-side peer name ("" if not a veth)
	HostVethIndex    int32  // host-side peer ifindex (0 if not a veth)
	IPs              []IPConfig
	Namespace        string    // K8S_POD_NAMESPACE
	Name             string    // K8S_POD_NAME
	UID              string    // K8S_POD_UID
	InfraContainerID string    // K8S_POD_INFRA_CONTAINER_ID
	EnrolledAt       time.Time // set by the registry; zero if unknown
	CNIVersion       string
}

// IPConfig is one address of a pod, as CNI reported it.
type IPConfig struct {
	Address string // CIDR, e.g. 10.22.0.5/16 or fd00::5/64
	Gateway string // may be empty
}

// Clone returns a copy of p that shares nothing with it.
func (p *Pod) Clone() *Pod {
	c := *p
	c.IPs = slices.Clone(p.IPs)
	return &c
}

// PodFromProto converts the enrollment contract's record to the daemon's
// Pod. A nil record gives a zero Pod.
func PodFromProto(p *enrollpb.Pod) *Pod {
	out := &Pod{
		ID:               p.GetId(),
		Network:          p.GetNetwork(),
		ContainerID:      p.GetContainerId(),
		Ifname:           p.GetIfname(),
		Netns:            p.GetNetns(),
		NetnsInode:       p.GetNetnsInode(),
		IfIndex:          p.GetIfIndex(),
		HostVeth:         p.GetHostVeth(),
		HostVethIndex:    p.GetHostVethIndex(),
		Namespace:        p.GetNamespace(),
		Name:             p.GetName(),
		UID:              p.GetUid(),
		InfraContainerID: p.GetInfraContainerId(),
		CNIVersion:       p.GetCniVersion(),
	}
	if ips := p.GetIps(); len(ips) > 0 {
		out.IPs = make([]IPConfig, len(ips))
		for i, ip := range ips {
			out.IPs[i] = IPConfig{Address: ip.GetAddress(), Gateway: ip.GetGateway()}
		}
	}
	if ts := p.GetEnrolledAt(); ts != nil {
		out.EnrolledAt = ts.AsTime()
	}
	return out
}

// Proto converts p to the enrollment contract's record: what the enrollment
// service answers and what the registry file holds.
func (p *Pod) Proto() *enrollpb.Pod {
	out := &enrollpb.Pod{
		Id:               p.ID,
		Network:          p.Network,
		ContainerId:      p.ContainerID,
		Ifname:           p.Ifname,
		Netns:            p.Netns,
		NetnsInode:       p.NetnsInode,
		IfIndex:          p.IfIndex,
		HostVeth:         p.HostVeth,
		HostVethIndex:    p.HostVethIndex,
		Namespace:        p.Namespace,
		Name:             p.Name,
		Uid:              p.UID,
		InfraContainerId: p.InfraContainerID,
		CniVersion:       p.CNIVersion,
	}
	for _, ip := range p.IPs {
		out.Ips = append(out.Ips, &enrollpb.IPConfig{Address: ip.Address, Gateway: ip.Gateway})
	}
	if !p.EnrolledAt.IsZero() {
		out.EnrolledAt = timestamppb.New(p.EnrolledAt)
	}
	return out
}

// enrollTime is t as the registry stores an enrollment time: UTC, no
// monotonic reading, the precision the registry file keeps.
func enrollTime(t time.Time) time.Time {
	return timestamppb.New(t).AsTime()
}
