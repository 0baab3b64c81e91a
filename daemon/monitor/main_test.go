package monitor

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// childEnv makes the test binary act as the workload of the privileged
// test: an HTTP/1.1 server and a client making a known list of requests to
// it, both in the process. The test starts it from a thread inside an
// enrolled network namespace, so the process lives there from its first
// instruction. The variable holds a directory where the child writes what
// its client sent and received on each connection, and the exchanges.
const childEnv = "WEIR_MONITOR_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(receiverEnv) != "" {
		if err := serveReceiver(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "receiver:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if dir := os.Getenv(childEnv); dir != "" {
		if err := runWorkload(dir); err != nil {
			fmt.Fprintln(os.Stderr, "workload:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// madeRequest is one exchange the workload's client made.
type madeRequest struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Status int    `json:"status"`
}

// workload is the list of requests: some on one keep-alive connection,
// some each on a new connection.
var (
	keepAliveRequests = []madeRequest{
		{Method: "GET", Path: "/hello/1", Status: 200},
		{Method: "POST", Path: "/echo", Status: 200},
		{Method: "GET", Path: "/missing", Status: 404},
		{Method: "GET", Path: "/hello/2", Status: 200},
	}
	newConnRequests = []madeRequest{
		{Method: "GET", Path: "/hello/3", Status: 200},
		{Method: "DELETE", Path: "/hello/4", Status: 200},
	}
)

// recConn records the client's bytes of one connection. It is used from
// one goroutine.
type recConn struct {
	net.Conn
	sent, recv []byte
}

func (c *recConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.recv = append(c.recv, b[:n]...)
	return n, err
}

func (c *recConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.sent = append(c.sent, b[:n]...)
	return n, err
}

func runWorkload(dir string) error {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/hello/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "hello %s\n", r.URL.Path) })
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	// The client is hand-made on raw connections rather than an
	// http.Transport, so that which connections exist, what each carried
	// and that each is closed before the process exits are all decided
	// here, not by a connection pool's goroutines.
	var conns []*recConn
	dial := func() (*recConn, *bufio.Reader, error) {
		c, err := net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return nil, nil, err
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		rc := &recConn{Conn: c}
		conns = append(conns, rc)
		return rc, bufio.NewReader(rc), nil
	}
	var made []madeRequest
	do := func(c *recConn, br *bufio.Reader, want madeRequest, closeConn bool) error {
		var body io.Reader
		if want.Method == "POST" {
			body = strings.NewReader("ping pong body")
		}
		req, err := http.NewRequest(want.Method, "http://"+ln.Addr().String()+want.Path, body)
		if err != nil {
			return err
		}
		req.Close = closeConn
		if err := req.Write(c); err != nil {
			return err
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		resp.Body.Close()
		got := want
		got.Status = resp.StatusCode
		made = append(made, got)
		return nil
	}
	c, br, err := dial()
	if err != nil {
		return err
	}
	for _, r := range keepAliveRequests {
		if err := do(c, br, r, false); err != nil {
			return err
		}
	}
	if err := c.Close(); err != nil {
		return err
	}
	for _, r := range newConnRequests {
		c, br, err := dial()
		if err != nil {
			return err
		}
		if err := do(c, br, r, true); err != nil {
			return err
		}
		// The server closes after its response: read to EOF, then close.
		if _, err := io.Copy(io.Discard, br); err != nil {
			return err
		}
		if err := c.Close(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return err
	}
	<-served

	for _, c := range conns {
		port := c.LocalAddr().(*net.TCPAddr).Port
		sent, recv := c.sent, c.recv
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d-sent.bin", port)), sent, 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d-recv.bin", port)), recv, 0o600); err != nil {
			return err
		}
	}
	b, err := json.Marshal(made)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "requests.json"), b, 0o600)
}
