package wire

import (
	"net/netip"
	"time"
)

// ConnInfo is one connection as GET /api/v1/connections reports it and
// weirctl connections prints it: the reassembler's (package capture)
// snapshot of a live or recently closed connection.
type ConnInfo struct {
	ID           uint64         `json:"id"`
	PodID        uint32         `json:"podID"`
	Namespace    string         `json:"namespace,omitempty"`
	Pod          string         `json:"pod,omitempty"`
	PID          uint32         `json:"pid"`
	Comm         string         `json:"comm"`
	CgroupID     uint64         `json:"cgroupID"`
	ContainerID  string         `json:"containerID,omitempty"`
	FD           int32          `json:"fd"`
	Local        netip.AddrPort `json:"local"`
	Remote       netip.AddrPort `json:"remote"`
	Role         string         `json:"role"`
	State        string         `json:"state"`                 // "open" or "closed"
	CloseReason  string         `json:"closeReason,omitempty"` // capture.Reason* when closed
	OpenSeen     bool           `json:"openSeen"`              // connect/accept seen; false: first seen through data (pre-existing socket, inherited, or open event lost)
	TLS          string         `json:"tls,omitempty"`         // TLS library whose plaintext was captured ("openssl", "boringssl", "go"); empty: none
	BytesSent    uint64         `json:"bytesSent"`             // stream offset reached, egress
	BytesRecv    uint64         `json:"bytesRecv"`             // stream offset reached, ingress
	SyscallsSent uint64         `json:"syscallsSent"`
	SyscallsRecv uint64         `json:"syscallsRecv"`
	Gaps         uint64         `json:"gaps"`     // runs of missing bytes, both directions
	GapBytes     uint64         `json:"gapBytes"` // bytes in those runs
	Truncated    uint64         `json:"truncated"`
	// Skipped is how many bytes of the connection (both directions) the
	// kernel reported without copying them, by event.SkipReason name:
	// "h2_data" and "body" are bytes the parsers do not need; the others
	// are losses.
	Skipped   map[string]uint64 `json:"skipped,omitempty"`
	FirstSeen time.Time         `json:"firstSeen"`
	LastSeen  time.Time         `json:"lastSeen"`
	Connect   *ConnectInfo      `json:"connect,omitempty"`
	Close     *CloseInfo        `json:"close,omitempty"`
}

// ConnectInfo describes the syscall that opened the connection: connect for
// a client, accept/accept4 for a server.
type ConnectInfo struct {
	Syscall    string    `json:"syscall"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	Success    bool      `json:"success"`
	InProgress bool      `json:"inProgress,omitempty"`
	Errno      int32     `json:"errno,omitempty"`
}

// CloseInfo describes how the connection left the table. Kernel totals are
// present only when a close event was received.
type CloseInfo struct {
	Time            time.Time `json:"time"`
	KernelBytesSent *uint64   `json:"kernelBytesSent,omitempty"`
	KernelBytesRecv *uint64   `json:"kernelBytesRecv,omitempty"`
}
