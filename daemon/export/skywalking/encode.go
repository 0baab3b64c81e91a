package skywalking

import (
	"net/netip"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	commonv3 "skywalking.apache.org/repo/goapi/collect/common/v3"
	alv3 "skywalking.apache.org/repo/goapi/collect/ebpf/accesslog/v3"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/protocol/record"
	"github.com/weirnet/weir/daemon/protocol/tracectx"
)

// Messages are encoded by hand, straight from the queued flow values into
// one reused byte slice, instead of building goapi structs for
// proto.Marshal (and gRPC's codec) to encode.
//
// Why: with export on, the conversion was the daemon's largest CPU cost.
// BenchmarkBuildAndMarshalExchange measured about 3.5 µs, 2.3 KB and 40
// allocations per HTTP exchange (median of 5, AMD EPYC) for building the ~40
// small structs of an exchange's message (a timestamp alone is three:
// EBPFTimestamp, its oneof wrapper and EBPFOffsetTimestamp), marshalling
// them with protobuf-go's generic encoder, and the GC work that follows.
// Encoding directly takes about 0.32 µs and no allocation per exchange in
// the steady state (BenchmarkEncodeExchange), 0.43 µs and 2 allocations
// with gRPC's codec (BenchmarkBuildAndMarshalExchange), which now takes the
// bytes as they are instead of marshalling structs again (see rawCodec).
// Since issue 16 the kernel and protocol logs are encoded when an entry is
// queued (see item) and only message heads here.
//
// The price is that this file restates the schema. Field numbers and wire
// types below are those of the goapi generated code
// (collect/ebpf/accesslog/v3/accesslog.pb.go and
// collect/common/v3/Common.pb.go); fields are written in field-number order
// and zero scalars, empty strings and nil messages are left out as proto3
// requires, so the output is byte for byte what proto.Marshal produces for
// the reference structs (reference_test.go). The equivalence and fuzz tests
// in encode_test.go hold the two together; a goapi upgrade that renumbers
// a field would fail them.
//
// One deliberate difference: proto3 strings must be valid UTF-8, and
// proto.Marshal refuses a message whose string is not, which made the whole
// batch fail to send, forever (an HTTP path is raw bytes from the network).
// Invalid sequences are replaced with U+FFFD here instead.

