// Package event defines the decoded form of what Weir's eBPF programs report:
// connection lifecycle events and captured data chunks.
//
// It is the contract between the kernel side (package bpf decodes ring buffer
// records into these types) and user space (package capture reassembles
// streams from them). It has no dependencies so that both sides, and tests
// that feed recorded events, can use it without loading any eBPF.
package event

import (
	"net/netip"
	"time"
)

// ConnID identifies one connection for its whole life. The kernel assigns it
// when it first sees the socket (connect, accept or first data syscall) from a
// monotonic counter, so it survives fd reuse: a new connection on the same
// (tgid, fd) gets a new ConnID.
type ConnID uint64

// Role says which side of the connection the monitored process is.
type Role uint8

const (
	RoleUnknown Role = iota // seen first through data, e.g. fd inherited or scanned
	RoleClient              // the process called connect
	RoleServer              // the process accepted the connection
)

func (r Role) String() string {
	switch r {
	case RoleClient:
		return "client"
	case RoleServer:
		return "server"
	default:
		return "unknown"
	}
}

// Direction is the direction of data relative to the monitored process.
type Direction uint8

const (
	Egress  Direction = iota // the process wrote or sent it
	Ingress                  // the process read or received it
)

func (d Direction) String() string {
	if d == Ingress {
		return "ingress"
	}
	return "egress"
}

// Syscall names the system call that moved data or changed connection state.
type Syscall uint8

const (
	SysUnknown Syscall = iota
	SysConnect
	SysAccept
	SysAccept4
	SysClose
	SysRead
	SysWrite
	SysReadv
	SysWritev
	SysSendto
	SysRecvfrom
	SysSendmsg
	SysRecvmsg
	SysSendmmsg
	SysRecvmmsg
	SysSendfile
)

var syscallNames = [...]string{
	SysUnknown: "unknown", SysConnect: "connect", SysAccept: "accept", SysAccept4: "accept4",
	SysClose: "close", SysRead: "read", SysWrite: "write", SysReadv: "readv", SysWritev: "writev",
	SysSendto: "sendto", SysRecvfrom: "recvfrom", SysSendmsg: "sendmsg", SysRecvmsg: "recvmsg",
	SysSendmmsg: "sendmmsg", SysRecvmmsg: "recvmmsg", SysSendfile: "sendfile",
}

func (s Syscall) String() string {
	if int(s) < len(syscallNames) {
		return syscallNames[s]
	}
	return "unknown"
}

// Process identifies the thread that made a syscall.
type Process struct {
	TGID     uint32 // process id
	TID      uint32 // thread id
	Comm     string // task comm at the time of the event
	CgroupID uint64 // cgroup v2 id (bpf_get_current_cgroup_id)
	PodID    uint32 // enrolled pod id of the process's network namespace
	NetnsIno uint64 // network namespace inode
}

// Timestamps are nanoseconds since boot (CLOCK_MONOTONIC / bpf_ktime_get_ns),
// the clock SkyWalking's EBPFOffsetTimestamp uses. Convert with BootTime.
type Timestamp uint64

// Time converts a boot-relative timestamp to wall-clock time given the
// wall-clock time of boot.
func (t Timestamp) Time(bootTime time.Time) time.Time {
	return bootTime.Add(time.Duration(t))
}

// ConnOpen reports a connection the first time the kernel side sees it.
type ConnOpen struct {
	Conn   ConnID
	Proc   Process
	FD     int32
	Role   Role
	Local  netip.AddrPort
	Remote netip.AddrPort
	// Syscall is connect, accept/accept4, or the data syscall through which
	// an already-open socket was first seen (Role is then RoleUnknown).
	Syscall Syscall
	// Start and End bracket the connect/accept syscall (equal for sockets
	// first seen through data).
	Start, End Timestamp
	// Success is false for a failed connect; Errno then holds the error
	// (positive errno, e.g. 111 for ECONNREFUSED). A non-blocking connect
	// that returns EINPROGRESS is reported with Success true and
	// InProgress true: whether it completed is learned from later traffic
	// or from the close.
	Success    bool
	InProgress bool
	Errno      int32
}

// ConnClose reports that the monitored process closed the connection's fd
// (or exited holding it).
type ConnClose struct {
	Conn       ConnID
	Proc       Process
	FD         int32
	Start, End Timestamp
	Success    bool
	// Kernel-side totals for the connection, for cross-checking user space.
	BytesSent, BytesRecv uint64
}

// Data is one chunk of bytes moved by one data syscall on a connection.
//
// A syscall that moves more than the chunk size is reported as several Data
// events with consecutive Seq and increasing Offset. Seq counts events per
// connection and direction starting at 0, so a missing Seq is a gap (an event
// lost in the kernel, e.g. ring buffer full). Payload may be shorter than
// Size: Truncated says so (chunk limit, per-connection capture limit, or
// iovec segments the kernel side could not copy); the sizes stay exact.
type Data struct {
	Conn      ConnID
	Proc      Process
	FD        int32
	Direction Direction
	Syscall   Syscall
	Seq       uint64 // per connection and direction
	// StreamOffset is the byte offset of this chunk in the direction's byte
	// stream (bytes moved before it by earlier syscalls and chunks).
	StreamOffset uint64
	// Size is the number of bytes this chunk covers in the stream.
	Size uint32
	// Payload is the captured prefix of those bytes (len(Payload) <= Size).
	// It is only valid during the Sink call (the reader reuses its buffer):
	// a sink that keeps it must copy it.
	Payload   []byte
	Truncated bool
	// Start and End bracket the syscall that moved the bytes.
	Start, End Timestamp
}

// Sink receives decoded events in the order the ring buffer delivers them.
// Implementations must not block for long: the reader calls them inline.
type Sink interface {
	ConnOpen(ConnOpen)
	ConnClose(ConnClose)
	Data(Data)
}
