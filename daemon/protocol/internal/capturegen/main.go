// Command capturegen records real HTTP/1.1, HTTP/2 and gRPC connections on
// loopback into daemon/protocol/testdata, for the parsers' tests, fuzz seeds
// and benchmarks.
//
// Every scenario runs a real peer (nginx, curl, h2load, Go net/http, grpc-go)
// through a small recording TCP proxy on 127.0.0.1 that writes each read it
// makes, with its direction, to a capture file (see package capture). All
// traffic stays on loopback and every scenario has a deadline.
//
// Usage: go run ./daemon/protocol/internal/capturegen -out daemon/protocol/testdata
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/weirnet/weir/daemon/protocol/internal/capture"
)

func main() {
	out := flag.String("out", "daemon/protocol/testdata", "directory for capture files")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, *out); err != nil {
		log.Error("capturegen failed", "err", err)
		os.Exit(1)
	}
}

type scenario struct {
	name string
	run  func(ctx context.Context, g *gen) error
}

type gen struct {
	out string
	tmp string
	log *slog.Logger
}

func run(log *slog.Logger, out string) error {
	tmp, err := os.MkdirTemp("", "capturegen")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	g := &gen{out: out, tmp: tmp, log: log}
	for _, s := range []scenario{
		{"nginx-h1", nginxH1},
		{"nginx-h2c", nginxH2C},
		{"go-h1", goH1},
		{"go-h2c", goH2C},
		{"h2c-upgrade", h2cUpgrade},
		{"grpc", grpcScenario},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := s.run(ctx, g)
		cancel()
		if err != nil {
			return fmt.Errorf("scenario %s: %w", s.name, err)
		}
		log.Info("recorded", "scenario", s.name)
	}
	return nil
}

// proxy records every connection it forwards to target under name-N.cap.
type proxy struct {
	ln     net.Listener
	target string
	name   string
	out    string
	wg     sync.WaitGroup
	mu     sync.Mutex
	n      int
	errs   []error
}

func newProxy(target, name, out string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy listen: %w", err)
	}
	p := &proxy{ln: ln, target: target, name: name, out: out}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.n++
		n := p.n
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := p.forward(c, n); err != nil {
				p.mu.Lock()
				p.errs = append(p.errs, err)
				p.mu.Unlock()
			}
		}()
	}
}

func (p *proxy) forward(client net.Conn, n int) error {
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return fmt.Errorf("dial %s: %w", p.target, err)
	}
	defer server.Close()
	var (
		mu  sync.Mutex
		buf bytes.Buffer
		wg  sync.WaitGroup
	)
	pipe := func(dst, src net.Conn, fromClient bool) {
		defer wg.Done()
		b := make([]byte, 64<<10)
		for {
			k, err := src.Read(b)
			if k > 0 {
				mu.Lock()
				_ = capture.Write(&buf, capture.Chunk{FromClient: fromClient, Data: b[:k]})
				mu.Unlock()
				if _, werr := dst.Write(b[:k]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
	wg.Add(2)
	go pipe(server, client, true)
	go pipe(client, server, false)
	wg.Wait()
	if buf.Len() == 0 {
		return nil // a connection the client opened and dropped unused
	}
	path := filepath.Join(p.out, fmt.Sprintf("%s-%d.cap", p.name, n))
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write capture: %w", err)
	}
	return nil
}

func (p *proxy) close() error {
	p.ln.Close()
	p.wg.Wait()
	return errors.Join(p.errs...)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// nginx starts nginx in the foreground with a private config; the returned
// stop function terminates and reaps it.
func (g *gen) nginx(ctx context.Context, h2 bool) (string, func(), error) {
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp(g.tmp, "nginx")
	if err != nil {
		return "", nil, err
	}
	root := filepath.Join(dir, "www")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", nil, err
	}
	_ = os.WriteFile(filepath.Join(root, "index.html"), bytes.Repeat([]byte("<p>weir</p>\n"), 50), 0o644)
	_ = os.WriteFile(filepath.Join(root, "big.bin"), bytes.Repeat([]byte("0123456789abcdef"), 8192), 0o644)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	if h2 {
		listen += " http2"
	}
	conf := fmt.Sprintf(`daemon off; master_process off; pid %[1]s/nginx.pid; error_log %[1]s/error.log;
events {}
http {
  access_log off; client_body_temp_path %[1]s/cb; proxy_temp_path %[1]s/px; fastcgi_temp_path %[1]s/fc;
  uwsgi_temp_path %[1]s/uw; scgi_temp_path %[1]s/sc;
  server { listen %[2]s; root %[3]s; location = /echo { return 201 "created\n"; } }
}`, dir, listen, root)
	cf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return "", nil, err
	}
	cmd := exec.CommandContext(ctx, "nginx", "-c", cf, "-p", dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start nginx: %w", err)
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, stop, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	return "", nil, fmt.Errorf("nginx did not listen on %s", addr)
}

func runCmd(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &errb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, errb.String())
	}
	return nil
}