// Field numbers, by message.
const (
	// EBPFAccessLogMessage
	fMsgNode        = 1
	fMsgConnection  = 2
	fMsgKernelLogs  = 3
	fMsgProtocolLog = 4

	// EBPFAccessLogNodeInfo
	fNodeName          = 1
	fNodeNetInterfaces = 2
	fNodeBootTime      = 3
	fNodeClusterName   = 4
	fNodePolicy        = 5
	// EBPFAccessLogNodeNetInterface
	fIfaceIndex = 1
	fIfaceMTU   = 2
	fIfaceName  = 3
	// common.v3.Instant
	fInstantSeconds = 1
	fInstantNanos   = 2
	// EBPFAccessLogPolicy
	fPolicyExcludeNamespaces = 1

	// AccessLogConnection
	fConnLocal    = 1
	fConnRemote   = 2
	fConnRole     = 3
	fConnTLSMode  = 4
	fConnProtocol = 5
	// ConnectionAddress (oneof address)
	fAddrKubernetes = 1
	fAddrIP         = 2
	// KubernetesProcessAddress
	fK8sServiceName   = 1
	fK8sPodName       = 2
	fK8sContainerName = 3
	fK8sProcessName   = 4
	fK8sPort          = 5
	// IPAddress
	fIPHost = 1
	fIPPort = 2

	// AccessLogKernelLog (oneof operation)
	fOpConnect = 1
	fOpAccept  = 2
	fOpClose   = 3
	fOpRead    = 4
	fOpWrite   = 5
	// Connect, accept, close, read and write operations share their first
	// fields.
	fOpStartTime = 1
	fOpEndTime   = 2
	fOpSuccess   = 3 // connect, close
	fOpSyscall   = 3 // read, write
	// AccessLogKernelWriteOperation
	fWriteL4 = 4
	fWriteL3 = 5
	fWriteL2 = 6
	// AccessLogKernelReadOperation
	fReadL2 = 4
	fReadL3 = 5
	fReadL4 = 6
	// EBPFTimestamp (oneof timestamp) and EBPFOffsetTimestamp
	fTimestampOffset = 1
	fOffsetOffset    = 1

	// AccessLogKernelWriteL4Metrics
	fWL4TotalDuration     = 1
	fWL4TransmitPackets   = 2
	fWL4RetransmitPackets = 3
	fWL4LossPackages      = 4
	fWL4PackageSize       = 5
	// AccessLogLossPackageMetrics
	fLossLocation = 1
	fLossCount    = 2
	// AccessLogKernelWriteL3Metrics
	fWL3TotalDuration      = 1
	fWL3LocalDuration      = 2
	fWL3OutputDuration     = 3
	fWL3ResolveMACCount    = 5
	fWL3ResolveMACDuration = 6
	fWL3NetFilterCount     = 7
	fWL3NetFilterDuration  = 8
	// AccessLogKernelWriteL2Metrics
	fWL2TotalDuration      = 1
	fWL2Ifindex            = 2
	fWL2EnterQueueCount    = 3
	fWL2ReadySendDuration  = 4
	fWL2DeviceSendDuration = 5
	// AccessLogKernelReadL2Metrics
	fRL2Ifindex           = 1
	fRL2PackageCount      = 2
	fRL2PackageSize       = 3
	fRL2ToQueueDuration   = 4
	fRL2FromQueueDuration = 5
	// AccessLogKernelReadL3Metrics
	fRL3TotalDuration     = 1
	fRL3RecvDuration      = 2
	fRL3LocalDuration     = 3
	fRL3NetFilterCount    = 4
	fRL3NetFilterDuration = 5
	// AccessLogKernelReadL4Metrics
	fRL4TotalDuration = 1

	// AccessLogProtocolLogs (oneof protocol)
	fProtoHTTP = 1
	// AccessLogHTTPProtocol
	fHTTPStartTime = 1
	fHTTPEndTime   = 2
	fHTTPVersion   = 3
	fHTTPRequest   = 4
	fHTTPResponse  = 5
	// AccessLogHTTPProtocolRequest
	fReqMethod      = 1
	fReqPath        = 2
	fReqHeaderBytes = 3
	fReqBodyBytes   = 4
	fReqTrace       = 5
	fReqHost        = 6
	// AccessLogHTTPProtocolResponse
	fRespStatus      = 1
	fRespHeaderBytes = 3
	fRespBodyBytes   = 4
	// AccessLogTraceInfo
	fTraceProvider  = 1
	fTraceID        = 2
	fTraceSegmentID = 3
	fTraceSpanID    = 4
)

// maxRetainedEncodeBytes caps the encoding buffer kept between batches. A
// default batch of 500 exchanges encodes to about 150 KiB; a batch of
// exchanges with very long paths may need several MiB once, which is then
// given back rather than held for the life of the daemon.
const maxRetainedEncodeBytes = 1 << 20

// rawMessage is one EBPFAccessLogMessage in wire format. rawCodec sends it
// as is: bs is b as gRPC takes it, built once per batch (see assemble) so
// that a send allocates nothing of ours.
type rawMessage struct {
	b  []byte
	bs mem.BufferSlice
}

// encoder holds the buffers of the messages of one batch, reused from
// batch to batch.
type encoder struct {
	buf  []byte // every message of the batch, back to back
	ends []int  // end offset in buf of each message
	// entries is how many queue entries each message carries (the
	// entries of a message that was never written are dropped as such).
	entries []int
	msgs    []rawMessage // views of buf, handed to the sender
	// views and bufs back each message's mem.BufferSlice: bufs[i] is
	// &views[i], a pointer, so making it a mem.Buffer allocates nothing.
	views []mem.SliceBuffer
	bufs  []mem.Buffer
	// shared says buf went to a stream that failed: gRPC may still hold
	// and write its messages (rawCodec does not copy them), so reset
	// leaves it to the garbage collector instead of reusing it.
	shared bool
}

