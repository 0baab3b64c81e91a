package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	alv3 "skywalking.apache.org/repo/goapi/collect/ebpf/accesslog/v3"
)

// Receiver is an in-process stand-in for the SkyWalking OAP's
// EBPFAccessLogService on a loopback port. The benchmark measures the cost
// of exporting, not of an OAP: in a cluster the OAP runs off the node, and
// here it shares the node's two cores with the pods and the daemon, so
// whatever it spends is taken from the traffic being measured. It therefore
// does the least an honest receiver can: it accepts the stream over real
// gRPC, walks every message's wire format (protowire, no structs built; a
// malformed message fails the stream) and counts what arrived.
type Receiver struct {
	alv3.UnimplementedEBPFAccessLogServiceServer

	ln  net.Listener
	srv *grpc.Server

	streams  atomic.Int64
	messages atomic.Int64
	http     atomic.Int64 // messages carrying an HTTP protocol log
	kernel   atomic.Int64 // kernel operation logs, summed over messages
}

// receiverWindow is the receiver's HTTP/2 flow-control window, stream and
// connection: several batches of the exporter's default size.
const receiverWindow = 8 << 20

// StartReceiver listens on 127.0.0.1 (an ephemeral port) and serves until
// Stop.
func StartReceiver() (*Receiver, error) {
	proto := encoding.GetCodecV2(protocodec.Name)
	if proto == nil {
		return nil, errors.New("gRPC's proto codec is not registered")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the in-process OAP: %w", err)
	}
	r := &Receiver{ln: ln, srv: grpc.NewServer(grpc.ForceServerCodecV2(scanCodec{proto}),
		// Large flow-control windows: the receiver sends a WINDOW_UPDATE
		// (a write syscall) per quarter window read, and with gRPC's
		// 64 KiB default that was one every few dozen messages. A larger
		// read buffer reads a batch in fewer syscalls.
		grpc.InitialWindowSize(receiverWindow), grpc.InitialConnWindowSize(receiverWindow),
		grpc.ReadBufferSize(256<<10))}
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

// Collect implements the OAP's client-streaming RPC. It receives each
// message as a scan (see scanCodec) instead of the generated Recv's struct.
func (r *Receiver) Collect(s alv3.EBPFAccessLogService_CollectServer) error {
	r.streams.Add(1)
	var m messageScan
	for {
		err := s.RecvMsg(&m)
		if errors.Is(err, io.EOF) {
			return s.SendAndClose(&alv3.EBPFAccessLogDownstream{})
		}
		if err != nil {
			return err
		}
		r.messages.Add(1)
		if m.HTTP {
			r.http.Add(1)
		}
		r.kernel.Add(m.Kernel)
	}
}

// scanCodec decodes an EBPFAccessLogMessage into a messageScan; anything
// else (the reply) goes through gRPC's proto codec.
type scanCodec struct {
	proto encoding.CodecV2
}

func (c scanCodec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c scanCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*messageScan)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	if len(data) == 1 {
		return m.Scan(data[0].ReadOnlyData())
	}
	return m.Scan(data.Materialize())
}

func (scanCodec) Name() string { return protocodec.Name }

// Field numbers of skywalking.v3.EBPFAccessLogMessage and
// AccessLogProtocolLogs (goapi collect/ebpf/accesslog/v3).
const (
	fieldKernelLogs  = 3 // EBPFAccessLogMessage.kernelLogs, repeated
	fieldProtocolLog = 4 // EBPFAccessLogMessage.protocolLog
	fieldHTTP        = 1 // AccessLogProtocolLogs.http (oneof protocol)
)

// messageScan is what the receiver counts of one EBPFAccessLogMessage.
type messageScan struct {
	HTTP   bool  // protocolLog carries an http log
	Kernel int64 // number of kernelLogs
}

// Scan walks b, the wire form of one EBPFAccessLogMessage: every top-level
// field and every field of protocolLog must parse.
func (m *messageScan) Scan(b []byte) error {
	*m = messageScan{}
	return walkFields(b, func(num protowire.Number, v []byte) error {
		switch num {
		case fieldKernelLogs:
			m.Kernel++
		case fieldProtocolLog:
			return walkFields(v, func(num protowire.Number, _ []byte) error {
				if num == fieldHTTP {
					m.HTTP = true
				}
				return nil
			})
		}
		return nil
	})
}

// walkFields calls f with each length-delimited field of the message b and
// skips the others; it fails on the first field that does not parse.
func walkFields(b []byte, f func(num protowire.Number, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("field tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		if err := f(num, v); err != nil {
			return fmt.Errorf("field %d: %w", num, err)
		}
		b = b[n:]
	}
	return nil
}