func nginxH1(ctx context.Context, g *gen) error {
	addr, stop, err := g.nginx(ctx, false)
	if err != nil {
		return err
	}
	defer stop()
	p, err := newProxy(addr, "nginx-h1", g.out)
	if err != nil {
		return err
	}
	u := "http://" + p.addr()
	body := filepath.Join(g.tmp, "post.bin")
	_ = os.WriteFile(body, bytes.Repeat([]byte("x"), 2000), 0o644)
	errs := []error{
		runCmd(ctx, "curl", "-sS", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null",
			u+"/index.html", u+"/big.bin", u+"/missing", u+"/index.html"),
		runCmd(ctx, "curl", "-sS", "-I", u+"/index.html"),
		runCmd(ctx, "curl", "-sS", "-o", "/dev/null", "-H", "Expect: 100-continue", "--data-binary", "@"+body, u+"/echo"),
		runCmd(ctx, "curl", "-sS", "-o", "/dev/null", "-H", "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", u+"/index.html"),
	}
	return errors.Join(append(errs, p.close())...)
}

func nginxH2C(ctx context.Context, g *gen) error {
	addr, stop, err := g.nginx(ctx, true)
	if err != nil {
		return err
	}
	defer stop()
	p, err := newProxy(addr, "nginx-h2c", g.out)
	if err != nil {
		return err
	}
	u := "http://" + p.addr()
	errs := []error{
		// One URL per curl: curl 7.88 fails reusing a prior-knowledge
		// connection to nginx 1.22 ("Error in the HTTP2 framing layer").
		runCmd(ctx, "curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", u+"/index.html"),
		runCmd(ctx, "curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", u+"/big.bin"),
		runCmd(ctx, "curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}", u+"/missing"),
		runCmd(ctx, "h2load", "-n", "40", "-c", "1", "-m", "8", u+"/index.html"),
	}
	return errors.Join(append(errs, p.close())...)
}

// goHandler serves the Go scenarios: chunked bodies with trailers, 204,
// 304, HEAD and a body streamed until close.
func goHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "part %d %s\n", i, strings.Repeat("y", 100*i))
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Checksum", "abc")
	})
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/cached", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotModified) })
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		w.Write(b)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "hello %s\n", r.URL.Path)
	})
	return mux
}

func serveGo(h http.Handler, protos *http.Protocols) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, Protocols: protos, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	return ln.Addr().String(), func() { _ = srv.Close(); <-done }, nil
}