// reset drops the views of the last batch and, when it needed an unusually
// large buffer or gRPC may still read it, the buffer itself.
func (e *encoder) reset() {
	clear(e.msgs)
	e.msgs = e.msgs[:0]
	e.ends = e.ends[:0]
	e.entries = e.entries[:0]
	clear(e.bufs)
	clear(e.views)
	if cap(e.buf) > maxRetainedEncodeBytes || e.shared {
		// gRPC may still hold the views too.
		e.buf, e.views, e.bufs, e.shared = nil, nil, nil, false
	}
	e.buf = e.buf[:0]
}

// encode encodes a batch of entries as they would be queued (see
// arena.add) and assembles them (see assemble).
func (b *builder) encode(batch []entry, node []byte) []rawMessage {
	return b.assemble(b.items(batch), node)
}

// items encodes entries into items with the builder's own arena.
func (b *builder) items(batch []entry) []item {
	items := b.pending[:0]
	for _, e := range batch {
		items = append(items, b.arena.add(e))
	}
	b.pending = items
	return items
}

// assemble turns one batch of items into the messages of one collect
// stream:
//
//   - the first message carries node, the pre-encoded node field (see
//     encodeNode; nil for none): the OAP reads node from the first message
//     of every stream;
//   - items are grouped per connection (see group), and a connection is
//     sent once, on the first message of its group: it stays in force at
//     the OAP until the next one;
//   - a group's kernel operations travel together in one message (split at
//     maxKernelLogsPerMessage); each HTTP exchange is its own message whose
//     kernel logs are the exchange's related read/write operations.
//
// Items arrive encoded: only message heads (node, connection) are encoded
// here, the rest is copied. The returned messages are views of the
// builder's buffer: they are valid until the next call of assemble or
// release, and are resent as they are when a stream fails.
func (b *builder) assemble(batch []item, node []byte) []rawMessage {
	b.group(batch)
	e := &b.enc
	e.reset()
	buf := e.buf
	for gi := range b.groups {
		g := &b.groups[gi]
		proto := groupProtocol(g)
		tls := g.proto == flow.ProtoTLS || g.tls
		withConn := true
		if g.logs > 0 {
			buf = b.appendHead(buf, node, g.conn, proto, tls, &withConn)
			inMsg, entries := 0, 0
			for _, idx := range g.ops {
				it := &batch[idx]
				if inMsg+int(it.logs) <= maxKernelLogsPerMessage {
					entries++
					buf = append(buf, it.b...)
					inMsg += int(it.logs)
					continue
				}
				// The message is full within this item: split it
				// between its kernel logs.
				rest, first := it.b, true
				for len(rest) > 0 {
					if inMsg == maxKernelLogsPerMessage {
						e.ends = append(e.ends, len(buf))
						e.entries = append(e.entries, entries)
						buf = b.appendHead(buf, node, g.conn, proto, tls, &withConn)
						inMsg, entries = 0, 0
					}
					n := kernelLogLen(rest)
					buf = append(buf, rest[:n]...)
					rest = rest[n:]
					if first {
						entries++
						first = false
					}
					inMsg++
				}
			}
			e.ends = append(e.ends, len(buf))
			e.entries = append(e.entries, entries)
		}
		for _, idx := range g.exs {
			buf = b.appendHead(buf, node, g.conn, proto, tls, &withConn)
			buf = append(buf, batch[idx].b...)
			e.ends = append(e.ends, len(buf))
			e.entries = append(e.entries, 1)
		}
		if g.closes {
			b.forget(g.conn)
		}
	}
	e.buf = buf
	n := len(e.ends)
	if cap(e.views) < n {
		e.views = make([]mem.SliceBuffer, n)
		e.bufs = make([]mem.Buffer, n)
	}
	e.views, e.bufs = e.views[:n], e.bufs[:n]
	start := 0
	for i, end := range e.ends {
		e.views[i] = buf[start:end:end]
		e.bufs[i] = &e.views[i]
		e.msgs = append(e.msgs, rawMessage{b: buf[start:end:end], bs: e.bufs[i : i+1 : i+1]})
		start = end
	}
	return e.msgs
}

