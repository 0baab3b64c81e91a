package wire

import "time"

// Pod is the API's view of one enrolled pod attachment.
type Pod struct {
	ID               uint32    `json:"id"`
	Network          string    `json:"network"`
	Namespace        string    `json:"namespace"`
	Name             string    `json:"name"`
	UID              string    `json:"uid"`
	SandboxID        string    `json:"sandboxID"` // CNI container ID
	InfraContainerID string    `json:"infraContainerID"`
	Netns            string    `json:"netns"`
	NetnsInode       uint64    `json:"netnsInode"`
	Ifname           string    `json:"ifname"`
	IfIndex          int32     `json:"ifIndex"`
	HostVeth         string    `json:"hostVeth"`
	HostVethIndex    int32     `json:"hostVethIndex"`
	IPs              []string  `json:"ips"` // CIDR strings
	CNIVersion       string    `json:"cniVersion,omitempty"`
	EnrolledAt       time.Time `json:"enrolledAt"` // RFC 3339 with nanoseconds
}
