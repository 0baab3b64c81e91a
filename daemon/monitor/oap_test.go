package monitor

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	alv3 "skywalking.apache.org/repo/goapi/collect/ebpf/accesslog/v3"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/export/skywalking"
	"github.com/weirnet/weir/daemon/flow"
)

// oapCounts is what the OAP's access-log handler counts from a stream: every
// kernel log of every message, by kind, and the protocol logs.
type oapCounts struct {
	kernel    map[flow.OpKind]int
	protocols int
	// perExchange is the number of kernel logs of each message carrying a
	// protocol log.
	perExchange []int
	// conns are the connection messages in force, by protocol and TLS mode.
	conns map[string]int
}

// oap is an in-process OAP that processes each message as it arrives.
type oap struct {
	alv3.UnimplementedEBPFAccessLogServiceServer
	mu   sync.Mutex
	msgs []*alv3.EBPFAccessLogMessage
}

func (o *oap) Collect(st alv3.EBPFAccessLogService_CollectServer) error {
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return st.SendAndClose(&alv3.EBPFAccessLogDownstream{})
		}
		if err != nil {
			return err
		}
		o.mu.Lock()
		o.msgs = append(o.msgs, m)
		o.mu.Unlock()
	}
}

func (o *oap) counts() oapCounts {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := oapCounts{kernel: map[flow.OpKind]int{}, conns: map[string]int{}}
	for _, m := range o.msgs {
		if conn := m.GetConnection(); conn != nil {
			c.conns[conn.GetProtocol().String()+"/"+conn.GetTlsMode().String()]++
		}
		for _, k := range m.GetKernelLogs() {
			switch {
			case k.GetConnect() != nil:
				c.kernel[flow.OpConnect]++
			case k.GetAccept() != nil:
				c.kernel[flow.OpAccept]++
			case k.GetClose() != nil:
				c.kernel[flow.OpClose]++
			case k.GetRead() != nil:
				c.kernel[flow.OpRead]++
			case k.GetWrite() != nil:
				c.kernel[flow.OpWrite]++
			}
		}
		if m.GetProtocolLog() != nil {
			c.protocols++
			c.perExchange = append(c.perExchange, len(m.GetKernelLogs()))
		}
	}
	return c
}

func startOAP(t *testing.T) (*oap, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &oap{}
	srv := grpc.NewServer()
	alv3.RegisterEBPFAccessLogServiceServer(srv, o)
	go srv.Serve(lis) //nolint:errcheck // returns when stopped
	t.Cleanup(srv.Stop)
	return o, lis.Addr().String()
}

// exportTo runs a SkyWalking exporter sending to addr until the test ends.
func exportTo(t *testing.T, addr string) *skywalking.Exporter {
	t.Helper()
	e, err := skywalking.New(skywalking.Config{
		OAP: addr, Insecure: true, NodeName: "node-a", BootTime: testBoot,
		NetInterfaces: []skywalking.NetInterface{{Name: "lo", Index: 1, MTU: 65536}},
		FlushPeriod:   10 * time.Millisecond, BatchSize: 50, QueueSize: 1000,
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return e
}

// TestOAPCountsEveryKernelOperationOnce runs the pipeline into the
// SkyWalking exporter and an in-process OAP, and counts per metric what the
// OAP would: every read, write, connect, accept and close the kernel
// reported, once.
func TestOAPCountsEveryKernelOperationOnce(t *testing.T) {
	for _, tc := range []struct {
		name      string
		feed      func(event.Sink)
		exchanges []int  // kernel logs per protocol log, in order
		conn      string // the connection's protocol/TLS mode
	}{
		{"plain TCP echo", plainTCPEcho, nil, "TCP/Plain"},
		{"concurrent HTTP/2 streams", concurrentHTTP2Streams, []int{2, 2}, "HTTP_2/Plain"},
		{"pipelined HTTP/1", pipelinedHTTP1, []int{2, 1, 2, 0}, "HTTP_1/Plain"},
		{"response in 41 writes", manyWriteResponse, []int{1 + manyWrites}, "HTTP_1/Plain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, addr := startOAP(t)
			e := exportTo(t, addr)
			h := startWith(t, testConfig(), []flow.Consumer{e}, serverPod, clientPod)
			tc.feed(h.sink)
			h.rec.mu.Lock()
			truth := map[flow.OpKind]int{}
			for _, op := range h.rec.ops {
				truth[op.Kind]++
			}
			total := len(h.rec.ops)
			h.rec.mu.Unlock()
			var got oapCounts
			waitFor(t, "the OAP to receive every operation", func() bool {
				got = o.counts()
				n := 0
				for _, v := range got.kernel {
					n += v
				}
				return n >= total && got.protocols == len(tc.exchanges)
			})
			time.Sleep(30 * time.Millisecond) // a duplicate would follow within a flush
			got = o.counts()
			for k := flow.OpConnect; k <= flow.OpRead; k++ {
				if got.kernel[k] != truth[k] {
					t.Errorf("OAP counted %d %s, the kernel reported %d", got.kernel[k], k, truth[k])
				}
			}
			if len(got.perExchange) != len(tc.exchanges) {
				t.Fatalf("protocol logs with %v kernel logs, want %v", got.perExchange, tc.exchanges)
			}
			if tc.exchanges != nil {
				a, b := slices.Clone(got.perExchange), slices.Clone(tc.exchanges)
				slices.Sort(a)
				slices.Sort(b)
				if !slices.Equal(a, b) {
					t.Errorf("protocol logs with %v kernel logs, want %v", got.perExchange, tc.exchanges)
				}
			}
			for c := range got.conns {
				if c != tc.conn {
					t.Errorf("connection sent as %s, want only %s (all: %v)", c, tc.conn, got.conns)
				}
			}
		})
	}
}
