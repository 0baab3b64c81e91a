package skywalking

import (
	"net/netip"
	"slices"
	"strings"

	commonv3 "skywalking.apache.org/repo/goapi/collect/common/v3"
	alv3 "skywalking.apache.org/repo/goapi/collect/ebpf/accesslog/v3"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/protocol/record"
	"github.com/weirnet/weir/daemon/protocol/tracectx"
)

// This file is the reference implementation of the wire format: the
// builder as it was before messages were hand-encoded (encode.go), turning
// a batch into goapi structs that proto.Marshal encodes. It is test-only;
// the equivalence tests (encode_test.go) require that encode produces, for
// the same batch, exactly the bytes proto.Marshal produces from these
// structs.

// build converts one batch into the messages of one collect stream:
//
//   - the first message carries node (the OAP reads node from the first
//     message of every stream);
//   - entries are grouped per connection (in order of first appearance, and
//     in queue order within a connection), and a connection is sent once,
//     on the first message of its group: it stays in force at the OAP until
//     the next one;
//   - a group's kernel operations travel together in one message (split at
//     maxKernelLogsPerMessage); each HTTP exchange is its own message whose
//     kernel logs are the exchange's related read/write operations.
//
// An exchange that cannot be a protocol log (no response seen, or a method
// the protocol has no enum for) is not invented into one: its kernel
// operations are still sent, with the group's other kernel logs (the skip
// was counted when the exchange was queued).
func (b *builder) build(batch []entry, node *alv3.EBPFAccessLogNodeInfo) []*alv3.EBPFAccessLogMessage {
	groups := refGroups(batch)
	msgs := make([]*alv3.EBPFAccessLogMessage, 0, len(groups)*2)
	for gi := range groups {
		g := &groups[gi]
		// The connection's protocol is the last one its entries said
		// (an exchange's record, or the pipeline's with an op); TCP
		// when none did, and for TLS, which is marked as such.
		proto, tls, decrypted := alv3.AccessLogProtocolType_TCP, false, false
		for _, e := range batch {
			if e.conn().ID != g.conn.ID {
				continue
			}
			if e.conn().TLS != "" {
				decrypted = true
			}
			switch {
			case e.ex != nil && e.ex.Record != nil:
				proto, tls = protocolType(e.ex.Record.Protocol), false
			case e.ex != nil:
				proto, tls = alv3.AccessLogProtocolType_HTTP_1, false
			case e.proto == flow.ProtoHTTP1:
				proto, tls = alv3.AccessLogProtocolType_HTTP_1, false
			case e.proto == flow.ProtoHTTP2:
				proto, tls = alv3.AccessLogProtocolType_HTTP_2, false
			case e.proto == flow.ProtoTCP:
				proto, tls = alv3.AccessLogProtocolType_TCP, false
			case e.proto == flow.ProtoTLS:
				proto, tls = alv3.AccessLogProtocolType_TCP, true
			}
		}
		// A connection whose plaintext a TLS library gave is TLS with
		// its parsed protocol.
		conn := b.connection(g.conn, proto, tls || decrypted)
		first := len(msgs)
		for start := 0; start < len(g.ops); start += maxKernelLogsPerMessage {
			end := min(start+maxKernelLogsPerMessage, len(g.ops))
			logs := make([]*alv3.AccessLogKernelLog, 0, end-start)
			for _, op := range g.ops[start:end] {
				logs = append(logs, kernelLog(op))
			}
			msgs = append(msgs, &alv3.EBPFAccessLogMessage{KernelLogs: logs})
		}
		for _, ex := range g.exs {
			var logs []*alv3.AccessLogKernelLog
			if len(ex.Ops) > 0 {
				logs = make([]*alv3.AccessLogKernelLog, 0, len(ex.Ops))
				for _, op := range ex.Ops {
					logs = append(logs, kernelLog(op))
				}
			}
			msgs = append(msgs, &alv3.EBPFAccessLogMessage{KernelLogs: logs, ProtocolLog: httpLog(ex.Record)})
		}
		if len(msgs) > first {
			msgs[first].Connection = conn
		}
	}
	if len(msgs) > 0 {
		msgs[0].Node = node
	}
	return msgs
}

// refGroup is a connection's entries in a batch: kernel operations (of
// operations and of exchanges that cannot be protocol logs) and exchanges.
type refGroup struct {
	conn *flow.Connection
	ops  []*flow.KernelOp
	exs  []*flow.Exchange
}

