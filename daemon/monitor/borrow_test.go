package monitor

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/weirnet/weir/bpf"
	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/flow"
)

// callLog is a flow.OpConsumer that writes down, in full, what each call
// hands it before the call returns, and keeps no value: what a consumer
// sees during its calls.
type callLog struct {
	mu  sync.Mutex
	log []string
}

func describeOp(op *flow.KernelOp) string {
	return fmt.Sprintf("conn=%d %s sys=%d [%d,%d] ok=%v errno=%d bytes=%d send=%+v recv=%+v socket=%+v",
		op.Conn.ID, op.Kind, op.Syscall, op.Start, op.End, op.Success, op.Errno, op.Bytes, op.Send, op.Recv, op.Socket)
}

func (l *callLog) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log = append(l.log, s)
}

func (l *callLog) KernelOp(op *flow.KernelOp) { l.add("op " + describeOp(op)) }

func (l *callLog) ConnOp(op *flow.KernelOp, proto flow.Protocol) {
	l.add(fmt.Sprintf("connop proto=%d %s", proto, describeOp(op)))
}

func (l *callLog) Exchange(ex *flow.Exchange) {
	var b strings.Builder
	fmt.Fprintf(&b, "exchange conn=%d %+v", ex.Conn.ID, *ex.Record)
	for _, op := range ex.Ops {
		b.WriteString("\n  " + describeOp(op))
	}
	l.add(b.String())
}

func (l *callLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.log)
}

// borrowingLog is a callLog that says it is a flow.Borrower. It notes the
// address of each operation (as a number, keeping nothing) to tell reuse.
type borrowingLog struct {
	callLog
	addrs map[uintptr]int
}

func (*borrowingLog) Borrows() {}

func (l *borrowingLog) KernelOp(op *flow.KernelOp) {
	l.callLog.KernelOp(op)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.addrs == nil {
		l.addrs = map[uintptr]int{}
	}
	l.addrs[uintptr(unsafe.Pointer(op))]++
}

// reused says how many operations had the address of an earlier one.
func (l *borrowingLog) reused() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, k := range l.addrs {
		n += k - 1
	}
	return n
}

// decodingSink hands each data event to sink through the ring buffer
// reader's decoder, written as the kernel side writes it: with a sink that
// borrows metrics, the decoder hands every event's in the same memory.
// Each event's metrics get a byte count of their own, so that one
// operation showing another's would be seen.
type decodingSink struct {
	event.Sink
	t   *testing.T
	dec bpf.Decoder
	buf []byte
	n   uint64
}

func (d *decodingSink) Data(e event.Data) {
	d.n++
	if e.Send != nil {
		m := *e.Send
		m.Measured |= event.MetricPackets
		m.PacketBytes = d.n
		e.Send = &m
	}
	if e.Recv != nil {
		m := *e.Recv
		m.Measured |= event.MetricPackets
		m.PacketBytes = d.n
		e.Recv = &m
	}
	d.buf = bpf.AppendDataRecord(d.buf[:0], e)
	if err := d.dec.Decode(d.buf, d.Sink); err != nil {
		d.t.Fatal(err)
	}
}

// keepAliveExchanges is a client and a server end of one keep-alive
// connection making n requests, enough for the pipeline to reuse
// operations and exchanges many times over.
func keepAliveExchanges(sink event.Sink, n int) {
	client := &connGen{id: 31, proc: proc(2)}
	server := &connGen{id: 32, proc: proc(1)}
	sink.ConnOpen(client.open(event.RoleClient, "10.0.0.3:40001", "10.0.0.2:80", 1000))
	sink.ConnOpen(server.open(event.RoleServer, "10.0.0.2:80", "10.0.0.3:40001", 1100))
	ts := event.Timestamp(2000)
	for range n {
		feed(sink, client.completeSyscall(event.Egress, []byte(httpReq), ts, ts+100))
		feed(sink, server.completeSyscall(event.Ingress, []byte(httpReq), ts+200, ts+300))
		feed(sink, server.completeSyscall(event.Egress, []byte(httpResp), ts+400, ts+500))
		feed(sink, client.completeSyscall(event.Ingress, []byte(httpResp), ts+600, ts+700))
		ts += 1000
	}
	sink.ConnClose(event.ConnClose{Conn: 31, Proc: client.proc, FD: 5, Start: ts, End: ts + 100, Success: true})
	sink.ConnClose(event.ConnClose{Conn: 32, Proc: server.proc, FD: 5, Start: ts, End: ts + 100, Success: true})
}

// When every consumer is a flow.Borrower the pipeline reuses operations
// and exchanges once the consumers returned. What consumers see during
// their calls must not change: the same traffic gives the same calls,
// field for field, with reuse as without.
func TestReusedOperationsAndExchangesLookTheSameToBorrowers(t *testing.T) {
	scenarios := map[string]func(event.Sink){
		"keep-alive":  func(s event.Sink) { keepAliveExchanges(s, 3*maxFree) },
		"pipelined":   pipelinedHTTP1,
		"many writes": manyWriteResponse,
		"plain tcp":   plainTCPEcho,
		"h2 streams":  concurrentHTTP2Streams,
		"all, in turn": func(s event.Sink) {
			keepAliveExchanges(s, 20)
			pipelinedHTTP1(s)
			manyWriteResponse(s)
			plainTCPEcho(s)
			concurrentHTTP2Streams(s)
		},
	}
	for name, feedAll := range scenarios {
		t.Run(name, func(t *testing.T) {
			keeping := &callLog{}
			h := startConsumers(t, testConfig(), []flow.Consumer{keeping}, serverPod, clientPod)
			if h.m.pipe.reuse {
				t.Fatal("a consumer that is not a Borrower left reuse on")
			}
			feedAll(&decodingSink{Sink: h.sink, t: t})

			borrowing := &borrowingLog{}
			hb := startConsumers(t, testConfig(), []flow.Consumer{borrowing}, serverPod, clientPod)
			if !hb.m.pipe.reuse {
				t.Fatal("only Borrowers, and reuse is off")
			}
			if mb, ok := hb.sink.(event.MetricsBorrower); !ok || !mb.BorrowsMetrics() {
				t.Fatal("only Borrowers, and the table does not borrow the decoder's metrics")
			}
			feedAll(&decodingSink{Sink: hb.sink, t: t})
			if name == "keep-alive" && borrowing.reused() == 0 {
				t.Error("no operation was reused")
			}

			want, got := keeping.snapshot(), borrowing.snapshot()
			if len(want) == 0 {
				t.Fatal("the scenario made no calls")
			}
			if !slices.Equal(got, want) {
				for i := range min(len(got), len(want)) {
					if got[i] != want[i] {
						t.Fatalf("call %d of %d/%d differs with reuse:\n%s\nwithout:\n%s", i, len(got), len(want), got[i], want[i])
					}
				}
				t.Fatalf("%d calls with reuse, %d without", len(got), len(want))
			}
		})
	}
}