// kernelLogLen is the length of the first kernel log field in b, an item's
// encoding (which the arena wrote: well formed).
func kernelLogLen(b []byte) int {
	_, _, n := protowire.ConsumeField(b)
	if n < 0 {
		return len(b) // cannot happen; never loop
	}
	return n
}

// release ends the use of the messages encode returned.
func (b *builder) release() { b.enc.reset() }

// appendHead starts a message: node on the first message of the batch, the
// connection on the first message of its group.
func (b *builder) appendHead(buf, node []byte, c *flow.Connection, proto alv3.AccessLogProtocolType, tls bool, withConn *bool) []byte {
	if len(b.enc.ends) == 0 {
		buf = append(buf, node...)
	}
	if *withConn {
		*withConn = false
		buf = b.appendConnection(buf, fMsgConnection, c, proto, tls)
	}
	return buf
}

// encodeNode encodes the node info of cfg as the node field of an
// EBPFAccessLogMessage (tag included), once per exporter.
func encodeNode(cfg Config) []byte {
	b, m := openField(nil, fMsgNode)
	b = appendString(b, fNodeName, cfg.NodeName)
	for _, i := range cfg.NetInterfaces {
		var mi int
		b, mi = openField(b, fNodeNetInterfaces)
		b = appendInt32(b, fIfaceIndex, int32(i.Index))
		b = appendInt32(b, fIfaceMTU, int32(i.MTU))
		b = appendString(b, fIfaceName, i.Name)
		b = closeField(b, mi)
	}
	var mt int
	b, mt = openField(b, fNodeBootTime)
	b = appendVarint(b, fInstantSeconds, uint64(cfg.BootTime.Unix()))
	b = appendInt32(b, fInstantNanos, int32(cfg.BootTime.Nanosecond()))
	b = closeField(b, mt)
	b = appendString(b, fNodeClusterName, cfg.Cluster)
	if len(cfg.ExcludeNamespaces) > 0 {
		var mp int
		b, mp = openField(b, fNodePolicy)
		for _, ns := range cfg.ExcludeNamespaces {
			b = appendRepeatedString(b, fPolicyExcludeNamespaces, ns)
		}
		b = closeField(b, mp)
	}
	return closeField(b, m)
}

func (b *builder) appendConnection(buf []byte, num protowire.Number, c *flow.Connection, proto alv3.AccessLogProtocolType, tls bool) []byte {
	buf, m := openField(buf, num)
	buf = b.appendLocalAddress(buf, fConnLocal, c)
	buf = b.appendRemoteAddress(buf, fConnRemote, b.remotePeer(c))
	role := commonv3.DetectPoint_client
	if c.Role == event.RoleServer {
		role = commonv3.DetectPoint_server
	}
	buf = appendVarint(buf, fConnRole, uint64(role))
	// Weir sees the syscalls' bytes: a connection that began with a TLS
	// handshake is TLS: its content unread (protocol TCP), or read as
	// plaintext through a probed TLS library (the protocol parsed).
	mode := alv3.AccessLogConnectionTLSMode_Plain
	if tls {
		mode = alv3.AccessLogConnectionTLSMode_TLS
	}
	buf = appendVarint(buf, fConnTLSMode, uint64(mode))
	buf = appendVarint(buf, fConnProtocol, uint64(proto))
	return closeField(buf, m)
}

