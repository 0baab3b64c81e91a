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
	SysSplice  // socket tier: splice/vmsplice moved the bytes (size only)
	SysIOUring // socket tier: an io_uring operation moved the bytes (size only)
	// SysSSLWrite and SysSSLRead are TLS plaintext (OpenSSL's SSL_write[_ex]
	// and SSL_read[_ex], c/tls.bpf.c) of the TCP connection in Data.Conn,
	// with stream offsets and Seq of their own: the plaintext stream.
	SysSSLWrite
	SysSSLRead
	// SysGoTLSWrite and SysGoTLSRead are TLS plaintext of Go crypto/tls
	// ((*Conn).Write and (*Conn).Read in a Go binary), as SysSSLWrite and
	// SysSSLRead are of OpenSSL.
	SysGoTLSWrite
	SysGoTLSRead
	// SysBoringSSLWrite and SysBoringSSLRead are TLS plaintext of
	// BoringSSL's SSL_write and SSL_read (the same probes as OpenSSL's, on
	// a libssl that is BoringSSL), as SysSSLWrite and SysSSLRead are of
	// OpenSSL.
	SysBoringSSLWrite
	SysBoringSSLRead
)

// TLS reports whether s is a TLS library call: its Data is the plaintext
// stream of the connection, not the bytes on the socket.
func (s Syscall) TLS() bool { return s >= SysSSLWrite && s <= SysBoringSSLRead }

// TLSLibrary names the TLS library whose calls s reports ("openssl",
// "go", "boringssl"), or "".
func (s Syscall) TLSLibrary() string {
	switch s {
	case SysSSLWrite, SysSSLRead:
		return "openssl"
	case SysGoTLSWrite, SysGoTLSRead:
		return "go"
	case SysBoringSSLWrite, SysBoringSSLRead:
		return "boringssl"
	}
	return ""
}

var syscallNames = [...]string{
	SysUnknown: "unknown", SysConnect: "connect", SysAccept: "accept", SysAccept4: "accept4",
	SysClose: "close", SysRead: "read", SysWrite: "write", SysReadv: "readv", SysWritev: "writev",
	SysSendto: "sendto", SysRecvfrom: "recvfrom", SysSendmsg: "sendmsg", SysRecvmsg: "recvmsg",
	SysSendmmsg: "sendmmsg", SysRecvmmsg: "recvmmsg", SysSendfile: "sendfile",
	SysSplice: "splice", SysIOUring: "io_uring", SysSSLWrite: "ssl_write", SysSSLRead: "ssl_read",
	SysGoTLSWrite: "go_tls_write", SysGoTLSRead: "go_tls_read",
	SysBoringSSLWrite: "boringssl_write", SysBoringSSLRead: "boringssl_read",
}

func (s Syscall) String() string {
	if int(s) < len(syscallNames) {
		return syscallNames[s]
	}
	return "unknown"
}

// SkipReason says why the part of a Data event past its Payload (Size -
// len(Payload) bytes) was not copied out of the kernel. It mirrors enum
// skip_reason of the kernel side; String names each one in the form used as
// a metric label.
//
// Two reasons are benign: SkipH2Data and SkipBody are bytes the kernel left
// out because they carry nothing the parsers read (an HTTP/2 DATA payload,
// an HTTP/1 body range user space said it skips by length). The others are
// losses: a parser must treat them as a gap unless its own framing state
// says the bytes were of no interest anyway.
type SkipReason uint8

const (
	SkipNone       SkipReason = iota // everything was copied
	SkipH2Data                       // HTTP/2 DATA payload skipped by the kernel's frame walker
	SkipBody                         // HTTP/1 body range hinted by user space (Collector.SkipBody)
	SkipBudget                       // connection of an unknown protocol past its capture budget
	SkipFrameLimit                   // HTTP/2 non-DATA frame larger than the copy bound
	SkipChunkLimit                   // the syscall needed more events (or walker steps) than allowed
	SkipIOVLimit                     // more iovec segments than the kernel walks
	SkipMmsg                         // a sendmmsg/recvmmsg message not walked: after the first (syscall tier) or its place in the vector untrusted (socket tier)
	SkipReadFailed                   // user memory was not readable
	SkipSendfile                     // sendfile: the bytes came from a file
	SkipNoPayload                    // payload capture is off
	SkipNotUser                      // socket tier: the op named no user buffer (splice, io_uring, kernel, MSG_TRUNC)
)

