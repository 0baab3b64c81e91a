package skywalking

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	commonv3 "skywalking.apache.org/repo/goapi/collect/common/v3"
	alv3 "skywalking.apache.org/repo/goapi/collect/ebpf/accesslog/v3"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/protocol/record"
)

var (
	remoteIP       = netip.MustParseAddrPort("192.0.2.7:443")
	remoteCatalog  = netip.MustParseAddrPort("10.0.0.2:8080")
	remoteFrontend = netip.MustParseAddrPort("10.0.0.1:40000")
)

func TestEveryStreamStartsWithNodeAndConnectionPrecedesItsLogs(t *testing.T) {
	r := newReceiver(t, nil)
	cfg := testConfig(r.addr)
	cfg.Cluster = "prod"
	cfg.ExcludeNamespaces = []string{"kube-system"}
	cfg.BatchSize = 7 // several streams
	cfg.QueueSize = 1000
	e := newExporter(t, cfg)

	// Three connections, their operations interleaved as a pipeline
	// would deliver them.
	conns := []*flow.Connection{
		conn(1, event.RoleClient, podFrontend, 40001, remoteCatalog, podCatalog),
		conn(2, event.RoleServer, podCatalog, 8080, remoteFrontend, podFrontend),
		conn(3, event.RoleClient, podFrontend, 40003, remoteIP, nil),
	}
	const perConn = 10
	seq := uint64(1)
	for i := 0; i < perConn; i++ {
		for _, c := range conns {
			e.testOp(seqOp(c, flow.OpWrite, seq*10))
			seq++
		}
	}
	e.Exchange(exchange(conns[1], record.HTTP11, "GET", "/items", 200))
	runExporter(t, e)
	waitFor(t, 5*time.Second, "all entries acknowledged", func() bool {
		k, p := r.counts()
		return k == 3*perConn && p == 1 && e.Stats().Sent == 3*perConn+1
	})

	streams := r.streams()
	if len(streams) < 2 {
		t.Fatalf("got %d streams, want several (batch size 7)", len(streams))
	}
	for si, s := range streams {
		for mi, m := range s {
			if (mi == 0) != (m.Node != nil) {
				t.Fatalf("stream %d message %d: node present = %v, want only on the first message", si, mi, m.Node != nil)
			}
		}
		n := s[0].Node
		if n.Name != "node-a" || n.ClusterName != "prod" {
			t.Errorf("node = %q cluster %q, want node-a / prod", n.Name, n.ClusterName)
		}
		if n.BootTime.GetSeconds() != testBoot.Unix() || n.BootTime.GetNanos() != int32(testBoot.Nanosecond()) {
			t.Errorf("boot time = %v, want %v", n.BootTime, testBoot)
		}
		if len(n.NetInterfaces) != 2 || n.NetInterfaces[1].Name != "eth0" || n.NetInterfaces[1].Index != 2 || n.NetInterfaces[1].Mtu != 1500 {
			t.Errorf("interfaces = %v", n.NetInterfaces)
		}
		if got := n.GetPolicy().GetExcludeNamespaces(); len(got) != 1 || got[0] != "kube-system" {
			t.Errorf("policy exclude namespaces = %v", got)
		}

		// Replay the stream as the OAP does: the last connection
		// is in force. Each op's sequence number says which
		// connection it belongs to.
		var inForce *alv3.AccessLogConnection
		seen := map[int32]bool{}
		for mi, m := range s {
			if m.Connection != nil {
				port := m.Connection.Local.GetKubernetes().GetPort()
				if seen[port] {
					t.Errorf("stream %d: connection with local port %d sent twice", si, port)
				}
				seen[port] = true
				inForce = m.Connection
			}
			if (len(m.KernelLogs) > 0 || m.ProtocolLog != nil) && inForce == nil {
				t.Fatalf("stream %d message %d: logs before any connection", si, mi)
			}
			for _, l := range m.KernelLogs {
				want := conns[(opStart(l)/10-1)%3].Local.Addr.Port()
				if got := inForce.Local.GetKubernetes().GetPort(); got != int32(want) {
					t.Errorf("stream %d: op %d under connection with local port %d, want %d", si, opStart(l), got, want)
				}
			}
			if m.ProtocolLog != nil && inForce.Local.GetKubernetes().GetPort() != 8080 {
				t.Errorf("protocol log under the wrong connection %v", inForce.Local)
			}
		}
	}
	if s := e.Stats(); s.Sent != 3*perConn+1 || s.Received != s.Sent {
		t.Errorf("stats: sent %d received %d, want %d", s.Sent, s.Received, 3*perConn+1)
	}
}