func (b *builder) appendLocalAddress(buf []byte, num protowire.Number, c *flow.Connection) []byte {
	if c.Local.Pod == nil {
		// Every monitored connection belongs to an enrolled pod; a
		// missing identity is a pipeline race, and the IP lets the OAP
		// resolve it itself.
		return appendIPAddress(buf, num, c.Local.Addr)
	}
	buf, m := openField(buf, num)
	buf, mk := openField(buf, fAddrKubernetes)
	buf = appendString(buf, fK8sServiceName, b.serviceName(c.Local.Pod))
	buf = appendString(buf, fK8sPodName, c.Local.Pod.Name)
	buf = appendString(buf, fK8sContainerName, containerName(c.Process))
	buf = appendString(buf, fK8sProcessName, c.Process.Comm)
	buf = appendInt32(buf, fK8sPort, int32(c.Local.Addr.Port()))
	return closeField(closeField(buf, mk), m)
}

func (b *builder) appendRemoteAddress(buf []byte, num protowire.Number, p flow.Peer) []byte {
	if p.Pod == nil {
		return appendIPAddress(buf, num, p.Addr)
	}
	// A pod on this node: its process and container are those of the
	// other connection end, which this one does not know.
	buf, m := openField(buf, num)
	buf, mk := openField(buf, fAddrKubernetes)
	buf = appendString(buf, fK8sServiceName, b.serviceName(p.Pod))
	buf = appendString(buf, fK8sPodName, p.Pod.Name)
	buf = appendInt32(buf, fK8sPort, int32(p.Addr.Port()))
	return closeField(closeField(buf, mk), m)
}

func appendIPAddress(buf []byte, num protowire.Number, a netip.AddrPort) []byte {
	buf, m := openField(buf, num)
	buf, mi := openField(buf, fAddrIP)
	// The OAP looks pods and services up by dotted IPv4. Connections are
	// few per batch (one per group), so String's allocation is not worth
	// avoiding.
	buf = appendString(buf, fIPHost, a.Addr().Unmap().String())
	buf = appendInt32(buf, fIPPort, int32(a.Port()))
	return closeField(closeField(buf, mi), m)
}

// appendKernelLog appends one kernel operation as an AccessLogKernelLog.
// Metric fields are copied only when their Measured bit is set; a layer
// with no measured field is left absent, and an unmeasured field inside a
// present layer stays zero. The protocol has no "not measured" marker, so
// absent/zero is the closest honest encoding; which metrics a node can
// measure is reported by the daemon itself (API, Prometheus). Socket stats
// taken at close (RTT) have no field in the protocol and are not sent.
func appendKernelLog(buf []byte, num protowire.Number, op *flow.KernelOp) []byte {
	if op == nil {
		return buf // the pipeline hands none; nothing to describe
	}
	buf, m := openField(buf, num)
	var mo int
	switch op.Kind {
	case flow.OpConnect:
		buf, mo = openField(buf, fOpConnect)
		buf = appendTimes(buf, op.Start, op.End)
		buf = appendBool(buf, fOpSuccess, op.Success)
	case flow.OpAccept:
		buf, mo = openField(buf, fOpAccept)
		buf = appendTimes(buf, op.Start, op.End)
	case flow.OpClose:
		buf, mo = openField(buf, fOpClose)
		buf = appendTimes(buf, op.Start, op.End)
		buf = appendBool(buf, fOpSuccess, op.Success)
	case flow.OpWrite:
		buf, mo = openField(buf, fOpWrite)
		buf = appendTimes(buf, op.Start, op.End)
		buf = appendVarint(buf, fOpSyscall, uint64(writeSyscall(op.Syscall)))
		if op.Send != nil {
			buf = appendWriteMetrics(buf, op.Send)
		}
	default: // flow.OpRead; the pipeline produces no other kind
		buf, mo = openField(buf, fOpRead)
		buf = appendTimes(buf, op.Start, op.End)
		buf = appendVarint(buf, fOpSyscall, uint64(readSyscall(op.Syscall)))
		if op.Recv != nil {
			buf = appendReadMetrics(buf, op.Recv)
		}
	}
	return closeField(closeField(buf, mo), m)
}