func goH1(ctx context.Context, g *gen) error {
	addr, stop, err := serveGo(goHandler(), nil)
	if err != nil {
		return err
	}
	defer stop()
	p, err := newProxy(addr, "go-h1", g.out)
	if err != nil {
		return err
	}
	// Pipelined: three requests in one write, responses read to the end.
	pipelined := "GET /chunked HTTP/1.1\r\nHost: weir.test\r\nTE: trailers\r\nsw8: " + sw8Sample + "\r\n\r\n" +
		"HEAD /hello HTTP/1.1\r\nHost: weir.test\r\n\r\n" +
		"GET /nocontent HTTP/1.1\r\nHost: weir.test\r\n\r\n" +
		"GET /cached HTTP/1.1\r\nHost: weir.test\r\nb3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90\r\n\r\n" +
		"POST /echo HTTP/1.1\r\nHost: weir.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n" +
		"GET /last HTTP/1.1\r\nHost: weir.test\r\nConnection: close\r\n\r\n"
	errs := []error{rawExchange(ctx, p.addr(), pipelined)}
	// HTTP/1.0 without keep-alive: the body is delimited by the close.
	errs = append(errs, rawExchange(ctx, p.addr(), "GET /chunked HTTP/1.0\r\nHost: weir.test\r\n\r\n"))
	return errors.Join(append(errs, p.close())...)
}

const sw8Sample = "1-MTIzNDU2Nzg5MA==-YWJjZGVmMTIzNDU2-3-c2VydmljZQ==-aW5zdGFuY2U=-L2FwaS91c2Vycw==-MTAuMC4wLjE6ODA4MA=="

func rawExchange(ctx context.Context, addr, req string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, c)
	return err
}

func goH2C(ctx context.Context, g *gen) error {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	addr, stop, err := serveGo(goHandler(), &protos)
	if err != nil {
		return err
	}
	defer stop()
	p, err := newProxy(addr, "go-h2c", g.out)
	if err != nil {
		return err
	}
	tr := &http.Transport{Protocols: &protos}
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	// One request first so the concurrent ones share its connection.
	if resp, err := cl.Get("http://" + p.addr() + "/warm"); err != nil {
		errs = append(errs, err)
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	paths := []string{"/a", "/chunked", "/nocontent", "/cached", "/b"}
	for i, path := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var resp *http.Response
			var err error
			if i == 4 {
				resp, err = cl.Post("http://"+p.addr()+"/echo", "text/plain", strings.NewReader(strings.Repeat("z", 5000)))
			} else {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr()+path, nil)
				req.Header.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
				resp, err = cl.Do(req)
			}
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}()
	}
	wg.Wait()
	tr.CloseIdleConnections()
	return errors.Join(append(errs, p.close())...)
}

func h2cUpgrade(ctx context.Context, g *gen) error {
	addr, stop, err := serveGo(h2c.NewHandler(goHandler(), &http2.Server{}), nil)
	if err != nil {
		return err
	}
	defer stop()
	p, err := newProxy(addr, "h2c-upgrade", g.out)
	if err != nil {
		return err
	}
	u := "http://" + p.addr()
	errs := []error{runCmd(ctx, "curl", "-sS", "--http2", "-o", "/dev/null", "-o", "/dev/null", u+"/first", u+"/second")}
	return errors.Join(append(errs, p.close())...)
}

func grpcScenario(ctx context.Context, g *gen) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("weir", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	defer func() { srv.Stop(); <-done }()
	p, err := newProxy(ln.Addr().String(), "grpc", g.out)
	if err != nil {
		return err
	}
	cc, err := grpc.NewClient(p.addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	hc := healthpb.NewHealthClient(cc)
	var errs []error
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "weir"}); err != nil {
		errs = append(errs, err)
	}
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		errs = append(errs, fmt.Errorf("want NotFound, got %v", err))
	}
	wctx, cancel := context.WithCancel(ctx)
	w, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{Service: "weir"})
	if err == nil {
		if _, err := w.Recv(); err != nil {
			errs = append(errs, err)
		}
	} else {
		errs = append(errs, err)
	}
	cancel()
	time.Sleep(100 * time.Millisecond) // let the RST_STREAM go out
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "weir"}); err != nil {
		errs = append(errs, err)
	}
	cc.Close()
	return errors.Join(append(errs, p.close())...)
}
