package skywalking

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/template"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	alv3 "skywalking.apache.org/repo/goapi/collect/ebpf/accesslog/v3"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/conntrack"
	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/protocol/record"
	"github.com/weirnet/weir/daemon/protocol/tracectx"
)

// The tests in this file hold the hand encoder (encode.go) to the reference
// builder (reference_test.go): for the same batch, every message must be
// byte for byte what proto.Marshal produces from the reference structs, and
// must unmarshal into a message proto.Equal to them.

// equivalence compares encode with the reference build for one batch and
// returns the number of messages compared. Two fresh builders are used so
// that neither sees the other's caches.
func equivalence(t testing.TB, tmpl *template.Template, cluster string, batch []entry, node *alv3.EBPFAccessLogNodeInfo, nodeField []byte) int {
	t.Helper()
	ref := newBuilder(tmpl, cluster, "node-a", &stats{}).build(batch, node)
	enc := newBuilder(tmpl, cluster, "node-a", &stats{})
	got := enc.encode(batch, nodeField)
	if len(got) != len(ref) {
		t.Fatalf("encode produced %d messages, the reference %d", len(got), len(ref))
	}
	det := proto.MarshalOptions{Deterministic: true}
	for i, want := range ref {
		wantBytes, err := det.Marshal(want)
		if err != nil {
			// proto.Marshal refuses invalid UTF-8; the encoder
			// replaces it (see encode.go). Compare with the
			// reference so repaired.
			if !strings.Contains(err.Error(), "UTF-8") {
				t.Fatalf("message %d: reference does not marshal: %v", i, err)
			}
			want = proto.Clone(want).(*alv3.EBPFAccessLogMessage)
			repairUTF8(want.ProtoReflect())
			if wantBytes, err = det.Marshal(want); err != nil {
				t.Fatalf("message %d: repaired reference does not marshal: %v", i, err)
			}
		}
		if !bytes.Equal(got[i].b, wantBytes) {
			t.Fatalf("message %d differs from proto.Marshal of the reference\n got %x\nwant %x\nreference: %v", i, got[i].b, wantBytes, want)
		}
		if n := proto.Size(want); n != len(got[i].b) {
			t.Fatalf("message %d: %d bytes, proto.Size of the reference %d", i, len(got[i].b), n)
		}
		var back alv3.EBPFAccessLogMessage
		if err := proto.Unmarshal(got[i].b, &back); err != nil {
			t.Fatalf("message %d does not unmarshal: %v", i, err)
		}
		if !proto.Equal(&back, want) {
			t.Fatalf("message %d unmarshals to\n%v\nwant\n%v", i, &back, want)
		}
	}
	// The messages are views of one buffer: each must stay intact after
	// the others were written.
	for i := range got {
		if i > 0 && len(got[i-1].b) > 0 && len(got[i].b) > 0 && &got[i-1].b[len(got[i-1].b)-1] == &got[i].b[0] {
			t.Fatalf("messages %d and %d overlap", i-1, i)
		}
	}
	return len(got)
}

// repairUTF8 replaces invalid UTF-8 in every string of m, as the encoder
// does.
func repairUTF8(m protoreflect.Message) {
	type set struct {
		fd protoreflect.FieldDescriptor
		v  protoreflect.Value
	}
	var sets []set
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				if fd.Kind() == protoreflect.StringKind {
					l.Set(i, protoreflect.ValueOfString(strings.ToValidUTF8(l.Get(i).String(), "\uFFFD")))
				} else if fd.Message() != nil {
					repairUTF8(l.Get(i).Message())
				}
			}
		case fd.Kind() == protoreflect.StringKind:
			sets = append(sets, set{fd, protoreflect.ValueOfString(strings.ToValidUTF8(v.String(), "\uFFFD"))})
		case fd.Message() != nil:
			repairUTF8(v.Message())
		}
		return true
	})
	for _, s := range sets {
		m.Set(s.fd, s.v)
	}
}

func defaultTemplate(t testing.TB) *template.Template {
	t.Helper()
	return template.Must(template.New("service").Option("missingkey=error").Parse(DefaultServiceNameTemplate))
}