var skipNames = [...]string{
	SkipNone: "none", SkipH2Data: "h2_data", SkipBody: "body", SkipBudget: "budget",
	SkipFrameLimit: "frame_limit", SkipChunkLimit: "chunk_limit", SkipIOVLimit: "iov_limit",
	SkipMmsg: "mmsg", SkipReadFailed: "read_failed", SkipSendfile: "sendfile", SkipNoPayload: "no_payload",
	SkipNotUser: "not_user",
}

// NumSkipReasons is the number of SkipReason values, for arrays indexed by
// reason.
const NumSkipReasons = len(skipNames)

func (r SkipReason) String() string {
	if int(r) < len(skipNames) {
		return skipNames[r]
	}
	return "unknown"
}

// Benign reports whether the skipped bytes are ones the kernel left out on
// purpose because the parsers do not need them.
func (r SkipReason) Benign() bool { return r == SkipH2Data || r == SkipBody }

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
	// Socket state at close (nil when not measured).
	Socket *SocketStats
}

// Data is one chunk of bytes moved by one data syscall on a connection.
//
// A syscall is reported as one or more Data events with consecutive Seq and
// increasing Offset: each covers Size bytes of the stream, a copied prefix
// (Payload) and a skipped suffix (Size - len(Payload) bytes) whose reason is
// Skip. A syscall moving more than the chunk size, or whose bytes mix
// copied and skipped runs (HTTP/2 frame headers between skipped DATA
// payloads), becomes several events. Seq counts events per connection and
// direction starting at 0, so a missing Seq is a gap (an event lost in the
// kernel, e.g. ring buffer full). Truncated says Payload is shorter than
// Size; the sizes stay exact.
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
	// Skip is why the suffix past Payload was not copied (SkipNone when
	// Payload is the whole event).
	Skip SkipReason
	// Start and End bracket the syscall that moved the bytes.
	Start, End Timestamp
	// Last marks the syscall's last event: the kernel emits a syscall's
	// events in Seq order and sets it on the final one, so a syscall
	// whose Last event arrived is complete (unless events before it were
	// lost, which a gap in Seq shows).
	Last bool
	// Kernel measurements of the whole syscall, set on its last chunk only
	// (nil when the kernel side measured nothing): Send for Egress, Recv
	// for Ingress.
	Send *SendMetrics
	Recv *RecvMetrics
}

// Retransmit is one segment TCP retransmitted on a connection while none of
// the connection's send syscalls was in flight: from the retransmit timer, a
// tail loss probe, or fast retransmit on an incoming ACK. Retransmits during
// a send syscall are in that syscall's SendMetrics instead, so the two add
// up to the connection's retransmits without double counting.
type Retransmit struct {
	Conn ConnID
	// Segments is how many segments the retransmitted skb carried (more
	// than one when a GSO send is resent whole), as the socket's total
	// retransmits count them.
	Segments uint16
	// State is the socket's TCP state (the kernel's TCP_ESTABLISHED = 1,
	// ...); a retransmitted SYN has TCP_SYN_SENT = 2.
	State uint8
	Time  Timestamp
}

// Sink receives decoded events in the order the ring buffer delivers them.
// Implementations must not block for long: the reader calls them inline.
type Sink interface {
	ConnOpen(ConnOpen)
	ConnClose(ConnClose)
	Data(Data)
	Retransmit(Retransmit)
}

// MetricsBorrower is a Sink that may keep no Data.Send or Data.Recv
// pointer past the Data call that handed it (it copies what it keeps).
// When BorrowsMetrics reports true, a decoder may hand every event's
// metrics in the same memory, sparing an allocation per syscall.
type MetricsBorrower interface {
	Sink
	BorrowsMetrics() bool
}

// Metric names one kernel measurement. Which ones a kernel can provide
// depends on the hook tier (see package bpf's Features): a field whose bit is
// not set in a Measured mask was not measured, which is different from zero.
type Metric uint32

const (
	MetricL4Duration  Metric = 1 << iota // time in the transport layer
	MetricPackets                        // skbs and their bytes
	MetricRetransmits                    // tcp_retransmit_skb
	MetricDrops                          // kfree_skb with a drop reason
	MetricL3Duration                     // time in the IP layer
	MetricL3Split                        // L3 local vs output (send) / recv vs local (receive)
	MetricNetfilter                      // netfilter hook count and time
	MetricResolveMAC                     // neighbour (ARP/ND) resolution count and time
	MetricL2Duration                     // time in the device layer
	MetricL2Queue                        // device queue: enter, ready-to-send, on-device times
	MetricRecvQueue                      // receive: device to socket queue, queue to reader
	MetricRTT                            // smoothed RTT and its variance from the socket
)

