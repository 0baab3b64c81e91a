package peers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// Bounds of the long-lived connection peers.
const (
	maxChurnRequests = 20000
	maxLongBytes     = 1 << 30
)

// runChurnServer serves HTTP/1.1 and h2c for long-lived connection tests.
// /bytes/N answers N bytes with a Content-Length, /chunked/N the same
// bytes in flushes of ?chunk= bytes (default 16 KiB) without one (chunked
// in HTTP/1.1), /status/C
// status C. Every response echoes the request's x-churn-* headers under
// x-resp-* names, so the server's HPACK encoder churns its table as much
// as the client's. -decoder-table sets the HPACK table size the server
// announces (SETTINGS_HEADER_TABLE_SIZE): smaller than the default, the
// client's encoder must send a dynamic table size update.
func runChurnServer(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("churn-server")
	listen := fs.String("listen", "", "host:port")
	decoderTable := fs.Int("decoder-table", 4096, "HPACK table size announced to clients")
	if err := fs.Parse(args); err != nil {
		return err
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, io.LimitReader(r.Body, MaxBodyBytes)); err != nil {
			return
		}
		for k, v := range r.Header {
			if strings.HasPrefix(k, "X-Churn-") {
				w.Header()["X-Resp-"+strings.TrimPrefix(k, "X-Churn-")] = v
			}
		}
		p := r.URL.Path
		arg := func(prefix string) (int, bool) {
			i := strings.LastIndex(p, prefix)
			if i < 0 {
				return 0, false
			}
			n, err := strconv.Atoi(p[i+len(prefix):])
			return n, err == nil && n >= 0 && n <= MaxBodyBytes
		}
		if n, ok := arg("/bytes/"); ok {
			w.Header().Set("Content-Length", strconv.Itoa(n))
			_, _ = w.Write(Pattern(n))
			return
		}
		if n, ok := arg("/chunked/"); ok {
			body := Pattern(n)
			f, _ := w.(http.Flusher)
			chunk, err := strconv.Atoi(r.URL.Query().Get("chunk"))
			if err != nil || chunk <= 0 || chunk > MaxBodyBytes {
				chunk = 16 << 10
			}
			for len(body) > 0 {
				k := min(len(body), chunk)
				if _, err := w.Write(body[:k]); err != nil {
					return
				}
				if f != nil {
					f.Flush()
				}
				body = body[k:]
			}
			return
		}
		if c, ok := arg("/status/"); ok && c >= 200 && c <= 599 {
			w.WriteHeader(c)
			if c != http.StatusNoContent && c != http.StatusNotModified {
				_, _ = io.WriteString(w, http.StatusText(c)+"\n")
			}
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		HTTP2: &http.HTTP2Config{MaxDecoderHeaderTableSize: *decoderTable}}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	printReady(stdout, ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ChurnReport is the churn-client's report.
type ChurnReport struct {
	Results []HTTPResult `json:"results"`
	Conns   []ConnReport `json:"conns"`
}

// runChurnClient makes -n requests on one connection (HTTP/1.1 keep-alive,
// or h2c with -concurrency streams in flight), taking -paths in turn.
// With -churn each request carries x-churn-* headers whose values keep
// changing (evicting the HPACK table), and every 50th one a header larger
// than the table. Every -post-every'th request is a POST with a body of
// -post-body bytes.
func runChurnClient(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("churn-client")
	base := fs.String("url", "", "base URL")
	paths := fs.String("paths", "/", "comma-separated paths, used in turn")
	n := fs.Int("n", 1, "requests")
	h2c := fs.Bool("h2c", false, "HTTP/2 with prior knowledge")
	conc := fs.Int("concurrency", 1, "requests in flight (h2c)")
	churn := fs.Bool("churn", false, "churning x-churn-* headers")
	decoderTable := fs.Int("decoder-table", 4096, "HPACK table size announced to the server")
	postEvery := fs.Int("post-every", 0, "every Nth request is a POST (0: none)")
	postBody := fs.Int("post-body", 64<<10, "POST body bytes")
	seed := fs.Uint64("seed", 1, "seed of the header churn")
	timeout := fs.Duration("timeout", 60*time.Second, "bound on the whole run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	list := strings.Split(*paths, ",")
	if *base == "" || *n > maxChurnRequests || *postBody > MaxBodyBytes || *conc < 1 {
		return fmt.Errorf("need -url, at most %d requests, bodies of at most %d bytes", maxChurnRequests, MaxBodyBytes)
	}
	if !*h2c {
		*conc = 1
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rec := &recorder{}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return rec.wrap(c), nil
		},
		MaxConnsPerHost:     1,
		MaxIdleConnsPerHost: 1,
		HTTP2:               &http.HTTP2Config{MaxDecoderHeaderTableSize: *decoderTable},
	}
	tr.Protocols = new(http.Protocols)
	if *h2c {
		tr.Protocols.SetUnencryptedHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	client := &http.Client{Transport: tr}
	results := make([]HTTPResult, *n)
	errs := make([]error, *n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range *conc {
		wg.Go(func() {
			for i := range next {
				results[i], errs[i] = churnRequest(ctx, client, *base, list[i%len(list)], i, *seed, *churn, *postEvery, *postBody)
			}
		})
	}
	for i := range *n {
		next <- i
	}
	close(next)
	wg.Wait()
	tr.CloseIdleConnections()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	conns, err := rec.reports()
	if err != nil {
		return err
	}
	if len(conns) != 1 {
		return fmt.Errorf("%d connections used, want 1", len(conns))
	}
	return writeReport(stdout, ChurnReport{Results: results, Conns: conns})
}

func churnRequest(ctx context.Context, c *http.Client, base, path string, i int, seed uint64, churn bool, postEvery, postBody int) (HTTPResult, error) {
	method := http.MethodGet
	var body io.Reader
	if postEvery > 0 && i%postEvery == postEvery-1 {
		method = http.MethodPost
		body = strings.NewReader(string(Pattern(postBody)))
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return HTTPResult{}, err
	}
	if churn {
		r := rand.New(rand.NewPCG(seed, uint64(i)))
		req.Header.Set("X-Churn-Tenant", strconv.Itoa(r.IntN(40)))
		req.Header.Set("X-Churn-Id", strconv.FormatUint(r.Uint64(), 36)+strings.Repeat("v", r.IntN(200)))
		if i%50 == 0 {
			req.Header.Set("X-Churn-Huge", strings.Repeat("h", 5000)) // larger than the table
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		return HTTPResult{}, fmt.Errorf("request %d %s: %w", i, path, err)
	}
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, MaxBodyBytes))
	resp.Body.Close()
	if err != nil {
		return HTTPResult{}, fmt.Errorf("body of request %d: %w", i, err)
	}
	return HTTPResult{Method: method, Path: path, Proto: resp.Proto, Status: resp.StatusCode, RespBody: n}, nil
}

// GRPCLongCall is one call of grpc-long-client: Code -1 when the client
// aborted it.
type GRPCLongCall struct {
	Method string `json:"method"`
	Code   int    `json:"code"`
}

// GRPCLongReport is grpc-long-client's report.
type GRPCLongReport struct {
	Calls []GRPCLongCall `json:"calls"`
	Conns []ConnReport   `json:"conns"`
}

// runGRPCLongClient keeps one gRPC connection busy until -bytes have been
// received, with -concurrency calls in flight: unary calls with -size
// payloads each way, server-streaming calls of 4 such messages,
// trailers-only errors (every 20th call) and streaming calls the client
// aborts after the first message (every 25th).
func runGRPCLongClient(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("grpc-long-client")
	addr := fs.String("addr", "", "server host:port")
	total := fs.Int64("bytes", 64<<20, "bytes to receive before stopping")
	size := fs.Int("size", 100<<10, "message payload bytes")
	conc := fs.Int("concurrency", 8, "calls in flight")
	timeout := fs.Duration("timeout", 90*time.Second, "bound on the whole run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addr == "" || *total > maxLongBytes || *size > MaxBodyBytes || *conc < 1 {
		return fmt.Errorf("need -addr, at most %d bytes, messages of at most %d bytes", maxLongBytes, MaxBodyBytes)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rec := &recorder{}
	cc, err := grpc.NewClient(*addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxBodyBytes+1024)),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", a)
			if err != nil {
				return nil, err
			}
			return rec.wrap(c), nil
		}))
	if err != nil {
		return err
	}
	client := testpb.NewTestServiceClient(cc)
	var (
		mu       sync.Mutex
		calls    []GRPCLongCall
		received int64
		firstErr error
	)
	nextCall := make(chan int)
	var wg sync.WaitGroup
	for range *conc {
		wg.Go(func() {
			for i := range nextCall {
				c, n, err := grpcLongCall(ctx, client, i, *size)
				mu.Lock()
				calls = append(calls, c)
				received += n
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	for i := 0; i < maxGRPCCalls; i++ {
		mu.Lock()
		done := received >= *total || firstErr != nil
		mu.Unlock()
		if done || ctx.Err() != nil {
			break
		}
		nextCall <- i
	}
	close(nextCall)
	wg.Wait()
	if err := cc.Close(); err != nil {
		return err
	}
	if firstErr != nil {
		return firstErr
	}
	if received < *total {
		return fmt.Errorf("received %d bytes, want %d", received, *total)
	}
	conns, err := rec.reports()
	if err != nil {
		return err
	}
	if len(conns) != 1 {
		return fmt.Errorf("%d connections used, want 1", len(conns))
	}
	return writeReport(stdout, GRPCLongReport{Calls: calls, Conns: conns})
}

// grpcLongCall makes call i and returns what it was, the payload bytes it
// received and an error for an outcome the workload did not intend.
func grpcLongCall(ctx context.Context, client testpb.TestServiceClient, i, size int) (GRPCLongCall, int64, error) {
	switch {
	case i%20 == 19: // trailers-only error
		_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{
			ResponseStatus: &testpb.EchoStatus{Code: int32(codes.Aborted), Message: "churned " + strconv.Itoa(i)},
		})
		c := GRPCLongCall{Method: GRPCUnaryMethod, Code: int(codeOf(err))}
		if codeOf(err) != codes.Aborted {
			return c, 0, fmt.Errorf("call %d: want Aborted, got %v", i, err)
		}
		return c, 0, nil
	case i%25 == 24: // aborted by the client after the first message
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		params := make([]*testpb.ResponseParameters, 200)
		for k := range params {
			params[k] = &testpb.ResponseParameters{Size: int32(size)}
		}
		st, err := client.StreamingOutputCall(sctx, &testpb.StreamingOutputCallRequest{ResponseParameters: params})
		if err != nil {
			return GRPCLongCall{}, 0, err
		}
		m, err := st.Recv()
		if err != nil {
			return GRPCLongCall{}, 0, fmt.Errorf("call %d: first message: %w", i, err)
		}
		cancel()
		for err == nil { // until the cancellation is seen
			_, err = st.Recv()
		}
		return GRPCLongCall{Method: GRPCStreamingMethod, Code: -1}, int64(len(m.GetPayload().GetBody())), nil
	case i%3 == 2: // server streaming, 4 messages
		params := make([]*testpb.ResponseParameters, 4)
		for k := range params {
			params[k] = &testpb.ResponseParameters{Size: int32(size)}
		}
		st, err := client.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: params})
		var n int64
		for err == nil {
			var m *testpb.StreamingOutputCallResponse
			if m, err = st.Recv(); err == nil {
				n += int64(len(m.GetPayload().GetBody()))
			}
		}
		if !errors.Is(err, io.EOF) {
			return GRPCLongCall{Method: GRPCStreamingMethod, Code: int(codeOf(err))}, n, fmt.Errorf("call %d: %w", i, err)
		}
		return GRPCLongCall{Method: GRPCStreamingMethod, Code: 0}, n, nil
	default: // unary, a payload each way
		resp, err := client.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: int32(size), Payload: &testpb.Payload{Body: Pattern(size)}})
		if err != nil {
			return GRPCLongCall{Method: GRPCUnaryMethod, Code: int(codeOf(err))}, 0, fmt.Errorf("call %d: %w", i, err)
		}
		return GRPCLongCall{Method: GRPCUnaryMethod, Code: 0}, int64(len(resp.GetPayload().GetBody())), nil
	}
}

func codeOf(err error) codes.Code { return status.Code(err) }