// Values that exercise the encoding: zero, one-byte and multi-byte
// varints, the largest values, and strings empty, short, longer than a
// one-byte length, longer than a two-byte length, non-ASCII and invalid.
var (
	sampleU64 = []uint64{0, 1, 127, 128, 300, 1<<32 - 1, 1 << 40, math.MaxInt64, math.MaxUint64}
	sampleU32 = []uint32{0, 1, 127, 128, 1<<31 - 1, 1 << 31, math.MaxUint32}
	sampleStr = []string{"", "a", "/items", strings.Repeat("p", 130), strings.Repeat("q", 20000),
		"/ünï/日本", "\xff\xfe", "x\x00y", "bad\xc3"}
	sampleAddr = []netip.AddrPort{
		netip.MustParseAddrPort("10.0.0.1:8080"),
		netip.MustParseAddrPort("192.0.2.7:0"),
		netip.MustParseAddrPort("[2001:db8::1]:443"),
		netip.MustParseAddrPort("[::ffff:192.0.2.7]:65535"),
		netip.MustParseAddrPort("[fe80::1%eth0]:80"),
		{}, // invalid: the reference sends "invalid IP"
	}
	sampleMethods = []string{"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "TRACE", "CONNECT"}
	sampleProtos  = []record.Protocol{record.HTTP10, record.HTTP11, record.HTTP2, ""}
	sampleKinds   = []flow.OpKind{flow.OpConnect, flow.OpAccept, flow.OpClose, flow.OpRead, flow.OpWrite, 0, 200}
)

// gen derives flow values from a source of numbers: a seeded PRNG for the
// table tests, the fuzzer's bytes for the fuzz test.
type gen struct {
	next func() uint64
}

func (g gen) n(k int) int         { return int(g.next() % uint64(k)) }
func (g gen) bool() bool          { return g.next()&1 == 1 }
func (g gen) u64() uint64         { return sampleU64[g.n(len(sampleU64))] }
func (g gen) u32() uint32         { return sampleU32[g.n(len(sampleU32))] }
func (g gen) str() string         { return sampleStr[g.n(len(sampleStr))] }
func (g gen) ts() event.Timestamp { return event.Timestamp(g.u64()) }

// samplePaths are request targets, with and without query and fragment.
var samplePaths = []string{"/", "/items?id=1", "/a/b#frag", "/q?x=1#f", "?only=query", "", "/\xff?\xfe"}

func (g gen) path() string {
	if g.n(2) == 0 {
		return g.str()
	}
	return samplePaths[g.n(len(samplePaths))]
}

func (g gen) pod() *flow.Pod {
	if g.n(3) == 0 {
		return nil
	}
	return &flow.Pod{ID: uint32(g.n(4)), Namespace: g.str(), Name: g.str(), UID: g.str(), Service: g.str()}
}

func (g gen) conn(id event.ConnID) *flow.Connection {
	return &flow.Connection{
		ID:     id,
		Role:   []event.Role{event.RoleClient, event.RoleServer, event.RoleUnknown}[g.n(3)],
		Local:  flow.Peer{Addr: sampleAddr[g.n(len(sampleAddr))], Pod: g.pod()},
		Remote: flow.Peer{Addr: sampleAddr[g.n(len(sampleAddr))], Pod: g.pod()},
		Process: flow.Process{PID: g.u32(), Comm: g.str(),
			ContainerID: []string{"", "0123", containerID}[g.n(3)], ContainerName: g.str()},
		TLS: []string{"", "openssl"}[g.n(2)],
	}
}

func (g gen) drops() []event.Drop {
	var d []event.Drop
	for range g.n(4) {
		d = append(d, event.Drop{Reason: g.str(), Count: g.u32()})
	}
	return d
}

func (g gen) send(measured event.Metric) *event.SendMetrics {
	return &event.SendMetrics{
		Measured: measured, L4Duration: g.u64(), Packets: g.u32(), PacketBytes: g.u64(), Retransmits: g.u32(),
		Drops: g.drops(), L3Duration: g.u64(), L3LocalDuration: g.u64(), L3OutputDuration: g.u64(),
		ResolveMACCount: g.u32(), ResolveMACDuration: g.u64(), NetfilterCount: g.u32(), NetfilterDuration: g.u64(),
		IfIndex: g.u32(), L2Duration: g.u64(), EnterQueueCount: g.u32(), ReadySendDuration: g.u64(), DeviceSendDuration: g.u64(),
	}
}

func (g gen) recv(measured event.Metric) *event.RecvMetrics {
	return &event.RecvMetrics{
		Measured: measured, IfIndex: g.u32(), Packets: g.u32(), PacketBytes: g.u64(), ToQueueDuration: g.u64(),
		FromQueueDuration: g.u64(), L3Duration: g.u64(), L3RecvDuration: g.u64(), L3LocalDuration: g.u64(),
		NetfilterCount: g.u32(), NetfilterDuration: g.u64(), L4Duration: g.u64(),
	}
}

func (g gen) op(c *flow.Connection) *flow.KernelOp {
	op := &flow.KernelOp{Conn: c, Kind: sampleKinds[g.n(len(sampleKinds))], Syscall: event.Syscall(g.n(18)),
		Start: g.ts(), End: g.ts(), Success: g.bool(), Bytes: g.u64()}
	if g.n(4) != 0 {
		op.Send = g.send(event.Metric(g.next()))
	}
	if g.n(4) != 0 {
		op.Recv = g.recv(event.Metric(g.next()))
	}
	return op
}

func (g gen) record() *record.Record {
	r := &record.Record{
		Protocol: sampleProtos[g.n(len(sampleProtos))], Path: g.path(), Host: g.str(),
		ReqHeaderBytes: g.u64(), ReqBodyBytes: g.u64(), RespHeaderBytes: g.u64(), RespBodyBytes: g.u64(),
		ReqStart: g.ts(), ReqEnd: g.ts(), RespStart: g.ts(), RespEnd: g.ts(),
	}
	switch g.n(10) {
	case 0:
		r.Method = "PROPFIND" // not exportable
	case 1:
		r.Method = "" // not exportable
	default:
		r.Method = sampleMethods[g.n(len(sampleMethods))]
	}
	r.Status = []int{0, 200, 503, 99999, -1, math.MaxInt32 + 1, math.MinInt64}[g.n(7)]
	switch g.n(4) {
	case 0:
		r.Trace = tracectx.Context{Kind: tracectx.KindSW8, TraceID: g.str(), SegmentID: g.str(), SpanID: g.str()}
	case 1:
		r.Trace = tracectx.Context{Kind: tracectx.KindB3, TraceID: g.str(), SegmentID: g.str(), SpanID: g.str(), ParentSpanID: g.str()}
	case 2:
		r.Trace = tracectx.Context{Kind: tracectx.KindTraceparent, TraceID: g.str(), SpanID: g.str()}
	}
	return r
}

// batch generates a batch of up to n entries over up to k connections, with
// the invariants the queue guarantees (an entry has a connection, an
// exchange a record).
func (g gen) batch(n, k int) []entry {
	conns := make([]*flow.Connection, 1+g.n(k))
	for i := range conns {
		conns[i] = g.conn(event.ConnID(i + 1))
	}
	batch := make([]entry, 0, n)
	for range 1 + g.n(n) {
		c := conns[g.n(len(conns))]
		if g.n(3) == 0 {
			batch = append(batch, entry{op: g.op(c), proto: flow.Protocol(g.n(int(flow.ProtoTLS) + 1))})
			continue
		}
		ex := &flow.Exchange{Conn: c, Record: g.record()}
		for range g.n(4) {
			ex.Ops = append(ex.Ops, g.op(c))
		}
		batch = append(batch, entry{ex: ex})
	}
	return batch
}

func (g gen) config() Config {
	cfg := testConfig("127.0.0.1:1")
	cfg.NodeName, cfg.Cluster = g.str(), g.str()
	cfg.BootTime = []time.Time{testBoot, time.Unix(0, 0), time.Date(1960, 1, 1, 0, 0, 0, 999999999, time.UTC)}[g.n(3)]
	cfg.NetInterfaces = nil
	for range g.n(4) {
		cfg.NetInterfaces = append(cfg.NetInterfaces, NetInterface{Name: g.str(),
			Index: []int{0, 1, -1, math.MaxInt32, math.MaxInt64}[g.n(5)], MTU: []int{0, 1500, 65536, -5}[g.n(4)]})
	}
	cfg.ExcludeNamespaces = nil
	for range g.n(3) {
		cfg.ExcludeNamespaces = append(cfg.ExcludeNamespaces, g.str())
	}
	return cfg
}

func prng(seed uint64) gen {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return gen{next: r.Uint64}
}

func TestEncodeMatchesBuilderRandomBatches(t *testing.T) {
	tmpl := defaultTemplate(t)
	total := 0
	for seed := range uint64(300) {
		g := prng(seed)
		cfg := g.config()
		cluster := []string{"", "prod"}[g.n(2)]
		batch := g.batch(60, 6)
		total += equivalence(t, tmpl, cluster, batch, nodeInfo(cfg), encodeNode(cfg))
		// Without node info, as the benchmark encodes.
		equivalence(t, tmpl, cluster, batch, nil, nil)
	}
	t.Logf("%d messages compared", total)
}

// Every combination of Measured bits, for writes and reads, with zero and
// non-zero values: layers present or absent, fields set or left zero.
func TestEncodeMatchesBuilderEveryMetricCombination(t *testing.T) {
	tmpl := defaultTemplate(t)
	g := prng(1)
	c := conn(1, event.RoleServer, podCatalog, 8080, remoteFrontend, podFrontend)
	var batch []entry
	for bits := event.Metric(0); bits < event.MetricRTT<<1; bits++ {
		zeroS, zeroR := &event.SendMetrics{Measured: bits}, &event.RecvMetrics{Measured: bits}
		full := allSend()
		full.Measured = bits
		full.Drops = append(full.Drops, event.Drop{}, event.Drop{Reason: "X", Count: math.MaxUint32})
		rv := allRecv()
		rv.Measured = bits
		batch = append(batch,
			entry{op: &flow.KernelOp{Conn: c, Kind: flow.OpWrite, Syscall: event.SysSendmsg, Send: full}},
			entry{op: &flow.KernelOp{Conn: c, Kind: flow.OpWrite, Send: zeroS}},
			entry{op: &flow.KernelOp{Conn: c, Kind: flow.OpWrite, Send: g.send(bits)}},
			entry{op: &flow.KernelOp{Conn: c, Kind: flow.OpRead, Syscall: event.SysRecvmmsg, Recv: rv}},
			entry{op: &flow.KernelOp{Conn: c, Kind: flow.OpRead, Recv: zeroR}},
			entry{op: &flow.KernelOp{Conn: c, Kind: flow.OpRead, Recv: g.recv(bits)}},
		)
	}
	// Several messages: maxKernelLogsPerMessage splits them.
	if n := equivalence(t, tmpl, "", batch, nil, nil); n != (len(batch)+maxKernelLogsPerMessage-1)/maxKernelLogsPerMessage {
		t.Errorf("%d messages for %d kernel logs", n, len(batch))
	}
}

// Every operation kind and syscall, every address form and role, every
// HTTP version, method and trace kind, and entries with every field zero.
func TestEncodeMatchesBuilderEveryKind(t *testing.T) {
	tmpl := defaultTemplate(t)
	var batch []entry
	id := event.ConnID(0)
	for _, local := range sampleAddr {
		for _, remote := range sampleAddr {
			for _, role := range []event.Role{event.RoleClient, event.RoleServer} {
				for _, pods := range [][2]*flow.Pod{{nil, nil}, {podFrontend, nil}, {nil, podCatalog}, {podFrontend, podCatalog}, {{}, {}}} {
					id++
					c := &flow.Connection{ID: id, Role: role, Local: flow.Peer{Addr: local, Pod: pods[0]},
						Remote: flow.Peer{Addr: remote, Pod: pods[1]}}
					if id%2 == 0 {
						c.Process = flow.Process{Comm: "nginx", ContainerID: containerID}
					}
					batch = append(batch, entry{op: &flow.KernelOp{Conn: c, Kind: sampleKinds[int(id)%len(sampleKinds)]}})
				}
			}
		}
	}
	c := conn(1000, event.RoleClient, podFrontend, 40001, remoteCatalog, podCatalog)
	for _, kind := range sampleKinds {
		for sys := event.Syscall(0); sys <= event.SysSendfile+1; sys++ {
			batch = append(batch,
				entry{op: &flow.KernelOp{Conn: c, Kind: kind, Syscall: sys}},
				entry{op: &flow.KernelOp{Conn: c, Kind: kind, Syscall: sys, Start: 1, End: math.MaxUint64, Success: true}})
		}
	}
	for pi, p := range sampleProtos {
		h := conn(event.ConnID(2000+pi), event.RoleServer, podCatalog, 8080, remoteFrontend, podFrontend)
		for _, m := range append(sampleMethods, "PROPFIND") {
			for _, kind := range []tracectx.Kind{tracectx.KindNone, tracectx.KindSW8, tracectx.KindB3, tracectx.KindTraceparent} {
				ex := exchange(h, p, m, "/x", 200, seqOp(h, flow.OpRead, 1))
				ex.Record.Trace = tracectx.Context{Kind: kind, TraceID: "t", SegmentID: "s", SpanID: "1"}
				batch = append(batch, entry{ex: ex})
				// Zero everything the encoding lets be zero.
				zero := &flow.Exchange{Conn: h, Record: &record.Record{Method: m, Status: 1, Trace: tracectx.Context{Kind: kind}}}
				batch = append(batch, entry{ex: zero})
			}
		}
		// Response end before request start: the span is empty.
		ex := exchange(h, p, "GET", "/y", 200)
		ex.Record.ReqStart, ex.Record.RespEnd = 5000, 10
		batch = append(batch, entry{ex: ex})
		// No response: the exchange's operations only, and none.
		batch = append(batch, entry{ex: exchange(h, p, "GET", "/hang", 0, seqOp(h, flow.OpRead, 7))})
		batch = append(batch, entry{ex: exchange(h, p, "GET", "/hang", 0)})
	}
	// A connection whose only entry is an unexportable exchange without
	// operations has no message (the exporter filters these; the encoder
	// must still agree with the reference), first in a batch too.
	lone := conn(3000, event.RoleClient, podFrontend, 1, remoteIP, nil)
	equivalence(t, tmpl, "", []entry{{ex: exchange(lone, record.HTTP11, "PROPFIND", "/", 200)}}, nodeInfo(testConfig("x:1")), encodeNode(testConfig("x:1")))
	batch = append([]entry{{ex: exchange(lone, record.HTTP11, "PROPFIND", "/", 200)}}, batch...)

	cfg := testConfig("127.0.0.1:1")
	cfg.Cluster, cfg.ExcludeNamespaces = "prod", []string{"kube-system", ""}
	for _, cluster := range []string{"", "prod"} {
		equivalence(t, tmpl, cluster, batch, nodeInfo(cfg), encodeNode(cfg))
	}
	equivalence(t, tmpl, "", nil, nodeInfo(cfg), encodeNode(cfg))
}

// The node field alone, for configurations the random batches may miss.
func TestEncodeNodeMatchesProtoMarshal(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{NodeName: "n", Cluster: "c", BootTime: testBoot, ExcludeNamespaces: []string{""}},
		{NetInterfaces: []NetInterface{{}, {Name: strings.Repeat("i", 300), Index: -1, MTU: math.MaxInt32}}},
		testConfig("127.0.0.1:1"),
	} {
		want, err := proto.Marshal(&alv3.EBPFAccessLogMessage{Node: nodeInfo(cfg)})
		if err != nil {
			t.Fatal(err)
		}
		if got := encodeNode(cfg); !bytes.Equal(got, want) {
			t.Errorf("node of %+v:\n got %x\nwant %x", cfg, got, want)
		}
	}
}