// Drop counts packets of one syscall lost at one kernel location.
type Drop struct {
	Reason string // kernel skb drop reason, e.g. "NETFILTER_DROP", "TCP_INVALID_SEQUENCE"
	Count  uint32
}

// SendMetrics are the kernel measurements of one send-family syscall, from
// the transport layer down to the device. Durations are nanoseconds. They
// mirror SkyWalking's AccessLogKernelWrite{L4,L3,L2}Metrics.
type SendMetrics struct {
	Measured Metric

	L4Duration  uint64
	Packets     uint32 // skbs transmitted
	PacketBytes uint64 // their total size
	Retransmits uint32 // segments retransmitted while the syscall ran (tcp_retransmit_skb)
	Drops       []Drop

	L3Duration         uint64
	L3LocalDuration    uint64
	L3OutputDuration   uint64
	ResolveMACCount    uint32
	ResolveMACDuration uint64
	NetfilterCount     uint32
	NetfilterDuration  uint64

	IfIndex            uint32
	L2Duration         uint64
	EnterQueueCount    uint32
	ReadySendDuration  uint64 // queued to handed to the driver
	DeviceSendDuration uint64 // handed to the driver to transmitted
}

// RecvMetrics are the kernel measurements of one receive-family syscall,
// from the device up to the reader. They mirror SkyWalking's
// AccessLogKernelRead{L2,L3,L4}Metrics.
type RecvMetrics struct {
	Measured Metric

	IfIndex           uint32
	Packets           uint32
	PacketBytes       uint64
	ToQueueDuration   uint64 // device receive to the socket's receive queue
	FromQueueDuration uint64 // receive queue to the reading syscall

	// Richer tier, summed over the skbs the read was first to copy from
	// (a read continuing an skb an earlier read took adds nothing).
	L3Duration        uint64 // L3RecvDuration + L3LocalDuration
	L3RecvDuration    uint64 // ip_rcv to ip_local_deliver: PRE_ROUTING, routing
	L3LocalDuration   uint64 // ip_local_deliver to tcp_v4_rcv: LOCAL_IN
	NetfilterCount    uint32 // nf_hook_slow passes on the way up
	NetfilterDuration uint64

	L4Duration uint64 // in tcp_v4_rcv (tcp_v6_rcv)
}

// SocketStats are read from the socket (tcp_sock) when a connection closes
// and periodically while it lives.
type SocketStats struct {
	Measured    Metric
	SRTT        uint64 // smoothed RTT, nanoseconds
	RTTVar      uint64 // RTT mean deviation, nanoseconds
	Retransmits uint32 // total retransmitted segments
	Drops       []Drop
}

// ProcessKind says what happened to a monitored process.
type ProcessKind uint8

const (
	// ProcessExisting: found running in a netns when it was enrolled.
	ProcessExisting ProcessKind = iota
	// ProcessFork: a new process (not a thread) in an enrolled netns.
	ProcessFork
	// ProcessExec: a monitored process executed a new program.
	ProcessExec
	// ProcessExit: the last thread of a monitored process exited. Its
	// connections are gone even though no close was seen for them.
	ProcessExit
)

func (k ProcessKind) String() string {
	switch k {
	case ProcessExisting:
		return "existing"
	case ProcessFork:
		return "fork"
	case ProcessExec:
		return "exec"
	case ProcessExit:
		return "exit"
	default:
		return "unknown"
	}
}

// ProcessEvent reports the lifecycle of a process in an enrolled netns. It
// lets user space name processes and close the connections of a process
// that exited holding them (no close syscall is seen then).
type ProcessEvent struct {
	Kind ProcessKind
	Proc Process
	// PPID is the parent's process id (fork, exec).
	PPID uint32
	// Filename is the executed path (exec).
	Filename string
	// ExitCode is the raw wait status (exit): exit code << 8 | signal.
	ExitCode int32
	// Time is when it happened; 0 for ProcessExisting.
	Time Timestamp
}

// ProcessSink is implemented by sinks that also want process events. It is
// optional, and separate from Sink, so that sinks that only reassemble
// streams need not implement it: the reader checks for it with a type
// assertion on the Sink it is given.
type ProcessSink interface {
	Process(ProcessEvent)
}