func TestAddressesAndRoles(t *testing.T) {
	r := newReceiver(t, nil)
	cfg := testConfig(r.addr)
	e := newExporter(t, cfg)

	client := conn(1, event.RoleClient, podFrontend, 40001, remoteCatalog, podCatalog)
	server := conn(2, event.RoleServer, podCatalog, 8080, remoteFrontend, podFrontend)
	external := conn(3, event.RoleClient, podFrontend, 40003, netip.MustParseAddrPort("[::ffff:192.0.2.7]:443"), nil)
	e.testOp(seqOp(client, flow.OpConnect, 10))
	e.testOp(seqOp(server, flow.OpAccept, 20))
	e.testOp(seqOp(external, flow.OpConnect, 30))
	runExporter(t, e)
	waitFor(t, 5*time.Second, "3 kernel logs", func() bool { k, _ := r.counts(); return k == 3 })

	byStart := map[uint64]*alv3.AccessLogConnection{}
	for _, s := range r.streams() {
		var c *alv3.AccessLogConnection
		for _, m := range s {
			if m.Connection != nil {
				c = m.Connection
			}
			for _, l := range m.KernelLogs {
				byStart[opStart(l)] = c
			}
		}
	}

	c := byStart[10]
	if c.Role != commonv3.DetectPoint_client {
		t.Errorf("client connection role = %v", c.Role)
	}
	wantLocal := &alv3.KubernetesProcessAddress{ServiceName: "frontend.shop", PodName: "frontend-7d9f",
		ContainerName: "0123456789ab", ProcessName: "nginx", Port: 40001}
	if got := c.Local.GetKubernetes(); !sameK8s(got, wantLocal) {
		t.Errorf("client local = %v, want %v", got, wantLocal)
	}
	wantRemote := &alv3.KubernetesProcessAddress{ServiceName: "catalog.shop", PodName: "catalog-5c4b", Port: 8080}
	if got := c.Remote.GetKubernetes(); !sameK8s(got, wantRemote) {
		t.Errorf("client remote (a local pod) = %v, want %v", got, wantRemote)
	}
	if c.Protocol != alv3.AccessLogProtocolType_TCP || c.TlsMode != alv3.AccessLogConnectionTLSMode_Plain {
		t.Errorf("protocol %v tls %v, want TCP/Plain", c.Protocol, c.TlsMode)
	}

	c = byStart[20]
	if c.Role != commonv3.DetectPoint_server {
		t.Errorf("server connection role = %v", c.Role)
	}
	if got := c.Local.GetKubernetes(); got.GetServiceName() != "catalog.shop" || got.GetPort() != 8080 {
		t.Errorf("server local = %v", got)
	}
	if got := c.Remote.GetKubernetes(); got.GetServiceName() != "frontend.shop" || got.GetPodName() != "frontend-7d9f" {
		t.Errorf("server remote = %v", got)
	}

	c = byStart[30]
	ip := c.Remote.GetIp()
	if ip == nil || ip.Host != "192.0.2.7" || ip.Port != 443 {
		t.Errorf("external remote = %v, want IPAddress 192.0.2.7:443 (unmapped)", c.Remote)
	}
	if c.Local.GetKubernetes() == nil {
		t.Errorf("local side of an external connection is not a KubernetesProcessAddress: %v", c.Local)
	}
}

func sameK8s(a, b *alv3.KubernetesProcessAddress) bool {
	return a != nil && a.ServiceName == b.ServiceName && a.PodName == b.PodName &&
		a.ContainerName == b.ContainerName && a.ProcessName == b.ProcessName && a.Port == b.Port
}

func TestServiceNameTemplateAndClusterGroup(t *testing.T) {
	for _, tc := range []struct {
		tmpl, cluster, want string
	}{
		{"", "", "frontend.shop"},
		{"", "prod", "prod::frontend.shop"},
		{"{{.Namespace}}/{{.ServiceName}}", "", "shop/frontend"},
		{"{{.Cluster}}::{{.PodName}}", "prod", "prod::frontend-7d9f"},
	} {
		cfg := testConfig("127.0.0.1:1")
		cfg.ServiceNameTemplate, cfg.Cluster = tc.tmpl, tc.cluster
		e := newExporter(t, cfg)
		if got := e.b.serviceName(podFrontend); got != tc.want {
			t.Errorf("template %q cluster %q: %q, want %q", tc.tmpl, tc.cluster, got, tc.want)
		}
	}
	// A pod the resolver found no service for is named after itself.
	e := newExporter(t, testConfig("127.0.0.1:1"))
	if got := e.b.serviceName(&flow.Pod{Namespace: "ns", Name: "lonely"}); got != "lonely.ns" {
		t.Errorf("service-less pod: %q", got)
	}
}

func TestExcludedNamespacesAndUnknownRolesAreFilteredAndCounted(t *testing.T) {
	e := newExporter(t, func() Config {
		c := testConfig("127.0.0.1:1")
		c.ExcludeNamespaces = []string{"kube-system"}
		return c
	}())
	e.testOp(seqOp(conn(1, event.RoleClient, podSystem, 1, remoteIP, nil), flow.OpConnect, 1))
	e.testOp(seqOp(conn(2, event.RoleUnknown, podFrontend, 2, remoteIP, nil), flow.OpWrite, 2))
	e.testOp(nil)
	e.testOp(seqOp(conn(3, event.RoleClient, podFrontend, 3, remoteIP, nil), flow.OpConnect, 3))
	s := e.Stats()
	if s.Filtered["excluded_namespace"] != 1 || s.Filtered["unknown_role"] != 1 || s.Filtered["invalid"] != 1 {
		t.Errorf("filtered = %v", s.Filtered)
	}
	if s.Received != 4 || s.QueueEntries != 1 {
		t.Errorf("received %d queued %d, want 4 and 1", s.Received, s.QueueEntries)
	}
	checkAccounting(t, e)
}