// FuzzEncodeMatchesBuilder derives batches and node configurations from the
// fuzzer's bytes and requires the encoder to agree with the reference.
func FuzzEncodeMatchesBuilder(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09"))
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	f.Add([]byte("GET /items HTTP/1.1\r\nHost: catalog\r\n\r\n"))
	for seed := range uint64(8) {
		b := make([]byte, 256)
		g := prng(seed)
		for i := range b {
			b[i] = byte(g.next())
		}
		f.Add(b)
	}
	tmpl := defaultTemplate(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		// Each number is taken from the next 8 bytes, cycling; an
		// empty input gives zeros.
		pos := 0
		g := gen{next: func() uint64 {
			var v uint64
			for i := 0; i < 8 && len(data) > 0; i++ {
				v = v<<8 | uint64(data[pos%len(data)])
				pos++
			}
			return v ^ uint64(pos)*0x9e3779b97f4a7c15
		}}
		cfg := g.config()
		equivalence(t, tmpl, []string{"", "prod"}[g.n(2)], g.batch(20, 4), nodeInfo(cfg), encodeNode(cfg))
	})
}

// The encoding buffer is reused from batch to batch, but one that an
// unusually large batch needed is given back.
func TestEncodeBufferIsReusedAndBounded(t *testing.T) {
	b := newBuilder(defaultTemplate(t), "", "node-a", &stats{})
	c := conn(1, event.RoleServer, podCatalog, 8080, remoteFrontend, podFrontend)
	small := []entry{{ex: exchange(c, record.HTTP11, "GET", "/items", 200)}}
	b.encode(small, nil)
	b.release()
	kept := cap(b.enc.buf)
	if kept == 0 {
		t.Fatal("buffer of a small batch not kept")
	}
	if allocs := testing.AllocsPerRun(10, func() { b.encode(small, nil); b.release() }); allocs != 0 {
		t.Errorf("encoding a batch in the steady state allocates %v times", allocs)
	}
	big := []entry{{ex: exchange(c, record.HTTP11, "GET", strings.Repeat("x", 2*maxRetainedEncodeBytes), 200)}}
	msgs := b.encode(big, nil)
	if len(msgs) != 1 || len(msgs[0].b) < 2*maxRetainedEncodeBytes {
		t.Fatalf("big batch: %d messages", len(msgs))
	}
	b.release()
	if cap(b.enc.buf) > maxRetainedEncodeBytes || len(b.enc.msgs) != 0 {
		t.Errorf("after a big batch the encoder keeps %d bytes and %d messages", cap(b.enc.buf), len(b.enc.msgs))
	}
}