// refGroups groups a batch per connection, in order of first appearance and
// in queue order within a connection, independently of the encoder's
// grouping (which works on encoded items).
func refGroups(batch []entry) []refGroup {
	var groups []refGroup
	index := map[event.ConnID]int{}
	for _, e := range batch {
		c := e.conn()
		gi, ok := index[c.ID]
		if !ok {
			gi = len(groups)
			index[c.ID] = gi
			groups = append(groups, refGroup{conn: c})
		}
		g := &groups[gi]
		switch {
		case e.op != nil:
			g.ops = append(g.ops, e.op)
		case unexportable(e.ex.Record) != "":
			g.ops = append(g.ops, e.ex.Ops...)
		default:
			g.exs = append(g.exs, e.ex)
		}
	}
	return groups
}

func (b *builder) connection(c *flow.Connection, proto alv3.AccessLogProtocolType, tls bool) *alv3.AccessLogConnection {
	role := commonv3.DetectPoint_client
	if c.Role == event.RoleServer {
		role = commonv3.DetectPoint_server
	}
	mode := alv3.AccessLogConnectionTLSMode_Plain
	if tls {
		mode = alv3.AccessLogConnectionTLSMode_TLS
	}
	return &alv3.AccessLogConnection{
		Local:    b.localAddress(c),
		Remote:   b.remoteAddress(c.Remote),
		Role:     role,
		TlsMode:  mode,
		Protocol: proto,
	}
}

func (b *builder) localAddress(c *flow.Connection) *alv3.ConnectionAddress {
	if c.Local.Pod == nil {
		// Every monitored connection belongs to an enrolled pod; a
		// missing identity is a pipeline race, and the IP lets the OAP
		// resolve it itself.
		return ipAddress(c.Local.Addr)
	}
	return &alv3.ConnectionAddress{Address: &alv3.ConnectionAddress_Kubernetes{Kubernetes: &alv3.KubernetesProcessAddress{
		ServiceName:   b.serviceName(c.Local.Pod),
		PodName:       c.Local.Pod.Name,
		ContainerName: containerName(c.Process),
		ProcessName:   c.Process.Comm,
		Port:          int32(c.Local.Addr.Port()),
	}}}
}

func (b *builder) remoteAddress(p flow.Peer) *alv3.ConnectionAddress {
	if p.Pod == nil {
		return ipAddress(p.Addr)
	}
	// A pod on this node: its process and container are those of the
	// other connection end, which this one does not know.
	return &alv3.ConnectionAddress{Address: &alv3.ConnectionAddress_Kubernetes{Kubernetes: &alv3.KubernetesProcessAddress{
		ServiceName: b.serviceName(p.Pod),
		PodName:     p.Pod.Name,
		Port:        int32(p.Addr.Port()),
	}}}
}

func ipAddress(a netip.AddrPort) *alv3.ConnectionAddress {
	return &alv3.ConnectionAddress{Address: &alv3.ConnectionAddress_Ip{Ip: &alv3.IPAddress{
		Host: a.Addr().Unmap().String(), // the OAP looks pods and services up by dotted IPv4
		Port: int32(a.Port()),
	}}}
}

func timestamp(t event.Timestamp) *alv3.EBPFTimestamp {
	return &alv3.EBPFTimestamp{Timestamp: &alv3.EBPFTimestamp_Offset{Offset: &alv3.EBPFOffsetTimestamp{Offset: uint64(t)}}}
}

// kernelLog maps one kernel operation. Metric fields are copied only when
// their Measured bit is set; a layer with no measured field is left absent
// (nil), and an unmeasured field inside a present layer stays zero. The
// protocol has no "not measured" marker, so absent/zero is the closest
// honest encoding; which metrics a node can measure is reported by the
// daemon itself (API, Prometheus). Socket stats taken at close (RTT) have
// no field in the protocol and are not sent.
func kernelLog(op *flow.KernelOp) *alv3.AccessLogKernelLog {
	start, end := timestamp(op.Start), timestamp(op.End)
	switch op.Kind {
	case flow.OpConnect:
		return &alv3.AccessLogKernelLog{Operation: &alv3.AccessLogKernelLog_Connect{Connect: &alv3.AccessLogKernelConnectOperation{
			StartTime: start, EndTime: end, Success: op.Success,
		}}}
	case flow.OpAccept:
		return &alv3.AccessLogKernelLog{Operation: &alv3.AccessLogKernelLog_Accept{Accept: &alv3.AccessLogKernelAcceptOperation{
			StartTime: start, EndTime: end,
		}}}
	case flow.OpClose:
		return &alv3.AccessLogKernelLog{Operation: &alv3.AccessLogKernelLog_Close{Close: &alv3.AccessLogKernelCloseOperation{
			StartTime: start, EndTime: end, Success: op.Success,
		}}}
	case flow.OpWrite:
		w := &alv3.AccessLogKernelWriteOperation{StartTime: start, EndTime: end, Syscall: writeSyscall(op.Syscall)}
		if m := op.Send; m != nil {
			w.L4Metrics, w.L3Metrics, w.L2Metrics = writeMetrics(m)
		}
		return &alv3.AccessLogKernelLog{Operation: &alv3.AccessLogKernelLog_Write{Write: w}}
	default: // flow.OpRead; the pipeline produces no other kind
		r := &alv3.AccessLogKernelReadOperation{StartTime: start, EndTime: end, Syscall: readSyscall(op.Syscall)}
		if m := op.Recv; m != nil {
			r.L2Metrics, r.L3Metrics, r.L4Metrics = readMetrics(m)
		}
		return &alv3.AccessLogKernelLog{Operation: &alv3.AccessLogKernelLog_Read{Read: r}}
	}
}