func TestKernelOperationsEndToEndWithMetrics(t *testing.T) {
	r := newReceiver(t, nil)
	e := newExporter(t, testConfig(r.addr))
	c := conn(1, event.RoleClient, podFrontend, 40001, remoteCatalog, podCatalog)
	w := &flow.KernelOp{Conn: c, Kind: flow.OpWrite, Syscall: event.SysSendmsg, Start: 100, End: 250, Success: true, Bytes: 10,
		Send: allSend()}
	rd := &flow.KernelOp{Conn: c, Kind: flow.OpRead, Syscall: event.SysRecvfrom, Start: 300, End: 450, Success: true, Bytes: 10,
		Recv: allRecv()}
	cl := &flow.KernelOp{Conn: c, Kind: flow.OpClose, Syscall: event.SysClose, Start: 500, End: 510, Success: true,
		Socket: &event.SocketStats{Measured: event.MetricRTT, SRTT: 1000}}
	e.testOp(w)
	e.testOp(rd)
	e.testOp(cl)
	runExporter(t, e)
	waitFor(t, 5*time.Second, "3 kernel logs", func() bool { k, _ := r.counts(); return k == 3 })
	var logs []*alv3.AccessLogKernelLog
	for _, s := range r.streams() {
		for _, m := range s {
			logs = append(logs, m.KernelLogs...)
		}
	}
	assertWriteAll(t, logs[0].GetWrite())
	assertReadAll(t, logs[1].GetRead())
	if cls := logs[2].GetClose(); cls == nil || !cls.Success || cls.StartTime.GetOffset().GetOffset() != 500 ||
		cls.EndTime.GetOffset().GetOffset() != 510 {
		t.Errorf("close = %v", logs[2])
	}
}

func allSend() *event.SendMetrics {
	return &event.SendMetrics{
		Measured:   event.MetricL4Duration | event.MetricPackets | event.MetricRetransmits | event.MetricDrops | event.MetricL3Duration | event.MetricL3Split | event.MetricNetfilter | event.MetricResolveMAC | event.MetricL2Duration | event.MetricL2Queue,
		L4Duration: 11, Packets: 12, PacketBytes: 13, Retransmits: 14,
		Drops:      []event.Drop{{Reason: "NETFILTER_DROP", Count: 15}},
		L3Duration: 21, L3LocalDuration: 22, L3OutputDuration: 23, ResolveMACCount: 24, ResolveMACDuration: 25,
		NetfilterCount: 26, NetfilterDuration: 27,
		IfIndex: 2, L2Duration: 31, EnterQueueCount: 32, ReadySendDuration: 33, DeviceSendDuration: 34,
	}
}

func allRecv() *event.RecvMetrics {
	return &event.RecvMetrics{
		Measured: event.MetricPackets | event.MetricRecvQueue | event.MetricL3Duration | event.MetricL3Split | event.MetricNetfilter | event.MetricL4Duration,
		IfIndex:  2, Packets: 41, PacketBytes: 42, ToQueueDuration: 43, FromQueueDuration: 44,
		L3Duration: 51, L3RecvDuration: 52, L3LocalDuration: 53, NetfilterCount: 54, NetfilterDuration: 55,
		L4Duration: 61,
	}
}

func assertWriteAll(t *testing.T, w *alv3.AccessLogKernelWriteOperation) {
	t.Helper()
	if w == nil {
		t.Fatal("not a write")
	}
	if w.Syscall != alv3.AccessLogKernelWriteSyscall_SendMsg || w.StartTime.GetOffset().GetOffset() != 100 || w.EndTime.GetOffset().GetOffset() != 250 {
		t.Errorf("write header = %v %v %v", w.Syscall, w.StartTime, w.EndTime)
	}
	l4, l3, l2 := w.L4Metrics, w.L3Metrics, w.L2Metrics
	if l4.GetTotalDuration() != 11 || l4.GetTotalTransmitPackageCount() != 12 || l4.GetTotalPackageSize() != 13 ||
		l4.GetTotalRetransmitPackageCount() != 14 || len(l4.GetLossPackageMetrics()) != 1 ||
		l4.LossPackageMetrics[0].Location != "NETFILTER_DROP" || l4.LossPackageMetrics[0].Count != 15 {
		t.Errorf("write L4 = %v", l4)
	}
	if l3.GetTotalDuration() != 21 || l3.GetTotalLocalDuration() != 22 || l3.GetTotalOutputDuration() != 23 ||
		l3.GetTotalResolveMACCount() != 24 || l3.GetTotalResolveMACDuration() != 25 ||
		l3.GetTotalNetFilterCount() != 26 || l3.GetTotalNetFilterDuration() != 27 {
		t.Errorf("write L3 = %v", l3)
	}
	if l2.GetIfindex() != 2 || l2.GetTotalDuration() != 31 || l2.GetTotalEnterQueueBufferCount() != 32 ||
		l2.GetTotalReadySendDuration() != 33 || l2.GetTotalNetDeviceSendDuration() != 34 {
		t.Errorf("write L2 = %v", l2)
	}
}

func assertReadAll(t *testing.T, r *alv3.AccessLogKernelReadOperation) {
	t.Helper()
	if r == nil {
		t.Fatal("not a read")
	}
	if r.Syscall != alv3.AccessLogKernelReadSyscall_RecvFrom || r.StartTime.GetOffset().GetOffset() != 300 {
		t.Errorf("read header = %v %v", r.Syscall, r.StartTime)
	}
	l2, l3, l4 := r.L2Metrics, r.L3Metrics, r.L4Metrics
	if l2.GetIfindex() != 2 || l2.GetTotalPackageCount() != 41 || l2.GetTotalPackageSize() != 42 ||
		l2.GetTotalPackageToQueueDuration() != 43 || l2.GetTotalRcvPackageFromQueueDuration() != 44 {
		t.Errorf("read L2 = %v", l2)
	}
	if l3.GetTotalDuration() != 51 || l3.GetTotalRecvDuration() != 52 || l3.GetTotalLocalDuration() != 53 ||
		l3.GetTotalNetFilterCount() != 54 || l3.GetTotalNetFilterDuration() != 55 {
		t.Errorf("read L3 = %v", l3)
	}
	if l4.GetTotalDuration() != 61 {
		t.Errorf("read L4 = %v", l4)
	}
}