// contentTypeServer records the content-type of each stream and the
// messages it received.
type contentTypeServer struct {
	alv3.UnimplementedEBPFAccessLogServiceServer
	mu    sync.Mutex
	types []string
	msgs  []*alv3.EBPFAccessLogMessage
}

func (s *contentTypeServer) Collect(st alv3.EBPFAccessLogService_CollectServer) error {
	md, _ := metadata.FromIncomingContext(st.Context())
	var msgs []*alv3.EBPFAccessLogMessage
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	s.mu.Lock()
	s.types = append(s.types, md.Get("content-type")...)
	s.msgs = append(s.msgs, msgs...)
	s.mu.Unlock()
	return st.SendAndClose(&alv3.EBPFAccessLogDownstream{})
}

// The raw codec changes nothing on the wire: the content-type is gRPC's
// default, and the server decodes what the reference builder builds.
func TestRawCodecKeepsTheWireUnchanged(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	cts := &contentTypeServer{}
	alv3.RegisterEBPFAccessLogServiceServer(srv, cts)
	go srv.Serve(lis) //nolint:errcheck // returns when stopped
	t.Cleanup(srv.Stop)

	cfg := testConfig(lis.Addr().String())
	cfg.Cluster, cfg.ExcludeNamespaces = "prod", []string{"kube-system"}
	e, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.conn.Close() })
	batch := prng(7).batch(40, 3)
	for i := range batch { // the exporter refuses unknown roles
		if c := batch[i].conn(); c.Role == event.RoleUnknown {
			c.Role = event.RoleClient
		}
	}
	want := newBuilder(e.b.tmpl, cfg.Cluster, cfg.NodeName, &stats{}).build(batch, nodeInfo(cfg))
	items := e.b.items(batch)
	s := &sender{e: e, batch: items, msgs: e.b.assemble(items, e.node)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.stream(ctx); err != nil {
		t.Fatal(err)
	}
	cts.mu.Lock()
	defer cts.mu.Unlock()
	if len(cts.types) != 1 || cts.types[0] != "application/grpc" {
		t.Errorf("content-type %q, want application/grpc", cts.types)
	}
	if len(cts.msgs) != len(want) {
		t.Fatalf("server received %d messages, want %d", len(cts.msgs), len(want))
	}
	for i := range want {
		w := proto.Clone(want[i]).(*alv3.EBPFAccessLogMessage)
		repairUTF8(w.ProtoReflect())
		if !proto.Equal(cts.msgs[i], w) {
			t.Errorf("message %d:\n got %v\nwant %v", i, cts.msgs[i], w)
		}
	}
}

