package bench

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	alv3 "skywalking.apache.org/repo/goapi/collect/ebpf/accesslog/v3"
)

func dialReceiver(t *testing.T, r *Receiver) alv3.EBPFAccessLogServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(r.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return alv3.NewEBPFAccessLogServiceClient(conn)
}

func TestReceiverCountsMessagesHTTPLogsAndKernelOps(t *testing.T) {
	r, err := StartReceiver()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := dialReceiver(t, r).Collect(ctx)
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
	if got, want := r.Counts(), (ReceiverCounts{Streams: 1, Messages: 3, HTTP: 1, Kernel: 3, Bytes: 15}); got != want {
		t.Fatalf("counts %+v, want %+v", got, want)
	}
}

// The receiver speaks gRPC's wire protocol itself; what it counts over many
// streams and connections, with messages of every size (a large one is split
// over DATA frames, and a batch fills many frames), must be exactly what
// proto.Unmarshal finds in the bytes the clients sent.
func TestReceiverCountsAgreeWithProtoUnmarshalOverManyStreams(t *testing.T) {
	r, err := StartReceiver()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	rng := rand.New(rand.NewPCG(1, 2))
	message := func() *alv3.EBPFAccessLogMessage {
		m := &alv3.EBPFAccessLogMessage{}
		if rng.IntN(4) == 0 {
			m.Node = &alv3.EBPFAccessLogNodeInfo{Name: "node-a"}
		}
		for range rng.IntN(4) {
			m.KernelLogs = append(m.KernelLogs, &alv3.AccessLogKernelLog{Operation: &alv3.AccessLogKernelLog_Write{
				Write: &alv3.AccessLogKernelWriteOperation{Syscall: alv3.AccessLogKernelWriteSyscall(rng.IntN(3))}}})
		}
		switch rng.IntN(3) {
		case 0:
			m.ProtocolLog = &alv3.AccessLogProtocolLogs{Protocol: &alv3.AccessLogProtocolLogs_Http{Http: &alv3.AccessLogHTTPProtocol{
				Request: &alv3.AccessLogHTTPProtocolRequest{Path: strings.Repeat("p", rng.IntN(64<<10))}}}}
		case 1:
			m.ProtocolLog = &alv3.AccessLogProtocolLogs{}
		}
		return m
	}
	var want ReceiverCounts
	var mu sync.Mutex
	var wg sync.WaitGroup
	for c := range 3 {
		client := dialReceiver(t, r)
		for st := range 4 {
			var batch []*alv3.EBPFAccessLogMessage
			for range 1 + c*100 + st*37 {
				batch = append(batch, message())
			}
			var w ReceiverCounts
			w.Streams = 1
			for _, m := range batch {
				b, err := proto.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				var u alv3.EBPFAccessLogMessage
				if err := proto.Unmarshal(b, &u); err != nil {
					t.Fatal(err)
				}
				w.Messages++
				w.Bytes += int64(len(b))
				if u.GetProtocolLog().GetHttp() != nil {
					w.HTTP++
				}
				w.Kernel += int64(len(u.GetKernelLogs()))
			}
			want.Streams += w.Streams
			want.Messages += w.Messages
			want.HTTP += w.HTTP
			want.Kernel += w.Kernel
			want.Bytes += w.Bytes
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				err := func() error {
					s, err := client.Collect(ctx)
					if err != nil {
						return err
					}
					for _, m := range batch {
						if err := s.Send(m); err != nil {
							return err
						}
					}
					_, err = s.CloseAndRecv()
					return err
				}()
				if err != nil {
					mu.Lock()
					t.Errorf("stream: %v", err)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if got := r.Counts(); got != want {
		t.Fatalf("counts %+v, want %+v (proto.Unmarshal of what was sent)", got, want)
	}
}

// rawBytes is a gRPC codec that sends a []byte as the message.
type rawBytes struct{}

func (rawBytes) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}
func (rawBytes) Unmarshal(data mem.BufferSlice, v any) error { return nil }
func (rawBytes) Name() string                                { return "raw" }

func TestReceiverFailsAStreamWithAMalformedMessageOrAnotherMethod(t *testing.T) {
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
	desc := &grpc.StreamDesc{ClientStreams: true}
	send := func(method string, msg []byte) error {
		s, err := conn.NewStream(ctx, desc, method, grpc.ForceCodecV2(rawBytes{}))
		if err != nil {
			return err
		}
		if err := s.SendMsg(&msg); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if err := s.CloseSend(); err != nil {
			return err
		}
		var reply []byte
		return s.RecvMsg(&reply)
	}
	if err := send(collectPath, []byte{0x1a, 0x05, 0x01}); status.Code(err) != codes.Internal {
		t.Errorf("malformed message: %v, want code Internal", err)
	}
	if err := send("/skywalking.v3.EBPFAccessLogService/other", nil); status.Code(err) != codes.Unimplemented {
		t.Errorf("another method: %v, want code Unimplemented", err)
	}
	// The connection still serves good streams.
	if err := send(collectPath, []byte{0x1a, 0x00}); err != nil {
		t.Errorf("good stream after failed ones: %v", err)
	}
	if got, want := r.Counts(), (ReceiverCounts{Streams: 3, Messages: 1, Kernel: 1, Bytes: 2}); got != want {
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

// The receiver's gRPC framing must find the same messages, and fail at the
// same one, however the stream is cut into DATA frames, and never panic on
// any bytes.
func FuzzReceiverFraming(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 2, 0x1a, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0x22, 0x02, 0x0a, 0x00}, uint8(3))
	f.Add([]byte{1, 0, 0, 0, 0}, uint8(1))
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff}, uint8(2))
	f.Add([]byte{0, 0, 0, 0, 3, 0x1a, 0x05, 0x01}, uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		whole, parts := &Receiver{}, &Receiver{}
		sw, sp := &rstream{need: -1}, &rstream{need: -1}
		errW := sw.feed(data, whole)
		step := int(cut)%7 + 1
		var errP error
		for b := data; len(b) > 0 && errP == nil; {
			n := min(step, len(b))
			errP = sp.feed(b[:n], parts)
			b = b[n:]
		}
		if (errW == nil) != (errP == nil) {
			t.Fatalf("in one piece: %v; in pieces of %d: %v", errW, step, errP)
		}
		if whole.Counts() != parts.Counts() {
			t.Fatalf("in one piece %+v, in pieces of %d %+v", whole.Counts(), step, parts.Counts())
		}
		if errW == nil && (sw.need != sp.need || sw.nprefix != sp.nprefix || len(sw.partial) != len(sp.partial)) {
			t.Fatalf("left in a different place: %+v and %+v", sw, sp)
		}
	})
}
