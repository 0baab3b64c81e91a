package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"

	"google.golang.org/grpc"
	alv3 "skywalking.apache.org/repo/goapi/collect/ebpf/accesslog/v3"
)

// Receiver is an in-process stand-in for the SkyWalking OAP's
// EBPFAccessLogService on a loopback port. The benchmark measures the cost
// of exporting, not of an OAP, so the receiver only counts what arrives:
// a real OAP on the same 2 cores would charge its own CPU to Weir's numbers.
type Receiver struct {
	alv3.UnimplementedEBPFAccessLogServiceServer

	ln  net.Listener
	srv *grpc.Server

	streams  atomic.Int64
	messages atomic.Int64
	http     atomic.Int64 // messages carrying an HTTP protocol log
	kernel   atomic.Int64 // kernel operation logs, summed over messages
}

// StartReceiver listens on 127.0.0.1 (an ephemeral port) and serves until
// Stop.
func StartReceiver() (*Receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the in-process OAP: %w", err)
	}
	r := &Receiver{ln: ln, srv: grpc.NewServer()}
	alv3.RegisterEBPFAccessLogServiceServer(r.srv, r)
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// Addr is the host:port to give the daemon as its OAP address.
func (r *Receiver) Addr() string { return r.ln.Addr().String() }

// Stop closes every stream and the listener.
func (r *Receiver) Stop() { r.srv.Stop() }

// ReceiverCounts is what the receiver has seen so far.
type ReceiverCounts struct {
	Streams, Messages, HTTP, Kernel int64
}

// Counts returns the running totals.
func (r *Receiver) Counts() ReceiverCounts {
	return ReceiverCounts{r.streams.Load(), r.messages.Load(), r.http.Load(), r.kernel.Load()}
}

// Collect implements the OAP's client-streaming RPC.
func (r *Receiver) Collect(s alv3.EBPFAccessLogService_CollectServer) error {
	r.streams.Add(1)
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return s.SendAndClose(&alv3.EBPFAccessLogDownstream{})
		}
		if err != nil {
			return err
		}
		r.messages.Add(1)
		if m.GetProtocolLog().GetHttp() != nil {
			r.http.Add(1)
		}
		r.kernel.Add(int64(len(m.GetKernelLogs())))
	}
}
