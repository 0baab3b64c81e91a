// Command tlsgo is the Go crypto/tls peer of the TLS tests: a net/http
// HTTPS server (HTTP/1.1 and h2 by ALPN) and gRPC health server on one
// port, and one-shot clients that make their requests the moment they
// start, so a test sees whether the very first call of a process is
// captured.
//
//	tlsgo serve CERT KEY        listen on 127.0.0.1:0, print the address
//	tlsgo get URL N h1|h2       N GETs on one connection, then exit
//	tlsgo grpc ADDR             gRPC over TLS: a unary Check, a Watch
//	                            stream, and a Check that fails NotFound
package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "tlsgo:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: tlsgo serve|get|grpc ...")
	}
	switch {
	case args[0] == "serve" && len(args) == 3:
		return serve(args[1], args[2])
	case args[0] == "get" && len(args) == 4:
		n, err := strconv.Atoi(args[2])
		if err != nil {
			return err
		}
		return get(args[1], n, args[3] == "h2")
	case args[0] == "grpc" && len(args) == 2:
		return callGRPC(args[1])
	}
	return fmt.Errorf("bad arguments %q", args)
}

// serve answers HTTP/1.1 and h2 on /hello, and gRPC (content type
// application/grpc, h2 only) with the standard health service, on the
// same TLS listener.
func serve(certFile, keyFile string) error {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := health.NewServer()
	hs.SetServingStatus("weir", healthpb.HealthCheckResponse_SERVING)
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello over %s\n", r.Proto)
	})
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
				gs.ServeHTTP(w, r)
				return
			}
			mux.ServeHTTP(w, r)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}},
	}
	fmt.Println(ln.Addr())
	return srv.ServeTLS(ln, "", "")
}

// get makes n requests on one connection, the first at once.
func get(url string, n int, h2 bool) error {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	for i := range n {
		resp, err := c.Get(fmt.Sprintf("%s%si=%d", url, sep, i))
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
	}
	return nil
}

// callGRPC makes a unary call, reads a server stream's first message, and
// makes a call that fails with NotFound.
func callGRPC(addr string) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(cc)
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "weir"}); err != nil {
		return fmt.Errorf("unary Check: %w", err)
	}
	st, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: "weir"})
	if err != nil {
		return fmt.Errorf("Watch: %w", err)
	}
	if _, err := st.Recv(); err != nil {
		return fmt.Errorf("Watch Recv: %w", err)
	}
	_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "absent"})
	if status.Code(err) != codes.NotFound {
		return fmt.Errorf("Check of an unknown service: %v, want NotFound", err)
	}
	return nil
}
