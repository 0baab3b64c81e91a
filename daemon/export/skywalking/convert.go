package skywalking

import (
	"bytes"
	"strings"
	"text/template"

	alv3 "skywalking.apache.org/repo/goapi/collect/ebpf/accesslog/v3"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/conntrack"
	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/protocol/record"
)

// maxKernelLogsPerMessage splits a connection's kernel logs over several
// messages so that one busy connection cannot build a message near gRPC's
// default 4 MiB receive limit at the OAP. The connection stays in force, so
// the follow-up messages need no connection of their own.
const maxKernelLogsPerMessage = 256

// maxServiceNames bounds the cache of rendered service names (one per pod
// identity). When full it is cleared: pods are few, so this only happens
// under churn, and re-rendering is cheap.
const maxServiceNames = 4096

// ServiceNameData is what ServiceNameTemplate is executed over.
type ServiceNameData struct {
	ServiceName string // flow.Pod.Service, or the pod name when the resolver found none
	Namespace   string
	PodName     string
	PodUID      string
	Cluster     string
	Node        string
}

// builder turns taken queue entries into the encoded messages of one collect
// stream (see encode). It lives on the sender's goroutine only, so its caches
// and buffers need no lock.
type builder struct {
	tmpl    *template.Template
	cluster string
	node    string
	names   map[flow.Pod]string
	buf     bytes.Buffer
	stats   *stats
	// conntrack translates client connections' remotes (nil: off).
	conntrack *conntrack.Resolver
	// pods returns the current identity of an enrolled pod (nil: names
	// are those the entries were queued with).
	pods func(id uint32) *flow.Pod

	// reused per batch
	groups []group
	index  map[event.ConnID]int
	enc    encoder
	// arena and pending encode entries for encode (tests, benchmarks);
	// the exporter encodes at enqueue with its own arena.
	arena   arena
	pending []item
}

type group struct {
	conn *flow.Connection
	// ops are the items whose kernel logs travel together, exs the
	// exchanges, each a message; both index the batch, in queue order.
	ops, exs []int32
	// logs is the number of kernel logs of ops.
	logs int
	// closes says the group's last kernel log is the connection's close.
	closes bool
	// proto is the connection's protocol as last known from the group's
	// items (ProtoUnknown when none said).
	proto flow.Protocol
	// tls says an entry's connection had its plaintext read through a
	// TLS library: the connection's first entries (its connect or
	// accept) predate that knowledge.
	tls bool
}

func newBuilder(tmpl *template.Template, cluster, node string, st *stats) *builder {
	return &builder{
		tmpl: tmpl, cluster: cluster, node: node, stats: st,
		names: make(map[flow.Pod]string),
		index: make(map[event.ConnID]int),
	}
}

// group sorts a batch into b.groups: items grouped per connection, in order
// of first appearance, and in queue order within a connection. A group's
// kernel operations (ops) travel together; each exportable HTTP exchange
// (exs) becomes a message of its own. An exchange that cannot be a protocol
// log (no response seen, or a method the protocol has no enum for) is not
// invented into one: its kernel operations are still sent, with the group's
// other kernel logs (the skip was counted when the exchange was queued).
func (b *builder) group(batch []item) {
	clear(b.index)
	for i := range b.groups {
		g := &b.groups[i]
		*g = group{ops: g.ops[:0], exs: g.exs[:0]}
	}
	b.groups = b.groups[:0]
	for i := range batch {
		it := &batch[i]
		c := it.conn
		gi, ok := b.index[c.ID]
		if !ok {
			gi = len(b.groups)
			b.index[c.ID] = gi
			if gi < cap(b.groups) {
				b.groups = b.groups[:gi+1]
			} else {
				b.groups = append(b.groups, group{})
			}
			b.groups[gi].conn = c
		}
		g := &b.groups[gi]
		if c.TLS != "" {
			g.tls = true
		}
		if it.proto != flow.ProtoUnknown {
			g.proto = it.proto
		}
		if it.exchange {
			g.exs = append(g.exs, int32(i))
			continue
		}
		g.ops = append(g.ops, int32(i))
		if it.logs > 0 {
			g.logs += int(it.logs)
			g.closes = it.closes
		}
	}
}

// groupProtocol is the protocol of a group's connection: what the
// pipeline or its exchanges said the connection carries, not what kinds of
// entries the batch happens to hold (a batch holding only the connect of
// an HTTP connection is HTTP). TCP when nothing said otherwise, and for
// TLS, whose content Weir cannot read.
func groupProtocol(g *group) alv3.AccessLogProtocolType {
	switch g.proto {
	case flow.ProtoHTTP1:
		return alv3.AccessLogProtocolType_HTTP_1
	case flow.ProtoHTTP2:
		return alv3.AccessLogProtocolType_HTTP_2
	}
	return alv3.AccessLogProtocolType_TCP
}

// recordProto is the connection protocol an exchange shows.
func recordProto(r *record.Record) flow.Protocol {
	if r != nil && r.Protocol == record.HTTP2 {
		return flow.ProtoHTTP2
	}
	return flow.ProtoHTTP1
}

// unexportable says why an exchange cannot be sent as an HTTP protocol log,
// or "" when it can.
func unexportable(r *record.Record) string {
	switch {
	case r == nil:
		return "no_record"
	case r.Status == 0:
		// The OAP counts status < 500 as success: a missing response
		// must not become a successful request.
		return "no_response"
	}
	if _, ok := httpMethod(r.Method); !ok {
		return "unknown_method"
	}
	return ""
}

func protocolType(p record.Protocol) alv3.AccessLogProtocolType {
	if p == record.HTTP2 {
		return alv3.AccessLogProtocolType_HTTP_2
	}
	return alv3.AccessLogProtocolType_HTTP_1
}