func TestUnmeasuredMetricsAreLeftOut(t *testing.T) {
	c := conn(1, event.RoleClient, podFrontend, 1, remoteIP, nil)
	// Values present but no Measured bit: nothing may be reported.
	s := allSend()
	s.Measured = 0
	w := kernelLog(&flow.KernelOp{Conn: c, Kind: flow.OpWrite, Send: s}).GetWrite()
	if w.L4Metrics != nil || w.L3Metrics != nil || w.L2Metrics != nil {
		t.Errorf("write with nothing measured carries metrics: %v", w)
	}
	rv := allRecv()
	rv.Measured = 0
	r := kernelLog(&flow.KernelOp{Conn: c, Kind: flow.OpRead, Recv: rv}).GetRead()
	if r.L4Metrics != nil || r.L3Metrics != nil || r.L2Metrics != nil {
		t.Errorf("read with nothing measured carries metrics: %v", r)
	}
	// Only some bits: a layer appears, unmeasured fields in it stay zero.
	s = allSend()
	s.Measured = event.MetricL4Duration
	w = kernelLog(&flow.KernelOp{Conn: c, Kind: flow.OpWrite, Send: s}).GetWrite()
	if w.L4Metrics.GetTotalDuration() != 11 || w.L4Metrics.GetTotalTransmitPackageCount() != 0 ||
		w.L4Metrics.GetLossPackageMetrics() != nil || w.L3Metrics != nil || w.L2Metrics != nil {
		t.Errorf("write with L4 duration only = %v", w)
	}
	rv = allRecv()
	rv.Measured = event.MetricPackets
	r = kernelLog(&flow.KernelOp{Conn: c, Kind: flow.OpRead, Recv: rv}).GetRead()
	if r.L2Metrics.GetTotalPackageCount() != 41 || r.L2Metrics.GetTotalPackageToQueueDuration() != 0 || r.L3Metrics != nil || r.L4Metrics != nil {
		t.Errorf("read with packets only = %v", r)
	}
	// No metrics at all (nil) and the other operation kinds.
	if w := kernelLog(&flow.KernelOp{Conn: c, Kind: flow.OpWrite, Syscall: event.SysWritev}).GetWrite(); w.L4Metrics != nil || w.Syscall != alv3.AccessLogKernelWriteSyscall_Writev {
		t.Errorf("bare write = %v", w)
	}
	if cn := kernelLog(&flow.KernelOp{Conn: c, Kind: flow.OpConnect, Start: 5, End: 9, Success: false}).GetConnect(); cn == nil || cn.Success || cn.EndTime.GetOffset().GetOffset() != 9 {
		t.Errorf("failed connect = %v", cn)
	}
	if a := kernelLog(&flow.KernelOp{Conn: c, Kind: flow.OpAccept, Start: 5, End: 9}).GetAccept(); a == nil || a.StartTime.GetOffset().GetOffset() != 5 {
		t.Errorf("accept = %v", a)
	}
}

