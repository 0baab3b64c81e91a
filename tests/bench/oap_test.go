package bench

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	alv3 "skywalking.apache.org/repo/goapi/collect/ebpf/accesslog/v3"
)

func TestReceiverCountsMessagesHTTPLogsAndKernelOps(t *testing.T) {
	r, err := StartReceiver()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	conn, err := grpc.NewClient(r.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := alv3.NewEBPFAccessLogServiceClient(conn).Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []*alv3.EBPFAccessLogMessage{
		{Node: &alv3.EBPFAccessLogNodeInfo{Name: "n"}, KernelLogs: []*alv3.AccessLogKernelLog{{}, {}}},
		{ProtocolLog: &alv3.AccessLogProtocolLogs{Protocol: &alv3.AccessLogProtocolLogs_Http{Http: &alv3.AccessLogHTTPProtocol{}}}},
		{KernelLogs: []*alv3.AccessLogKernelLog{{}}},
	}
	for _, m := range msgs {
		if err := s.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	if got, want := r.Counts(), (ReceiverCounts{Streams: 1, Messages: 3, HTTP: 1, Kernel: 3}); got != want {
		t.Fatalf("counts %+v, want %+v", got, want)
	}
}

func TestMessageScanAgreesWithTheGeneratedDecoder(t *testing.T) {
	http := &alv3.AccessLogProtocolLogs{Protocol: &alv3.AccessLogProtocolLogs_Http{Http: &alv3.AccessLogHTTPProtocol{
		StartTime: &alv3.EBPFTimestamp{}, Version: alv3.AccessLogHTTPProtocolVersion_HTTP2,
		Request: &alv3.AccessLogHTTPProtocolRequest{Path: "/a", SizeOfHeadersBytes: 42},
	}}}
	for i, m := range []*alv3.EBPFAccessLogMessage{
		{},
		{Node: &alv3.EBPFAccessLogNodeInfo{Name: "node-a", NetInterfaces: []*alv3.EBPFAccessLogNodeNetInterface{{Name: "eth0"}}}},
		{KernelLogs: []*alv3.AccessLogKernelLog{{}, {}, {}}},
		{Connection: &alv3.AccessLogConnection{Role: 1, TlsMode: 1}, ProtocolLog: http},
		{Node: &alv3.EBPFAccessLogNodeInfo{Name: "n"}, KernelLogs: []*alv3.AccessLogKernelLog{{}}, ProtocolLog: http},
		{ProtocolLog: &alv3.AccessLogProtocolLogs{}},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var s messageScan
		if err := s.Scan(b); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		want := messageScan{HTTP: m.GetProtocolLog().GetHttp() != nil, Kernel: int64(len(m.GetKernelLogs()))}
		if s != want {
			t.Errorf("message %d: scan %+v, want %+v", i, s, want)
		}
	}
}

func TestMessageScanRejectsMalformedMessages(t *testing.T) {
	for name, b := range map[string][]byte{
		"truncated kernel log":          {0x1a, 0x05, 0x01},
		"truncated tag":                 {0x80},
		"malformed protocol log inside": {0x22, 0x02, 0x0a, 0x05},
		"truncated varint field":        {0x28, 0xff},
	} {
		var s messageScan
		if err := s.Scan(b); err == nil {
			t.Errorf("%s: Scan(% x) accepted it", name, b)
		}
	}
}