func writeMetrics(m *event.SendMetrics) (*alv3.AccessLogKernelWriteL4Metrics, *alv3.AccessLogKernelWriteL3Metrics, *alv3.AccessLogKernelWriteL2Metrics) {
	has := func(b event.Metric) bool { return m.Measured&b != 0 }
	var l4 *alv3.AccessLogKernelWriteL4Metrics
	if has(writeL4Bits) {
		l4 = &alv3.AccessLogKernelWriteL4Metrics{}
		if has(event.MetricL4Duration) {
			l4.TotalDuration = m.L4Duration
		}
		if has(event.MetricPackets) {
			l4.TotalTransmitPackageCount = int64(m.Packets)
			l4.TotalPackageSize = int64(m.PacketBytes)
		}
		if has(event.MetricRetransmits) {
			l4.TotalRetransmitPackageCount = int64(m.Retransmits)
		}
		if has(event.MetricDrops) && len(m.Drops) > 0 {
			l4.LossPackageMetrics = make([]*alv3.AccessLogLossPackageMetrics, 0, len(m.Drops))
			for _, d := range m.Drops {
				l4.LossPackageMetrics = append(l4.LossPackageMetrics,
					&alv3.AccessLogLossPackageMetrics{Location: d.Reason, Count: int32(min(d.Count, 1<<31-1))})
			}
		}
	}
	var l3 *alv3.AccessLogKernelWriteL3Metrics
	if has(writeL3Bits) {
		l3 = &alv3.AccessLogKernelWriteL3Metrics{}
		if has(event.MetricL3Duration) {
			l3.TotalDuration = m.L3Duration
		}
		if has(event.MetricL3Split) {
			l3.TotalLocalDuration = m.L3LocalDuration
			l3.TotalOutputDuration = m.L3OutputDuration
		}
		if has(event.MetricResolveMAC) {
			l3.TotalResolveMACCount = uint64(m.ResolveMACCount)
			l3.TotalResolveMACDuration = m.ResolveMACDuration
		}
		if has(event.MetricNetfilter) {
			l3.TotalNetFilterCount = uint64(m.NetfilterCount)
			l3.TotalNetFilterDuration = m.NetfilterDuration
		}
	}
	var l2 *alv3.AccessLogKernelWriteL2Metrics
	if has(writeL2Bits) {
		l2 = &alv3.AccessLogKernelWriteL2Metrics{Ifindex: m.IfIndex}
		if has(event.MetricL2Duration) {
			l2.TotalDuration = m.L2Duration
		}
		if has(event.MetricL2Queue) {
			l2.TotalEnterQueueBufferCount = uint64(m.EnterQueueCount)
			l2.TotalReadySendDuration = m.ReadySendDuration
			l2.TotalNetDeviceSendDuration = m.DeviceSendDuration
		}
	}
	return l4, l3, l2
}