func TestHTTPProtocolLogPerExchange(t *testing.T) {
	r := newReceiver(t, nil)
	e := newExporter(t, testConfig(r.addr))
	srv := conn(2, event.RoleServer, podCatalog, 8080, remoteFrontend, podFrontend)
	h2 := conn(4, event.RoleServer, podCatalog, 8443, remoteFrontend, podFrontend)

	read := &flow.KernelOp{Conn: srv, Kind: flow.OpRead, Syscall: event.SysRead, Start: 1000, End: 1100}
	write := &flow.KernelOp{Conn: srv, Kind: flow.OpWrite, Syscall: event.SysWrite, Start: 1500, End: 2500}
	ex1 := exchange(srv, record.HTTP11, "POST", "/cart", 201, read, write)
	ex1.Record.Trace.Kind, ex1.Record.Trace.TraceID, ex1.Record.Trace.SegmentID, ex1.Record.Trace.SpanID = "sw8", "trace-1", "seg-1", "3"
	e.Exchange(ex1)
	e.Exchange(exchange(srv, record.HTTP10, "GET", "/health", 503))
	e.Exchange(exchange(h2, record.HTTP2, "GET", "/catalog.v1.Items/List", 200))
	// Not protocol logs: no response, and a method the protocol cannot name.
	lost := &flow.KernelOp{Conn: srv, Kind: flow.OpRead, Syscall: event.SysRead, Start: 9000, End: 9001}
	e.Exchange(exchange(srv, record.HTTP11, "GET", "/hang", 0, lost))
	e.Exchange(exchange(srv, record.HTTP11, "PROPFIND", "/dav", 207))

	runExporter(t, e)
	// The exporter counts a batch sent once it has read the
	// acknowledgement, a moment after the receiver recorded it.
	waitFor(t, 5*time.Second, "3 protocol logs", func() bool { _, p := r.counts(); return p == 3 && e.Stats().Sent == 4 })

	type got struct {
		conn *alv3.AccessLogConnection
		msg  *alv3.EBPFAccessLogMessage
	}
	byPath := map[string]got{}
	var looseKernel []uint64
	for _, s := range r.streams() {
		var c *alv3.AccessLogConnection
		for _, m := range s {
			if m.Connection != nil {
				c = m.Connection
			}
			if h := m.ProtocolLog.GetHttp(); h != nil {
				byPath[h.Request.Path] = got{c, m}
			} else {
				for _, l := range m.KernelLogs {
					looseKernel = append(looseKernel, opStart(l))
				}
			}
		}
	}
	if len(byPath) != 3 {
		t.Fatalf("protocol logs for %v, want /cart /health and the gRPC path", byPath)
	}
	cart := byPath["/cart"]
	h := cart.msg.ProtocolLog.GetHttp()
	if h.Version != alv3.AccessLogHTTPProtocolVersion_HTTP1 || h.Request.Method != alv3.AccessLogHTTPProtocolRequestMethod_Post ||
		h.Response.StatusCode != 201 || h.Request.Host != "catalog" {
		t.Errorf("/cart = %v", h)
	}
	if h.StartTime.GetOffset().GetOffset() != 1000 || h.EndTime.GetOffset().GetOffset() != 2500 {
		t.Errorf("/cart span %v..%v, want request start 1000 to response end 2500", h.StartTime, h.EndTime)
	}
	if h.Request.SizeOfHeadersBytes != 100 || h.Request.SizeOfBodyBytes != 10 || h.Response.SizeOfHeadersBytes != 200 || h.Response.SizeOfBodyBytes != 2000 {
		t.Errorf("/cart sizes = %v %v", h.Request, h.Response)
	}
	if tr := h.Request.Trace; tr == nil || tr.Provider != alv3.AccessLogTraceInfoProvider_SkyWalking || tr.TraceId != "trace-1" ||
		tr.TraceSegmentId != "seg-1" || tr.SpanId != "3" {
		t.Errorf("/cart trace = %v", h.Request.Trace)
	}
	if k := cart.msg.KernelLogs; len(k) != 2 || k[0].GetRead() == nil || k[1].GetWrite() == nil {
		t.Errorf("/cart related kernel logs = %v, want its read and write", k)
	}
	if cart.conn.Protocol != alv3.AccessLogProtocolType_HTTP_1 || cart.conn.Role != commonv3.DetectPoint_server {
		t.Errorf("/cart connection protocol %v role %v", cart.conn.Protocol, cart.conn.Role)
	}
	if hh := byPath["/health"].msg.ProtocolLog.GetHttp(); hh.Response.StatusCode != 503 || hh.Request.Method != alv3.AccessLogHTTPProtocolRequestMethod_Get {
		t.Errorf("/health = %v", hh)
	}
	g := byPath["/catalog.v1.Items/List"]
	if g.msg.ProtocolLog.GetHttp().Version != alv3.AccessLogHTTPProtocolVersion_HTTP2 || g.conn.Protocol != alv3.AccessLogProtocolType_HTTP_2 {
		t.Errorf("HTTP/2 exchange version %v connection protocol %v", g.msg.ProtocolLog.GetHttp().Version, g.conn.Protocol)
	}
	if len(looseKernel) != 1 || looseKernel[0] != 9000 {
		t.Errorf("kernel logs outside protocol logs = %v, want the unanswered exchange's read (9000)", looseKernel)
	}
	s := e.Stats()
	if s.ProtocolSkipped["no_response"] != 1 || s.ProtocolSkipped["unknown_method"] != 1 {
		t.Errorf("skipped = %v", s.ProtocolSkipped)
	}
	// The PROPFIND exchange had no kernel operations: nothing to send.
	if s.Filtered["nothing_to_send"] != 1 || s.Sent != 4 {
		t.Errorf("filtered %v sent %d, want nothing_to_send 1 and 4 sent", s.Filtered, s.Sent)
	}
	checkAccounting(t, e)
}

// checkAccounting asserts that every entry offered is accounted for once.
func checkAccounting(t *testing.T, e *Exporter) {
	t.Helper()
	s := e.Stats()
	var sum uint64
	for _, v := range s.Filtered {
		sum += v
	}
	for _, v := range s.Dropped {
		sum += v
	}
	sum += s.Sent + uint64(s.QueueEntries)
	if sum != s.Received {
		t.Errorf("received %d != filtered %v + dropped %v + sent %d + queued %d", s.Received, s.Filtered, s.Dropped, s.Sent, s.QueueEntries)
	}
}

func TestTokenIsSentAsAuthenticationMetadata(t *testing.T) {
	r := newReceiver(t, nil)
	cfg := testConfig(r.addr)
	cfg.Token = "s3cret"
	e := newExporter(t, cfg)
	e.testOp(seqOp(conn(1, event.RoleClient, podFrontend, 1, remoteIP, nil), flow.OpConnect, 1))
	runExporter(t, e)
	waitFor(t, 5*time.Second, "one stream", func() bool { return len(r.streams()) == 1 })
	if got := r.tokenList(); len(got) != 1 || got[0] != "s3cret" {
		t.Errorf("authentication metadata = %q", got)
	}
}