// shortContainerID is the 12-character form container runtimes print. The
// flow model carries the id only (the CRI container name is not resolved),
// so this is what names the container.
func shortContainerID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// serviceName renders the service name template for a pod, cached.
//
// With a cluster configured the name is prefixed "cluster::" unless the
// template already produced a group ("::"): the OAP names peers it resolves
// from an IP address "cluster::service.namespace", and the same service must
// get the same name from both sides.
func (b *builder) serviceName(p *flow.Pod) string {
	if b.pods != nil {
		// Renamed since the entry was queued (the Kubernetes caches
		// synced, a Service was created): the name it has now.
		if cur := b.pods(p.ID); cur != nil && cur.UID == p.UID && cur.Name == p.Name && cur.Namespace == p.Namespace {
			p = cur
		}
	}
	if s, ok := b.names[*p]; ok {
		return s
	}
	d := ServiceNameData{
		ServiceName: p.Service, Namespace: p.Namespace, PodName: p.Name, PodUID: p.UID,
		Cluster: b.cluster, Node: b.node,
	}
	if d.ServiceName == "" {
		d.ServiceName = p.Name
	}
	b.buf.Reset()
	var s string
	if err := b.tmpl.Execute(&b.buf, d); err != nil {
		b.stats.templateErrors.Add(1)
		s = d.ServiceName + "." + d.Namespace
	} else {
		s = b.buf.String()
	}
	if b.cluster != "" && !strings.Contains(s, "::") {
		s = b.cluster + "::" + s
	}
	if len(b.names) >= maxServiceNames {
		clear(b.names)
	}
	b.names[*p] = s
	return s
}

const (
	writeL4Bits = event.MetricL4Duration | event.MetricPackets | event.MetricRetransmits | event.MetricDrops
	writeL3Bits = event.MetricL3Duration | event.MetricL3Split | event.MetricResolveMAC | event.MetricNetfilter
	writeL2Bits = event.MetricL2Duration | event.MetricL2Queue
	readL2Bits  = event.MetricPackets | event.MetricRecvQueue
	readL3Bits  = event.MetricL3Duration | event.MetricL3Split | event.MetricNetfilter
	readL4Bits  = event.MetricL4Duration
)

func writeSyscall(s event.Syscall) alv3.AccessLogKernelWriteSyscall {
	switch s {
	case event.SysWritev:
		return alv3.AccessLogKernelWriteSyscall_Writev
	case event.SysSendto:
		return alv3.AccessLogKernelWriteSyscall_SendTo
	case event.SysSendmsg:
		return alv3.AccessLogKernelWriteSyscall_SendMsg
	case event.SysSendmmsg:
		return alv3.AccessLogKernelWriteSyscall_SendMmsg
	case event.SysSendfile:
		return alv3.AccessLogKernelWriteSyscall_SendFile
	}
	return alv3.AccessLogKernelWriteSyscall_Write
}

func readSyscall(s event.Syscall) alv3.AccessLogKernelReadSyscall {
	switch s {
	case event.SysReadv:
		return alv3.AccessLogKernelReadSyscall_Readv
	case event.SysRecvfrom:
		return alv3.AccessLogKernelReadSyscall_RecvFrom
	case event.SysRecvmsg:
		return alv3.AccessLogKernelReadSyscall_RecvMsg
	case event.SysRecvmmsg:
		return alv3.AccessLogKernelReadSyscall_RecvMmsg
	}
	return alv3.AccessLogKernelReadSyscall_Read
}

func httpMethod(m string) (alv3.AccessLogHTTPProtocolRequestMethod, bool) {
	switch m {
	case "GET":
		return alv3.AccessLogHTTPProtocolRequestMethod_Get, true
	case "POST":
		return alv3.AccessLogHTTPProtocolRequestMethod_Post, true
	case "PUT":
		return alv3.AccessLogHTTPProtocolRequestMethod_Put, true
	case "DELETE":
		return alv3.AccessLogHTTPProtocolRequestMethod_Delete, true
	case "HEAD":
		return alv3.AccessLogHTTPProtocolRequestMethod_Head, true
	case "PATCH":
		return alv3.AccessLogHTTPProtocolRequestMethod_Patch, true
	case "OPTIONS":
		return alv3.AccessLogHTTPProtocolRequestMethod_Options, true
	case "TRACE":
		return alv3.AccessLogHTTPProtocolRequestMethod_Trace, true
	case "CONNECT":
		return alv3.AccessLogHTTPProtocolRequestMethod_Connect, true
	}
	return 0, false
}

// containerName is the container's name from the runtime, or its short id
// until the runtime has answered.
func containerName(p flow.Process) string {
	if p.ContainerName != "" {
		return p.ContainerName
	}
	return shortContainerID(p.ContainerID)
}

// remotePeer is the connection's remote as the OAP should resolve it: for
// a client connection to an address that is no local pod, the peer that
// answers according to conntrack (the backend pod behind a ClusterIP),
// else the socket's remote.
func (b *builder) remotePeer(c *flow.Connection) flow.Peer {
	p := c.Remote
	if b.conntrack == nil || c.Role != event.RoleClient || p.Pod != nil || !p.Addr.IsValid() || !c.Local.Addr.IsValid() {
		return p
	}
	p.Addr = b.conntrack.Peer(conntrack.Tuple{Local: c.Local.Addr, Remote: c.Remote.Addr})
	return p
}

// forget drops what the builder cached for a closed connection.
func (b *builder) forget(c *flow.Connection) {
	if b.conntrack != nil && c.Role == event.RoleClient && c.Remote.Pod == nil {
		b.conntrack.Forget(conntrack.Tuple{Local: c.Local.Addr, Remote: c.Remote.Addr})
	}
}