func readMetrics(m *event.RecvMetrics) (*alv3.AccessLogKernelReadL2Metrics, *alv3.AccessLogKernelReadL3Metrics, *alv3.AccessLogKernelReadL4Metrics) {
	has := func(b event.Metric) bool { return m.Measured&b != 0 }
	var l2 *alv3.AccessLogKernelReadL2Metrics
	if has(readL2Bits) {
		l2 = &alv3.AccessLogKernelReadL2Metrics{Ifindex: m.IfIndex}
		if has(event.MetricPackets) {
			l2.TotalPackageCount = m.Packets
			l2.TotalPackageSize = m.PacketBytes
		}
		if has(event.MetricRecvQueue) {
			l2.TotalPackageToQueueDuration = m.ToQueueDuration
			l2.TotalRcvPackageFromQueueDuration = m.FromQueueDuration
		}
	}
	var l3 *alv3.AccessLogKernelReadL3Metrics
	if has(readL3Bits) {
		l3 = &alv3.AccessLogKernelReadL3Metrics{}
		if has(event.MetricL3Duration) {
			l3.TotalDuration = m.L3Duration
		}
		if has(event.MetricL3Split) {
			l3.TotalRecvDuration = m.L3RecvDuration
			l3.TotalLocalDuration = m.L3LocalDuration
		}
		if has(event.MetricNetfilter) {
			l3.TotalNetFilterCount = uint64(m.NetfilterCount)
			l3.TotalNetFilterDuration = m.NetfilterDuration
		}
	}
	var l4 *alv3.AccessLogKernelReadL4Metrics
	if has(readL4Bits) {
		l4 = &alv3.AccessLogKernelReadL4Metrics{TotalDuration: m.L4Duration}
	}
	return l2, l3, l4
}

// httpLog maps a record that passed unexportable. The exchange spans from
// the first request byte to the last response byte; the OAP takes its
// latency as end - start.
func httpLog(r *record.Record) *alv3.AccessLogProtocolLogs {
	method, _ := httpMethod(r.Method)
	version := alv3.AccessLogHTTPProtocolVersion_HTTP1
	if r.Protocol == record.HTTP2 {
		version = alv3.AccessLogHTTPProtocolVersion_HTTP2
	}
	end := r.RespEnd
	if end < r.ReqStart {
		end = r.ReqStart
	}
	return &alv3.AccessLogProtocolLogs{Protocol: &alv3.AccessLogProtocolLogs_Http{Http: &alv3.AccessLogHTTPProtocol{
		StartTime: timestamp(r.ReqStart),
		EndTime:   timestamp(end),
		Version:   version,
		Request: &alv3.AccessLogHTTPProtocolRequest{
			Method:             method,
			Path:               pathOnly(r.Path),
			SizeOfHeadersBytes: r.ReqHeaderBytes,
			SizeOfBodyBytes:    r.ReqBodyBytes,
			Trace:              traceInfo(r.Trace),
			Host:               r.Host,
		},
		Response: &alv3.AccessLogHTTPProtocolResponse{
			StatusCode:         int32(r.Status),
			SizeOfHeadersBytes: r.RespHeaderBytes,
			SizeOfBodyBytes:    r.RespBodyBytes,
		},
	}}}
}

// traceInfo maps the trace context. The protocol knows SkyWalking (sw8) and
// Zipkin (B3) only; a W3C traceparent has no provider value and is not sent.
func traceInfo(t tracectx.Context) *alv3.AccessLogTraceInfo {
	switch t.Kind {
	case tracectx.KindSW8:
		return &alv3.AccessLogTraceInfo{Provider: alv3.AccessLogTraceInfoProvider_SkyWalking,
			TraceId: t.TraceID, TraceSegmentId: t.SegmentID, SpanId: t.SpanID}
	case tracectx.KindB3:
		return &alv3.AccessLogTraceInfo{Provider: alv3.AccessLogTraceInfoProvider_Zipkin,
			TraceId: t.TraceID, SpanId: t.SpanID}
	}
	return nil
}

// nodeInfo is the node info the exporter sends on the first message of
// every stream (see encodeNode).
func nodeInfo(cfg Config) *alv3.EBPFAccessLogNodeInfo {
	n := &alv3.EBPFAccessLogNodeInfo{
		Name:        cfg.NodeName,
		ClusterName: cfg.Cluster,
		BootTime:    &commonv3.Instant{Seconds: cfg.BootTime.Unix(), Nanos: int32(cfg.BootTime.Nanosecond())},
	}
	for _, i := range cfg.NetInterfaces {
		n.NetInterfaces = append(n.NetInterfaces, &alv3.EBPFAccessLogNodeNetInterface{
			Index: int32(i.Index), Mtu: int32(i.MTU), Name: i.Name,
		})
	}
	if len(cfg.ExcludeNamespaces) > 0 {
		n.Policy = &alv3.EBPFAccessLogPolicy{ExcludeNamespaces: slices.Clone(cfg.ExcludeNamespaces)}
	}
	return n
}

// pathOnly is the request target without its query and fragment, as the
// OAP and SkyWalking's agents name endpoints.
func pathOnly(target string) string {
	if q, _, ok := strings.Cut(target, "?"); ok {
		target = q
	}
	if f, _, ok := strings.Cut(target, "#"); ok {
		target = f
	}
	return target
}