func TestTLSWithPrivateCA(t *testing.T) {
	serverCreds, caFile := testPKI(t)
	r := newReceiver(t, serverCreds)
	_, port, _ := net.SplitHostPort(r.addr)

	cfg := testConfig(net.JoinHostPort("127.0.0.1", port))
	cfg.Insecure, cfg.CAFile, cfg.ServerName = false, caFile, "oap.test"
	e := newExporter(t, cfg)
	e.testOp(seqOp(conn(1, event.RoleClient, podFrontend, 1, remoteIP, nil), flow.OpConnect, 1))
	runExporter(t, e)
	waitFor(t, 5*time.Second, "one stream over TLS", func() bool { return len(r.streams()) == 1 })

	// The system roots do not know the test CA: nothing is delivered and
	// the failures are counted, the batch kept.
	cfg.CAFile = ""
	bad := newExporter(t, cfg)
	bad.testOp(seqOp(conn(1, event.RoleClient, podFrontend, 1, remoteIP, nil), flow.OpConnect, 2))
	runExporter(t, bad)
	waitFor(t, 5*time.Second, "stream errors", func() bool { return bad.Stats().StreamErrors >= 2 })
	if s := bad.Stats(); s.Sent != 0 || s.QueueEntries != 1 || s.Reconnects == 0 {
		t.Errorf("untrusted OAP: sent %d, queued %d, reconnects %d", s.Sent, s.QueueEntries, s.Reconnects)
	}
	if len(r.streams()) != 1 {
		t.Errorf("untrusted client delivered a stream")
	}
}

// produce feeds n sequenced operations over a few connections at a steady
// pace, like a pipeline would.
func produce(e *Exporter, n int, every time.Duration) {
	conns := []*flow.Connection{
		conn(1, event.RoleClient, podFrontend, 40001, remoteCatalog, podCatalog),
		conn(2, event.RoleServer, podCatalog, 8080, remoteFrontend, podFrontend),
	}
	for i := 1; i <= n; i++ {
		e.testOp(seqOp(conns[i%2], flow.OpWrite, uint64(i)))
		if every > 0 && i%10 == 0 {
			time.Sleep(every)
		}
	}
}

// checkDelivery asserts the outage contract: no sequence acknowledged
// twice, and every produced entry either delivered or counted dropped.
func checkDelivery(t *testing.T, r *receiver, e *Exporter, produced int) (delivered int) {
	t.Helper()
	seen := map[uint64]int{}
	for _, s := range r.streams() {
		for _, m := range s {
			for _, l := range m.KernelLogs {
				seen[opStart(l)]++
			}
		}
	}
	for seq, n := range seen {
		if n > 1 {
			t.Errorf("sequence %d acknowledged %d times", seq, n)
		}
	}
	s := e.Stats()
	// Every entry is either acknowledged or dropped for one reason; a
	// stream the receiver's stop cut after messages were written drops
	// its batch as unacknowledged/partial_send (at most once).
	var dropped uint64
	for _, n := range s.Dropped {
		dropped += n
	}
	if uint64(len(seen)) != s.Sent {
		t.Errorf("receiver acknowledged %d distinct entries, exporter counted %d sent", len(seen), s.Sent)
	}
	if s.Sent+dropped != uint64(produced) {
		t.Errorf("sent %d + dropped %d != produced %d", s.Sent, dropped, produced)
	}
	return len(seen)
}

func outage(t *testing.T, down time.Duration, queueSize, produced int, pace time.Duration) {
	r := newReceiver(t, nil)
	cfg := testConfig(r.addr)
	cfg.QueueSize, cfg.BatchSize = queueSize, 50
	cfg.Backoff = Backoff{Min: 50 * time.Millisecond, Max: 500 * time.Millisecond}
	e := newExporter(t, cfg)
	runExporter(t, e)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); produce(e, produced, pace) }()

	waitFor(t, 10*time.Second, "traffic flowing", func() bool { return e.Stats().Sent > 0 })
	r.stop()
	before := len(r.streams())
	time.Sleep(down)
	if e.Stats().StreamErrors == 0 {
		t.Errorf("no stream error counted during the outage")
	}
	r.start(r.addr)
	wg.Wait()
	waitFor(t, 10*time.Second, "queue drained after restart", func() bool { return e.Stats().QueueEntries == 0 })
	if len(r.streams()) <= before {
		t.Errorf("no stream acknowledged after the restart")
	}
	delivered := checkDelivery(t, r, e, produced)
	s := e.Stats()
	t.Logf("produced %d delivered %d dropped %v stream errors %d reconnects %d", produced, delivered, s.Dropped, s.StreamErrors, s.Reconnects)
	if s.Reconnects == 0 {
		t.Errorf("no reconnect counted")
	}
	checkAccounting(t, e)
	if s.Dropped["queue_full"] == 0 {
		t.Errorf("queue of %d overflowed during the outage but no drop was counted", queueSize)
	}
}

func TestOutageShortResumesWithoutDuplicatesAndCountsDrops(t *testing.T) {
	// ~3000 entries over ~1.5 s; the receiver is away for 700 ms, so a
	// 400-entry queue overflows.
	outage(t, 700*time.Millisecond, 400, 3000, 5*time.Millisecond)
}

func TestOutageTenSeconds(t *testing.T) {
	if testing.Short() {
		t.Skip("real 10 s outage; run without -short")
	}
	// ~6000 entries over ~12 s at ~500/s; the 10 s outage overflows a
	// 1000-entry queue.
	outage(t, 10*time.Second, 1000, 6000, 20*time.Millisecond)
}