// appendTimes appends the start and end times every operation starts with.
func appendTimes(buf []byte, start, end event.Timestamp) []byte {
	buf = appendTimestamp(buf, fOpStartTime, start)
	return appendTimestamp(buf, fOpEndTime, end)
}

// appendTimestamp appends an EBPFTimestamp holding an EBPFOffsetTimestamp.
// Its size is known in advance, so it needs no length placeholder, and its
// head is four bytes written at once: every exchange has six timestamps.
func appendTimestamp(buf []byte, num protowire.Number, t event.Timestamp) []byte {
	inner := 0 // EBPFOffsetTimestamp: offset, left out when zero
	if t != 0 {
		inner = 1 + protowire.SizeVarint(uint64(t))
	}
	// The lengths are at most 2+11: one byte each.
	buf = append(buf, tagByte(num, protowire.BytesType), byte(2+inner), tagByte(fTimestampOffset, protowire.BytesType), byte(inner))
	if t == 0 {
		return buf
	}
	return appendUvarint(append(buf, tagByte(fOffsetOffset, protowire.VarintType)), uint64(t))
}

func appendWriteMetrics(buf []byte, m *event.SendMetrics) []byte {
	has := func(b event.Metric) bool { return m.Measured&b != 0 }
	var mk int
	if has(writeL4Bits) {
		buf, mk = openField(buf, fWriteL4)
		if has(event.MetricL4Duration) {
			buf = appendVarint(buf, fWL4TotalDuration, m.L4Duration)
		}
		if has(event.MetricPackets) {
			buf = appendVarint(buf, fWL4TransmitPackets, uint64(m.Packets))
		}
		if has(event.MetricRetransmits) {
			buf = appendVarint(buf, fWL4RetransmitPackets, uint64(m.Retransmits))
		}
		if has(event.MetricDrops) {
			for _, d := range m.Drops {
				var md int
				buf, md = openField(buf, fWL4LossPackages)
				buf = appendString(buf, fLossLocation, d.Reason)
				buf = appendInt32(buf, fLossCount, int32(min(d.Count, 1<<31-1)))
				buf = closeField(buf, md)
			}
		}
		if has(event.MetricPackets) {
			buf = appendVarint(buf, fWL4PackageSize, m.PacketBytes)
		}
		buf = closeField(buf, mk)
	}
	if has(writeL3Bits) {
		buf, mk = openField(buf, fWriteL3)
		if has(event.MetricL3Duration) {
			buf = appendVarint(buf, fWL3TotalDuration, m.L3Duration)
		}
		if has(event.MetricL3Split) {
			buf = appendVarint(buf, fWL3LocalDuration, m.L3LocalDuration)
			buf = appendVarint(buf, fWL3OutputDuration, m.L3OutputDuration)
		}
		if has(event.MetricResolveMAC) {
			buf = appendVarint(buf, fWL3ResolveMACCount, uint64(m.ResolveMACCount))
			buf = appendVarint(buf, fWL3ResolveMACDuration, m.ResolveMACDuration)
		}
		if has(event.MetricNetfilter) {
			buf = appendVarint(buf, fWL3NetFilterCount, uint64(m.NetfilterCount))
			buf = appendVarint(buf, fWL3NetFilterDuration, m.NetfilterDuration)
		}
		buf = closeField(buf, mk)
	}
	if has(writeL2Bits) {
		buf, mk = openField(buf, fWriteL2)
		if has(event.MetricL2Duration) {
			buf = appendVarint(buf, fWL2TotalDuration, m.L2Duration)
		}
		buf = appendVarint(buf, fWL2Ifindex, uint64(m.IfIndex))
		if has(event.MetricL2Queue) {
			buf = appendVarint(buf, fWL2EnterQueueCount, uint64(m.EnterQueueCount))
			buf = appendVarint(buf, fWL2ReadySendDuration, m.ReadySendDuration)
			buf = appendVarint(buf, fWL2DeviceSendDuration, m.DeviceSendDuration)
		}
		buf = closeField(buf, mk)
	}
	return buf
}

