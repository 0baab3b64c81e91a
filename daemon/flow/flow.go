// Package flow defines what Weir's pipeline hands to its consumers — metrics
// aggregation, exporters and the API: connections with resolved identities,
// kernel operations on them, and HTTP exchanges.
//
// The capture layer speaks in kernel terms (connection ids, pod ids,
// boot-relative timestamps); consumers want "pod frontend in namespace shop
// called service catalog". The pipeline resolves identities once, here, so
// every consumer sees the same names. Values handed to a Consumer are
// immutable once delivered and may be retained, unless every consumer of
// the pipeline is a Borrower (see there).
package flow

import (
	"net/netip"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/protocol/record"
)

// Pod is the identity of a pod enrolled on this node.
type Pod struct {
	ID        uint32 // registry id, the value the eBPF side stores per netns
	Namespace string
	Name      string
	UID       string
	// Service is the name the pod is reported under (a Kubernetes Service,
	// the app label, or the owner name; see the resolver), without namespace.
	Service string
	// Selected says Service is a Kubernetes Service that selects the pod:
	// the name SkyWalking's OAP resolves for the pod's address from every
	// node. Otherwise the name is Weir's own, which the OAP cannot give
	// the pod from other nodes' data (Unknown there).
	Selected bool
}

// Process is the process of a monitored pod that owns a connection.
type Process struct {
	PID         uint32
	Comm        string
	ContainerID string // 64-hex id from the cgroup path; empty if unknown
	// ContainerName is the container's name in the pod spec, from the
	// runtime (CRI); empty until the runtime has answered.
	ContainerName string
}

// Peer is one end of a connection. Pod is set when the address belongs to a
// pod enrolled on this node (for the remote end: looked up by IP).
type Peer struct {
	Addr netip.AddrPort
	Pod  *Pod
}

// Connection is a TCP connection of a monitored process. Local is always
// the monitored side.
type Connection struct {
	ID      event.ConnID
	Role    event.Role
	Local   Peer
	Remote  Peer
	Process Process
	// TLS names the TLS library whose plaintext of the connection Weir
	// read ("openssl", "boringssl", "go"); "" when none was read (a connection that began
	// with a TLS handshake is then ProtoTLS).
	TLS string
}

// OpKind is the kind of a kernel operation on a connection.
type OpKind uint8

const (
	OpConnect OpKind = iota + 1
	OpAccept
	OpClose
	OpWrite
	OpRead
)

func (k OpKind) String() string {
	switch k {
	case OpConnect:
		return "connect"
	case OpAccept:
		return "accept"
	case OpClose:
		return "close"
	case OpWrite:
		return "write"
	case OpRead:
		return "read"
	}
	return "unknown"
}

// KernelOp is one syscall on a connection as the kernel saw it: SkyWalking's
// AccessLogKernel{Connect,Accept,Close,Read,Write}Operation.
type KernelOp struct {
	Conn       *Connection
	Kind       OpKind
	Syscall    event.Syscall
	Start, End event.Timestamp
	Success    bool
	Errno      int32  // for a failed connect
	Bytes      uint64 // bytes moved by a read or write
	Send       *event.SendMetrics
	Recv       *event.RecvMetrics
	Socket     *event.SocketStats // on close
}

// Exchange is one HTTP request and its response on a connection. Ops are
// the read and write operations of the connection whose syscalls carried
// the exchange's bytes: those of the request's direction whose bytes
// overlap the request's in that stream, and those of the response's
// direction that overlap the response's (by stream offset, see
// record.Record's ReqOff..RespEndOff). Each read and write is in
// the Ops of at most one exchange (the first delivered that claims it), so
// a consumer that counts them per exchange counts each once; those no
// exchange claimed go to OpConsumer.ConnOp instead. Ops is bounded
// (OpsPerExchange in the pipeline; the rest go to ConnOp too).
type Exchange struct {
	Conn   *Connection
	Record *record.Record
	Ops    []*KernelOp
}

// Consumer receives the pipeline's output. Methods are called from the
// pipeline's goroutine and must not block for long: a slow consumer queues
// and drops on its own side, with a counter.
type Consumer interface {
	KernelOp(*KernelOp)
	Exchange(*Exchange)
}

// Borrower is a Consumer that keeps none of the KernelOp and Exchange
// values it is handed past the call that handed them: not the KernelOp,
// the Exchange, its Record, its Ops slice, nor the Send and Recv metrics
// they point to (a consumer that needs one later copies what it needs).
// Connections, pods and strings stay immutable and may still be kept.
// When every consumer of a pipeline is a Borrower, the pipeline reuses
// those operations, exchanges and records once the consumers returned,
// which spares most of its allocations per request; a single consumer
// that is not a Borrower turns the reuse off. Borrows is a marker with
// nothing to do.
type Borrower interface {
	Consumer
	Borrows()
}

// Protocol is what the pipeline knew a connection to carry when it handed
// an operation on.
type Protocol uint8

const (
	ProtoUnknown Protocol = iota // too few bytes seen to tell
	ProtoTCP                     // not HTTP (or no longer parsed as HTTP)
	ProtoHTTP1
	ProtoHTTP2
	// ProtoTLS is a connection whose first bytes were a TLS handshake
	// record: Weir sees its ciphertext only, so it carries no exchanges.
	ProtoTLS
)

// OpConsumer is a Consumer that wants every kernel operation exactly once
// in total, for a receiver that counts every operation it is given (the
// SkyWalking OAP): ConnOp receives connect, accept and close, and the
// reads and writes that no Exchange's Ops hold; the rest arrive in
// Exchange.Ops. KernelOp still receives every operation as it completes
// (for consumers that count all of them), so an OpConsumer ignores it for
// what ConnOp and Exchange deliver.
//
// ConnOp is called once the operation's place is known: a read or write
// when no exchange can claim it any more (the connection is not HTTP,
// an HTTP/1 exchange after it was delivered, it waited IOHoldDelay, the
// per-connection bound pushed it out, the connection closed, or its
// exchanges were parsed from TLS plaintext); a
// connect or accept once the connection's first bytes classified it (so
// that proto says what the connection carries), or when it failed, closed,
// or stayed without data for IOHoldDelay. proto is the connection's
// protocol at that moment.
type OpConsumer interface {
	Consumer
	ConnOp(op *KernelOp, proto Protocol)
}

// Retransmit is a segment TCP resent on a connection outside the
// connection's syscalls: by the retransmit timer, a tail loss probe, or fast
// retransmit on an incoming ACK (see event.Retransmit). Retransmits made
// during a send syscall are in that write's KernelOp.Send instead.
type Retransmit struct {
	Conn     *Connection
	Segments uint16 // segments resent (see event.Retransmit)
	State    uint8  // the socket's TCP state, the kernel's numbering
	Time     event.Timestamp
}

// RetransmitConsumer is a Consumer that also takes retransmits made outside
// syscalls. It is optional: SkyWalking's access log has no operation to
// carry one, so its exporter does not implement it.
type RetransmitConsumer interface {
	Consumer
	Retransmit(*Retransmit)
}