func TestQueueBoundedWhileOAPIsDown(t *testing.T) {
	// Nothing listens there: the OAP is down for the whole test.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()

	cfg := testConfig(addr)
	cfg.QueueSize, cfg.BatchSize = 1000, 100
	e := newExporter(t, cfg)
	runExporter(t, e)
	const pushed = 10 * 1000
	c := conn(1, event.RoleClient, podFrontend, 1, remoteIP, nil)
	for i := 1; i <= pushed; i++ {
		e.testOp(seqOp(c, flow.OpWrite, uint64(i)))
	}
	s := e.Stats()
	if s.QueueEntries != 1000 {
		t.Errorf("queue holds %d entries, want the bound 1000", s.QueueEntries)
	}
	if s.Dropped["queue_full"] != pushed-1000 {
		t.Errorf("dropped %d, want %d", s.Dropped["queue_full"], pushed-1000)
	}
	if s.QueueBytes > e.cfg.QueueBytes || s.QueueBytes <= 0 {
		t.Errorf("queue bytes %d outside (0, %d]", s.QueueBytes, e.cfg.QueueBytes)
	}

	// The byte bound holds too: large exchanges fill 1 MiB long before
	// 1000 entries.
	cfg.QueueBytes = 1 << 20
	e2 := newExporter(t, cfg)
	big := strings.Repeat("x", 16<<10)
	for i := 0; i < 1000; i++ {
		e2.Exchange(exchange(c, record.HTTP11, "GET", "/"+big, 200))
	}
	s = e2.Stats()
	if s.QueueBytes > 1<<20 || s.QueueEntries >= 1000 || s.Dropped["queue_full"] != uint64(1000-s.QueueEntries) {
		t.Errorf("byte bound: %d entries, %d bytes, dropped %d", s.QueueEntries, s.QueueBytes, s.Dropped["queue_full"])
	}
	// An entry larger than the whole bound is refused outright.
	e2.Exchange(exchange(c, record.HTTP11, "GET", strings.Repeat("y", 2<<20), 200))
	if e2.Stats().Dropped["too_large"] != 1 {
		t.Errorf("oversized entry not counted as too_large")
	}
	checkAccounting(t, e)
	checkAccounting(t, e2)
}

func TestShutdownFlushesQueue(t *testing.T) {
	r := newReceiver(t, nil)
	cfg := testConfig(r.addr)
	cfg.FlushPeriod = time.Hour // only the shutdown flush can send
	cfg.BatchSize = 1000
	e := newExporter(t, cfg)
	stop := runExporter(t, e)
	c := conn(1, event.RoleClient, podFrontend, 1, remoteIP, nil)
	for i := 1; i <= 10; i++ {
		e.testOp(seqOp(c, flow.OpWrite, uint64(i)))
	}
	stop()
	if k, _ := r.counts(); k != 10 {
		t.Errorf("after shutdown the receiver has %d kernel logs, want 10", k)
	}
	if s := e.Stats(); s.Sent != 10 || s.QueueEntries != 0 {
		t.Errorf("sent %d queued %d", s.Sent, s.QueueEntries)
	}
}

