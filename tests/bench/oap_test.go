package bench

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
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
