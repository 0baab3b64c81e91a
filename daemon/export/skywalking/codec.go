package skywalking

import (
	"bytes"
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	alv3 "skywalking.apache.org/repo/goapi/collect/ebpf/accesslog/v3"
)

// collectMethod is the full method name of the stream, as in goapi's
// generated client (accesslog_grpc.pb.go).
const collectMethod = "/skywalking.v3.EBPFAccessLogService/collect"

// rawCodec is the gRPC codec of the collect stream. Messages are encoded
// before the stream is opened (see encode.go), once per batch however often
// it is resent; rawCodec hands their bytes to gRPC instead of marshalling
// structs again. Anything else, the OAP's EBPFAccessLogDownstream reply, goes
// through gRPC's own proto codec.
//
// Marshal copies the bytes (into a buffer of gRPC's pool when large): gRPC
// may keep a message after SendMsg returns (for a transparent retry, or until
// the transport has written it), while the encoder reuses its buffer for the
// next batch. The copy is a small fraction of what marshalling cost.
type rawCodec struct {
	proto encoding.CodecV2
}

func newRawCodec() (rawCodec, error) {
	c := encoding.GetCodecV2(protocodec.Name)
	if c == nil {
		return rawCodec{}, errors.New("skywalking: gRPC's proto codec is not registered")
	}
	return rawCodec{proto: c}, nil
}

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*rawMessage)
	if !ok {
		return c.proto.Marshal(v)
	}
	if mem.IsBelowBufferPoolingThreshold(len(m.b)) {
		// As gRPC's proto codec does: a pooled buffer this small
		// would not be returned to the pool.
		return mem.BufferSlice{mem.SliceBuffer(bytes.Clone(m.b))}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(len(m.b))
	copy(*buf, m.b)
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return c.proto.Unmarshal(data, v)
}

// Name is empty so that the content-type stays "application/grpc", exactly
// what the generated client sends with gRPC's default codec: a forced codec's
// name becomes the content-subtype ("application/grpc+<name>"). The codec is
// only ever forced on a call, never registered, where a name is required.
func (rawCodec) Name() string { return "" }

// collectStream opens the collect stream with the raw codec. It is what
// goapi's EBPFAccessLogServiceClient.Collect does, with the codec forced.
func collectStream(ctx context.Context, cc grpc.ClientConnInterface, codec rawCodec) (grpc.ClientStream, error) {
	return cc.NewStream(ctx, &alv3.EBPFAccessLogService_ServiceDesc.Streams[0], collectMethod, grpc.ForceCodecV2(codec))
}

// closeAndRecv is the generated client's CloseAndRecv: half-close, then
// read the acknowledgement or the stream's status.
func closeAndRecv(st grpc.ClientStream) (*alv3.EBPFAccessLogDownstream, error) {
	if err := st.CloseSend(); err != nil {
		return nil, err
	}
	m := new(alv3.EBPFAccessLogDownstream)
	if err := st.RecvMsg(m); err != nil {
		return nil, err
	}
	return m, nil
}