func TestShutdownCountsWhatItCouldNotSend(t *testing.T) {
	cfg := testConfig("127.0.0.1:1") // nothing listens on port 1
	cfg.ShutdownTimeout = 200 * time.Millisecond
	e := newExporter(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	c := conn(1, event.RoleClient, podFrontend, 1, remoteIP, nil)
	for i := 1; i <= 5; i++ {
		e.testOp(seqOp(c, flow.OpWrite, uint64(i)))
	}
	cancel()
	if err := e.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if s := e.Stats(); s.Dropped["shutdown"] != 5 || s.QueueEntries != 0 {
		t.Errorf("dropped %v queued %d", s.Dropped, s.QueueEntries)
	}
	if err := e.Run(context.Background()); err == nil {
		t.Errorf("second Run succeeded")
	}
}

func TestConfigErrorsNameTheProblem(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no port", func(c *Config) { c.OAP = "oap" }, "host:port"},
		{"bad template", func(c *Config) { c.ServiceNameTemplate = "{{.Nope" }, "template"},
		{"unknown field", func(c *Config) { c.ServiceNameTemplate = "{{.Nope}}" }, "template"},
		{"queue below batch", func(c *Config) { c.QueueSize, c.BatchSize = 10, 10 }, "QueueSize"},
		{"backoff", func(c *Config) { c.Backoff = Backoff{Min: time.Second, Max: time.Millisecond} }, "Backoff"},
		{"queue bytes", func(c *Config) { c.QueueBytes = 10 }, "QueueBytes"},
		{"missing CA", func(c *Config) { c.Insecure, c.CAFile = false, "/nonexistent/ca.pem" }, "CA file"},
		{"token newline", func(c *Config) { c.Token = "a\nb" }, "Token"},
	} {
		cfg := testConfig("127.0.0.1:11800")
		tc.mod(&cfg)
		_, err := New(cfg, testLogger(t))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestSelfMetricsLintAndCount(t *testing.T) {
	e := newExporter(t, testConfig("127.0.0.1:1"))
	e.testOp(seqOp(conn(1, event.RoleClient, podFrontend, 1, remoteIP, nil), flow.OpWrite, 1))
	problems, err := testutil.CollectAndLint(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
	want := `
# HELP weir_skywalking_queue_entries Entries queued or in flight.
# TYPE weir_skywalking_queue_entries gauge
weir_skywalking_queue_entries 1
# HELP weir_skywalking_entries_received_total Kernel operations and HTTP exchanges offered to the SkyWalking exporter.
# TYPE weir_skywalking_entries_received_total counter
weir_skywalking_entries_received_total 1
`
	if err := testutil.CollectAndCompare(e, strings.NewReader(want), "weir_skywalking_queue_entries", "weir_skywalking_entries_received_total"); err != nil {
		t.Error(err)
	}
}

func BenchmarkConsumerKernelOp(b *testing.B) {
	cfg := testConfig("127.0.0.1:1")
	cfg.QueueSize = 4096
	e, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	c := conn(1, event.RoleClient, podFrontend, 1, remoteIP, nil)
	op := seqOp(c, flow.OpWrite, 1)
	op.Send = allSend()
	// Fill the queue first, so the loop measures the steady state of an
	// OAP outage too (every push evicts the oldest).
	for i := 0; i < cfg.QueueSize; i++ {
		e.testOp(op)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.testOp(op)
	}
}

func BenchmarkConsumerExchange(b *testing.B) {
	cfg := testConfig("127.0.0.1:1")
	e, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	c := conn(1, event.RoleServer, podCatalog, 8080, remoteFrontend, podFrontend)
	ex := exchange(c, record.HTTP11, "GET", "/items", 200, seqOp(c, flow.OpRead, 1), seqOp(c, flow.OpWrite, 2))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.Exchange(ex)
	}
}

// KernelOp, which every consumer gets for every operation, sends nothing:
// the pipeline hands the exporter each operation once through ConnOp or an
// exchange's Ops, and the OAP counts every kernel log it receives.
func TestKernelOpSendsNothingSinceOperationsArriveOnceThroughConnOp(t *testing.T) {
	e, err := New(testConfig("127.0.0.1:1"), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	c := &flow.Connection{ID: 7, Role: event.RoleClient,
		Local: flow.Peer{Pod: &flow.Pod{ID: 1, Namespace: "shop", Name: "web-1", Service: "web"}}}
	e.KernelOp(&flow.KernelOp{Conn: c, Kind: flow.OpWrite, Bytes: 10})
	e.KernelOp(&flow.KernelOp{Conn: c, Kind: flow.OpConnect, Success: true})
	e.ConnOp(&flow.KernelOp{Conn: c, Kind: flow.OpRead, Bytes: 10}, flow.ProtoTCP)
	if st := e.Stats(); st.Received != 1 || st.Enqueued != 1 {
		t.Fatalf("received %d, enqueued %d: want only the ConnOp read", st.Received, st.Enqueued)
	}
}

// The runtime's container name wins over the short container id, which
// stands in until the runtime has answered.
func TestContainerNameFromTheRuntimeOrTheShortID(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	if got := containerName(flow.Process{ContainerID: id, ContainerName: "nginx"}); got != "nginx" {
		t.Errorf("with a runtime name: %q, want nginx", got)
	}
	if got := containerName(flow.Process{ContainerID: id}); got != "0123456789ab" {
		t.Errorf("without: %q, want the short id", got)
	}
}

// BenchmarkBuildAndMarshalExchange is the exporter's CPU per HTTP exchange
// once the OAP is reachable: encoding the messages of a batch of 500
// exchanges on 32 connections (each with its request read and response
// write) and handing them to gRPC's codec, as the sender does. It is the
// largest cost of the daemon with export on. (Before messages were encoded
// by hand it measured building goapi structs and proto.Marshal.)
func BenchmarkBuildAndMarshalExchange(b *testing.B) {
	cfg := testConfig("127.0.0.1:1")
	e, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]entry, 0, 500)
	for i := range 500 {
		c := conn(event.ConnID(i%32+1), event.RoleServer, podCatalog, 8080, remoteFrontend, podFrontend)
		r, w := seqOp(c, flow.OpRead, 1), seqOp(c, flow.OpWrite, 2)
		r.Recv, w.Send = allRecv(), allSend()
		batch = append(batch, entry{ex: exchange(c, record.HTTP11, "GET", "/items", 200, r, w)})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N / len(batch) {
		msgs := e.b.encode(batch, nil)
		for i := range msgs {
			data, err := e.codec.Marshal(&msgs[i])
			if err != nil {
				b.Fatal(err)
			}
			data.Free()
		}
		e.b.release()
	}
}

// A TLS exporter pointed at a plaintext OAP (SkyWalking's default) logs an
// error that names the setting to change.
func TestTLSToPlaintextOAPNamesTheSetting(t *testing.T) {
	r := newReceiver(t, nil)
	cfg := testConfig(r.addr)
	cfg.Insecure = false
	var logs syncBuffer
	e, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	e.testOp(seqOp(conn(1, event.RoleClient, podFrontend, 1, remoteIP, nil), flow.OpConnect, 1))
	runExporter(t, e)
	waitFor(t, 5*time.Second, "a stream error", func() bool { return e.Stats().StreamErrors >= 1 })
	got := logs.String()
	if !strings.Contains(got, plaintextReply) || !strings.Contains(got, "oap.insecure") || !strings.Contains(got, "oap.tls.enabled=false") {
		t.Errorf("log does not name the setting that fixes a plaintext OAP:\n%s", got)
	}
}

func TestExplainTLSMismatchLeavesOtherErrorsAlone(t *testing.T) {
	other := errors.New("rpc error: code = Unavailable desc = connection refused")
	if got := explainTLSMismatch(other, false); got != other {
		t.Errorf("other error rewritten: %v", got)
	}
	mismatch := errors.New("tls: " + plaintextReply)
	if got := explainTLSMismatch(mismatch, true); got != mismatch {
		t.Errorf("explained although plaintext is configured: %v", got)
	}
	if got := explainTLSMismatch(mismatch, false); !errors.Is(got, mismatch) || !strings.Contains(got.Error(), "--oap-insecure") {
		t.Errorf("mismatch: %v", got)
	}
}

// syncBuffer is a bytes.Buffer safe for the exporter's goroutine and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testOp hands op to the exporter as the pipeline hands connect, accept,
// close and unclaimed reads and writes.
func (e *Exporter) testOp(op *flow.KernelOp) { e.ConnOp(op, flow.ProtoUnknown) }
