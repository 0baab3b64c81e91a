package bench

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/weirnet/weir/tests/harness"
	"github.com/weirnet/weir/tests/peers"
)

// Shape of the long-lived gRPC scenario: one grpc-go connection carrying
// well past the default 1 MiB capture budget (about 70 MiB), 100 KiB
// messages, server-streaming calls and trailers-only errors.
const (
	grpcPort         = 9091
	grpcUnary        = 640
	grpcStreams      = 20
	grpcStreamMsgs   = 5
	grpcErrors       = 40
	grpcMessageBytes = 100 << 10
)

// longGRPC runs the long-lived gRPC scenario with the daemon up: a
// grpc-server in srv, a grpc-client in cli making every call on one
// connection. It reports records seen against calls made (both pods are
// enrolled: two records per call) and the payload bytes copied out of the
// kernel per call, next to the bytes the connection carried.
func longGRPC(t *testing.T, d *harness.Daemon, srv, cli *harness.Pod, ip string) *GRPCResult {
	t.Helper()
	res := &GRPCResult{MessageBytes: grpcMessageBytes}
	fail := func(err error) *GRPCResult {
		res.Err = err.Error()
		t.Errorf("long-lived gRPC: %v", err)
		return res
	}
	peers.Start(t, srv, "grpc-server", "grpc-server", "-listen", ":"+strconv.Itoa(grpcPort))
	before, err := scrape(d)
	if err != nil {
		return fail(err)
	}
	var rep peers.GRPCClientReport
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := peers.RunJSON(ctx, cli, &rep, "grpc-client", "-addr", net.JoinHostPort(ip, strconv.Itoa(grpcPort)),
		"-unary", strconv.Itoa(grpcUnary), "-streams", strconv.Itoa(grpcStreams),
		"-stream-messages", strconv.Itoa(grpcStreamMsgs), "-errors", strconv.Itoa(grpcErrors),
		"-size", strconv.Itoa(grpcMessageBytes), "-timeout", "4m"); err != nil {
		return fail(fmt.Errorf("grpc-client: %w", err))
	}
	res.RPCs = len(rep.Calls)
	res.Conns = len(rep.Conns)
	for _, c := range rep.Conns {
		res.ConnBytes += c.Sent + c.Recv
	}
	after, err := settle(d, drainLimit)
	if err != nil {
		return fail(err)
	}
	if rc := after.RecordCounter(); rc != "" {
		res.Records = after[rc] - before[rc]
	}
	res.PayloadBytes = after["weir_capture_payload_bytes_total"] - before["weir_capture_payload_bytes_total"]
	res.Lost = Delta(before, after, after.LossNames())
	t.Logf("long-lived gRPC: %d calls on %d connection(s), %s carried; %.0f records; %.0f payload bytes copied",
		res.RPCs, res.Conns, mb(res.ConnBytes), res.Records, res.PayloadBytes)
	return res
}