func appendReadMetrics(buf []byte, m *event.RecvMetrics) []byte {
	has := func(b event.Metric) bool { return m.Measured&b != 0 }
	var mk int
	if has(readL2Bits) {
		buf, mk = openField(buf, fReadL2)
		buf = appendVarint(buf, fRL2Ifindex, uint64(m.IfIndex))
		if has(event.MetricPackets) {
			buf = appendVarint(buf, fRL2PackageCount, uint64(m.Packets))
			buf = appendVarint(buf, fRL2PackageSize, m.PacketBytes)
		}
		if has(event.MetricRecvQueue) {
			buf = appendVarint(buf, fRL2ToQueueDuration, m.ToQueueDuration)
			buf = appendVarint(buf, fRL2FromQueueDuration, m.FromQueueDuration)
		}
		buf = closeField(buf, mk)
	}
	if has(readL3Bits) {
		buf, mk = openField(buf, fReadL3)
		if has(event.MetricL3Duration) {
			buf = appendVarint(buf, fRL3TotalDuration, m.L3Duration)
		}
		if has(event.MetricL3Split) {
			buf = appendVarint(buf, fRL3RecvDuration, m.L3RecvDuration)
			buf = appendVarint(buf, fRL3LocalDuration, m.L3LocalDuration)
		}
		if has(event.MetricNetfilter) {
			buf = appendVarint(buf, fRL3NetFilterCount, uint64(m.NetfilterCount))
			buf = appendVarint(buf, fRL3NetFilterDuration, m.NetfilterDuration)
		}
		buf = closeField(buf, mk)
	}
	if has(readL4Bits) {
		buf, mk = openField(buf, fReadL4)
		buf = appendVarint(buf, fRL4TotalDuration, m.L4Duration)
		buf = closeField(buf, mk)
	}
	return buf
}

// appendHTTPLog appends a record that passed unexportable as an
// AccessLogProtocolLogs. The exchange spans from the first request byte to
// the last response byte; the OAP takes its latency as end - start.
func appendHTTPLog(buf []byte, num protowire.Number, r *record.Record) []byte {
	method, _ := httpMethod(r.Method)
	version := alv3.AccessLogHTTPProtocolVersion_HTTP1
	if r.Protocol == record.HTTP2 {
		version = alv3.AccessLogHTTPProtocolVersion_HTTP2
	}
	end := max(r.RespEnd, r.ReqStart)

	buf, m := openField(buf, num)
	buf, mh := openField(buf, fProtoHTTP)
	buf = appendTimestamp(buf, fHTTPStartTime, r.ReqStart)
	buf = appendTimestamp(buf, fHTTPEndTime, end)
	buf = appendVarint(buf, fHTTPVersion, uint64(version))

	var mr int
	buf, mr = openField(buf, fHTTPRequest)
	buf = appendVarint(buf, fReqMethod, uint64(method))
	// The endpoint is named by the path alone, as the OAP and SkyWalking's
	// agents name it: a query string would make one endpoint per value.
	// (The full target stays in Weir's own /api/v1/requests.)
	buf = appendString(buf, fReqPath, endpointPath(r.Path))
	buf = appendVarint(buf, fReqHeaderBytes, r.ReqHeaderBytes)
	buf = appendVarint(buf, fReqBodyBytes, r.ReqBodyBytes)
	buf = appendTraceInfo(buf, fReqTrace, r.Trace)
	buf = appendString(buf, fReqHost, r.Host)
	buf = closeField(buf, mr)

	buf, mr = openField(buf, fHTTPResponse)
	buf = appendInt32(buf, fRespStatus, int32(r.Status))
	buf = appendVarint(buf, fRespHeaderBytes, r.RespHeaderBytes)
	buf = appendVarint(buf, fRespBodyBytes, r.RespBodyBytes)
	buf = closeField(buf, mr)

	return closeField(closeField(buf, mh), m)
}

