package skywalking

import (
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
// Marshal hands gRPC the encoder's bytes without copying them. gRPC may
// keep a message after SendMsg returns (for a transparent retry, or until the
// transport has written it); the encoder therefore reuses its buffer only
// after a stream that the OAP acknowledged, when gRPC is done with every
// message of it, and gives the buffer up to the garbage collector after any
// failed stream (see encoder.shared).
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
	if m.bs != nil {
		return m.bs, nil
	}
	return mem.BufferSlice{mem.SliceBuffer(m.b)}, nil
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
