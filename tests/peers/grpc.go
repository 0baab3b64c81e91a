package peers

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// Full gRPC method names of the calls the peers make: what Weir must report
// as the request path.
const (
	GRPCUnaryMethod     = "/grpc.testing.TestService/UnaryCall"
	GRPCStreamingMethod = "/grpc.testing.TestService/StreamingOutputCall"
)

// maxGRPCCalls bounds calls and stream messages of one grpc-client run.
const maxGRPCCalls = 10000

// testService implements grpc.testing.TestService (shipped with grpc-go, so
// no new module): UnaryCall answers ResponseSize bytes, StreamingOutputCall
// one message per ResponseParameters entry, and both return the requested
// ResponseStatus as the call's status — the error-status case.
type testService struct {
	testpb.UnimplementedTestServiceServer
}

func (testService) UnaryCall(_ context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if st := req.GetResponseStatus(); st != nil && st.GetCode() != 0 {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	if req.GetResponseSize() < 0 || req.GetResponseSize() > MaxBodyBytes {
		return nil, status.Error(codes.InvalidArgument, "response size out of range")
	}
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: Pattern(int(req.GetResponseSize()))}}, nil
}

func (testService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	if len(req.GetResponseParameters()) > maxGRPCCalls {
		return status.Error(codes.InvalidArgument, "too many response messages")
	}
	for _, p := range req.GetResponseParameters() {
		if p.GetSize() < 0 || p.GetSize() > MaxBodyBytes {
			return status.Error(codes.InvalidArgument, "message size out of range")
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: Pattern(int(p.GetSize()))}}); err != nil {
			return err
		}
	}
	if st := req.GetResponseStatus(); st != nil && st.GetCode() != 0 {
		return status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return nil
}

func runGRPCServer(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("grpc-server")
	listen := fs.String("listen", ":9090", "address to listen on")
	certFile := fs.String("tls-cert", "", "serve gRPC over TLS with this PEM certificate (and -tls-key)")
	keyFile := fs.String("tls-key", "", "PEM key of -tls-cert")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var opts []grpc.ServerOption
	if *certFile != "" {
		creds, err := credentials.NewServerTLSFromFile(*certFile, *keyFile)
		if err != nil {
			return fmt.Errorf("TLS: %w", err)
		}
		opts = append(opts, grpc.Creds(creds))
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *listen, err)
	}
	srv := grpc.NewServer(opts...)
	testpb.RegisterTestServiceServer(srv, testService{})
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
	}()
	printReady(stdout, ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// GRPCCall is one call as the grpc-client saw it.
type GRPCCall struct {
	Method   string `json:"method"`
	Code     int    `json:"code"`
	Message  string `json:"message,omitempty"`
	Messages int    `json:"messages"` // response messages received
}

// GRPCClientReport is the grpc-client's report.
type GRPCClientReport struct {
	Calls []GRPCCall   `json:"calls"`
	Conns []ConnReport `json:"conns"`
}

// runGRPCClient makes, on one connection: -unary successful unary calls,
// -streams server-streaming calls of -stream-messages messages each, and
// -errors unary calls that end with status -error-code.
func runGRPCClient(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("grpc-client")
	addr := fs.String("addr", "", "server host:port")
	unary := fs.Int("unary", 1, "successful unary calls")
	streams := fs.Int("streams", 1, "server-streaming calls")
	streamMsgs := fs.Int("stream-messages", 5, "messages per streaming call")
	errs := fs.Int("errors", 1, "unary calls answered with -error-code")
	errCode := fs.Int("error-code", int(codes.NotFound), "status code of the error calls")
	size := fs.Int("size", 100, "response payload bytes")
	timeout := fs.Duration("timeout", 30*time.Second, "bound on the whole run")
	useTLS := fs.Bool("tls", false, "gRPC over TLS (the server's certificate is not verified)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addr == "" || *unary+*streams+*errs > maxGRPCCalls || *streamMsgs > maxGRPCCalls {
		return fmt.Errorf("need -addr and at most %d calls and stream messages", maxGRPCCalls)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rec := &recorder{}
	creds := insecure.NewCredentials()
	if *useTLS {
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})
	}
	cc, err := grpc.NewClient(*addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", a)
			if err != nil {
				return nil, err
			}
			return rec.wrap(c), nil
		}))
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	client := testpb.NewTestServiceClient(cc)
	var calls []GRPCCall
	for range *unary {
		_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: int32(*size)})
		calls = append(calls, callResult(GRPCUnaryMethod, err, 1))
	}
	for range *streams {
		params := make([]*testpb.ResponseParameters, *streamMsgs)
		for i := range params {
			params[i] = &testpb.ResponseParameters{Size: int32(*size)}
		}
		st, err := client.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: params})
		n := 0
		for err == nil {
			if _, err = st.Recv(); err == nil {
				n++
			}
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
		calls = append(calls, callResult(GRPCStreamingMethod, err, n))
	}
	for range *errs {
		_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{
			ResponseStatus: &testpb.EchoStatus{Code: int32(*errCode), Message: "weir peer error"},
		})
		calls = append(calls, callResult(GRPCUnaryMethod, err, 0))
	}
	if err := cc.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	conns, err := rec.reports()
	if err != nil {
		return err
	}
	return writeReport(stdout, GRPCClientReport{Calls: calls, Conns: conns})
}

func callResult(method string, err error, msgs int) GRPCCall {
	st, _ := status.FromError(err)
	c := GRPCCall{Method: method, Code: int(st.Code()), Message: st.Message(), Messages: msgs}
	if err != nil {
		c.Messages = 0
	}
	return c
}