// endpointPath is a request target without its query and fragment.
//
// A byte loop rather than strings.IndexAny: for a target of up to eight
// bytes IndexAny looks each byte up with IndexRune, which was 7% of
// BenchmarkEncodeExchange's profile; '?' and '#' are ASCII, so no byte of
// a multi-byte UTF-8 sequence can match either.
func endpointPath(target string) string {
	for i := 0; i < len(target); i++ {
		if c := target[i]; c == '?' || c == '#' {
			return target[:i]
		}
	}
	return target
}

// appendTraceInfo appends the trace context. The protocol knows SkyWalking
// (sw8) and Zipkin (B3) only; a W3C traceparent has no provider value and
// is not sent.
func appendTraceInfo(buf []byte, num protowire.Number, t tracectx.Context) []byte {
	var provider alv3.AccessLogTraceInfoProvider
	switch t.Kind {
	case tracectx.KindSW8:
		provider = alv3.AccessLogTraceInfoProvider_SkyWalking
	case tracectx.KindB3:
		provider = alv3.AccessLogTraceInfoProvider_Zipkin
	default:
		return buf
	}
	buf, m := openField(buf, num)
	buf = appendVarint(buf, fTraceProvider, uint64(provider))
	buf = appendString(buf, fTraceID, t.TraceID)
	if t.Kind == tracectx.KindSW8 {
		buf = appendString(buf, fTraceSegmentID, t.SegmentID)
	}
	buf = appendString(buf, fTraceSpanID, t.SpanID)
	return closeField(buf, m)
}

// Wire primitives. Scalars equal to zero and empty strings are left out, as
// proto3 does for fields without presence; messages are always written,
// even empty, since a set message field has presence.

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	return appendUvarint(append(b, tagByte(num, protowire.VarintType)), v)
}

// tagByte is the tag of a field numbered below 16, which is one byte. All
// of this file's fields are (TestFieldNumbersFitOneByteTags checks every
// field constant), so tags are written as one byte throughout, without
// protowire's general varint.
func tagByte(num protowire.Number, typ protowire.Type) byte {
	return byte(num)<<3 | byte(typ)
}

// appendUvarint appends v as a varint. It is protowire.AppendVarint's
// output; the loop was a quarter faster than protowire's unrolled appends
// on the timestamps and sizes the encoder writes most.
func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// appendInt32 appends an int32 field: negative values are sign-extended to
// ten bytes, as the protobuf encoding of int32 requires.
func appendInt32(b []byte, num protowire.Number, v int32) []byte {
	return appendVarint(b, num, uint64(int64(v)))
}

func appendBool(b []byte, num protowire.Number, v bool) []byte {
	if !v {
		return b
	}
	return appendVarint(b, num, 1)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return appendRepeatedString(b, num, s)
}

// appendRepeatedString appends s even when empty, as an element of a
// repeated field is. Invalid UTF-8 is replaced (see the file comment).
func appendRepeatedString(b []byte, num protowire.Number, s string) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	b = appendUvarint(append(b, tagByte(num, protowire.BytesType)), uint64(len(s)))
	return append(b, s...)
}

// openField starts a length-delimited field whose length is not known yet:
// it appends the tag and a one-byte length placeholder, and returns the
// placeholder's offset for closeField.
func openField(b []byte, num protowire.Number) ([]byte, int) {
	return append(b, tagByte(num, protowire.BytesType), 0), len(b) + 1
}

// closeField ends the field openField started at mark: it writes the
// length of what was appended since, moving it right when the length needs
// more than the placeholder's byte (rare: most nested messages are shorter
// than 128 bytes).
func closeField(b []byte, mark int) []byte {
	n := len(b) - mark - 1
	if n < 0x80 {
		b[mark] = byte(n)
		return b
	}
	k := protowire.SizeVarint(uint64(n))
	b = append(b, make([]byte, k-1)...)
	copy(b[mark+k:], b[mark+1:mark+1+n])
	protowire.AppendVarint(b[:mark], uint64(n))
	return b
}