// BenchmarkEncodeExchange is BenchmarkBuildAndMarshalExchange without
// gRPC's codec: the encoder alone.
func BenchmarkEncodeExchange(b *testing.B) {
	bld := newBuilder(defaultTemplate(b), "", "node-a", &stats{})
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
		bld.encode(batch, nil)
		bld.release()
	}
}

// Endpoints are named by the path alone: one endpoint per query value
// would be unbounded, and it is not how the OAP and its agents name them.
func TestProtocolLogPathHasNoQueryString(t *testing.T) {
	c := conn(1, event.RoleServer, podFrontend, 80, netip.MustParseAddrPort("10.0.0.9:40000"), nil)
	b := newBuilder(template.Must(template.New("s").Parse(DefaultServiceNameTemplate)), "", "node-a", &stats{})
	for target, want := range map[string]string{
		"/items?id=1": "/items", "/items?id=2#top": "/items", "/a#b?c": "/a", "/plain": "/plain",
	} {
		msgs := b.encode([]entry{{ex: exchange(c, record.HTTP11, "GET", target, 200)}}, nil)
		var m alv3.EBPFAccessLogMessage
		if err := proto.Unmarshal(msgs[0].b, &m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetProtocolLog().GetHttp().GetRequest().GetPath(); got != want {
			t.Errorf("target %q sent as path %q, want %q", target, got, want)
		}
		b.release()
	}
}

// A client connection to a ClusterIP is sent with the backend conntrack
// says answers, so the OAP relates the client to a pod; connections to
// local pods, server connections and addresses conntrack does not know
// keep the socket's remote.
func TestClientRemoteIsTheBackendConntrackFound(t *testing.T) {
	clusterIP := netip.MustParseAddrPort("10.96.0.10:80")
	backend := netip.MustParseAddrPort("10.1.0.5:8080")
	ct := conntrack.NewFunc(0, func(tu conntrack.Tuple) (netip.AddrPort, error) {
		if tu.Remote == clusterIP {
			return backend, nil
		}
		return netip.AddrPort{}, conntrack.ErrNotFound
	})
	b := newBuilder(template.Must(template.New("s").Parse(DefaultServiceNameTemplate)), "", "node-a", &stats{})
	b.conntrack = ct
	remote := func(c *flow.Connection) string {
		t.Helper()
		msgs := b.encode([]entry{{op: seqOp(c, flow.OpConnect, 1)}}, nil)
		defer b.release()
		var m alv3.EBPFAccessLogMessage
		if err := proto.Unmarshal(msgs[0].b, &m); err != nil {
			t.Fatal(err)
		}
		r := m.GetConnection().GetRemote()
		if k := r.GetKubernetes(); k != nil {
			return "pod " + k.GetPodName()
		}
		return fmt.Sprintf("%s:%d", r.GetIp().GetHost(), r.GetIp().GetPort())
	}
	for _, tc := range []struct {
		name string
		c    *flow.Connection
		want string
	}{
		{"client to a ClusterIP", conn(1, event.RoleClient, podFrontend, 40000, clusterIP, nil), "10.1.0.5:8080"},
		{"client to an unknown address", conn(2, event.RoleClient, podFrontend, 40001, netip.MustParseAddrPort("192.0.2.1:443"), nil), "192.0.2.1:443"},
		{"client to a local pod", conn(3, event.RoleClient, podFrontend, 40002, clusterIP, podCatalog), "pod " + podCatalog.Name},
		{"server", conn(4, event.RoleServer, podFrontend, 80, clusterIP, nil), "10.96.0.10:80"},
	} {
		if got := remote(tc.c); got != tc.want {
			t.Errorf("%s: remote sent as %s, want %s", tc.name, got, tc.want)
		}
	}
	if st := ct.Stats(); st.Translated != 1 || st.Missing != 1 {
		t.Errorf("conntrack stats %+v, want 1 translated and 1 missing", st)
	}
}

// An exchange that cannot be a protocol log brings several kernel logs in
// one queue item; when a connection's kernel logs fill a message part-way
// through such an item, the item is split between its kernel logs exactly
// where the reference splits, and the entry counts where its first kernel
// log went.
func TestEncodeSplitsAnItemAtTheKernelLogBound(t *testing.T) {
	tmpl := defaultTemplate(t)
	c := conn(1, event.RoleServer, podCatalog, 8080, remoteFrontend, podFrontend)
	var batch []entry
	seq := uint64(1)
	for range maxKernelLogsPerMessage - 3 {
		batch = append(batch, entry{op: seqOp(c, flow.OpWrite, seq)})
		seq += 2
	}
	var ops []*flow.KernelOp
	for range 7 {
		ops = append(ops, seqOp(c, flow.OpRead, seq))
		seq += 2
	}
	batch = append(batch, entry{ex: exchange(c, record.HTTP11, "GET", "/hang", 0, ops...)}) // no response
	batch = append(batch, entry{op: seqOp(c, flow.OpClose, seq)})
	if n := equivalence(t, tmpl, "", batch, nil, nil); n != 2 {
		t.Fatalf("%d messages, want 2 (256 kernel logs, then 5)", n)
	}
	b := newBuilder(tmpl, "", "node-a", &stats{})
	b.encode(batch, nil)
	if got, want := b.enc.entries, []int{maxKernelLogsPerMessage - 3 + 1, 1}; !slices.Equal(got, want) {
		t.Errorf("entries per message %v, want %v (the exchange counts where its first kernel log is)", got, want)
	}
}

// The queue keeps encoded bytes, not the flow values: an operation and an
// exchange handed to the exporter can be collected while their entries
// wait for the OAP, so the garbage collector has nothing of them to trace.
func TestQueuedEntriesKeepNoFlowValueAlive(t *testing.T) {
	e := newExporter(t, testConfig("127.0.0.1:1"))
	c := conn(1, event.RoleServer, podCatalog, 8080, remoteFrontend, podFrontend)
	var collected atomic.Int32
	func() {
		op := seqOp(c, flow.OpWrite, 1)
		op.Send = allSend()
		ex := exchange(c, record.HTTP11, "GET", "/items", 200, seqOp(c, flow.OpRead, 3))
		runtime.AddCleanup(op, func(int) { collected.Add(1) }, 0)
		runtime.AddCleanup(op.Send, func(int) { collected.Add(1) }, 0)
		runtime.AddCleanup(ex, func(int) { collected.Add(1) }, 0)
		runtime.AddCleanup(ex.Record, func(int) { collected.Add(1) }, 0)
		e.ConnOp(op, flow.ProtoHTTP1)
		e.Exchange(ex)
	}()
	for i := 0; i < 20 && collected.Load() < 4; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if n := e.q.len(); n != 2 {
		t.Fatalf("%d entries queued, want 2", n)
	}
	if got := collected.Load(); got != 4 {
		t.Errorf("%d of 4 flow values collected while their entries are queued", got)
	}
}

// Every field number encode.go declares is below 16, so its one-byte tags
// (tagByte) are the varint tags protowire writes. A field numbered 16 or
// more needs the general tag first: this test is what says so.
func TestFieldNumbersFitOneByteTags(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "encode.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "f") || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.INT {
					t.Errorf("field %s is not an integer literal; this test cannot check it", name.Name)
					continue
				}
				v, err := strconv.Atoi(lit.Value)
				if err != nil || v < 1 || v >= 16 {
					t.Errorf("field %s = %s: tagByte needs 1..15", name.Name, lit.Value)
				}
				if protowire.AppendTag(nil, protowire.Number(v), protowire.BytesType)[0] != tagByte(protowire.Number(v), protowire.BytesType) {
					t.Errorf("field %s: tagByte differs from protowire", name.Name)
				}
				n++
			}
		}
	}
	if n < 80 {
		t.Fatalf("found %d field constants in encode.go; expected all of them (about 90)", n)
	}
}
