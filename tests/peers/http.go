package peers

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bounds of the HTTP peers.
const (
	// MaxBodyBytes bounds a /bytes/N response and a request body the server
	// reads: large enough for the 10 MB transfer cases, small enough that a
	// typo cannot fill the machine's memory.
	MaxBodyBytes = 64 << 20
	// maxRequests bounds one http-client run.
	maxRequests = 100000
	// defaultRecordLimit bounds the bytes recorded per connection direction.
	defaultRecordLimit = 32 << 20
)

// Pattern returns the deterministic body of /bytes/n: byte i is i mod 251,
// so a shifted or duplicated range in a capture cannot compare equal.
func Pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// ServerLogEntry is one line of the http-server's request log: the server's
// own account of an exchange, the ground truth the suites compare Weir's
// records with.
type ServerLogEntry struct {
	Method   string `json:"method"`
	Path     string `json:"path"`
	Proto    string `json:"proto"`
	Status   int    `json:"status"`
	ReqBody  int64  `json:"reqBody"`
	RespBody int64  `json:"respBody"`
	Remote   string `json:"remote"`
}

// runHTTPServer serves:
//
//	[/prefix]/bytes/N      N bytes of Pattern (N ≤ MaxBodyBytes)
//	[/prefix]/status/CODE  status CODE with a short body (none for 204 and 304)
//	/echo         the request body
//	anything else "hello from NAME\n"
//
// and appends one ServerLogEntry per request to -log.
func runHTTPServer(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("http-server")
	listen := fs.String("listen", ":8080", "address to listen on")
	h2c := fs.Bool("h2c", false, "also serve HTTP/2 over cleartext (prior knowledge)")
	logPath := fs.String("log", "", "append a JSON line per request to this file")
	name := fs.String("name", "peer", "name in the greeting body")
	certFile := fs.String("tls-cert", "", "serve HTTPS (HTTP/1.1 and h2 by ALPN) with this PEM certificate (and -tls-key)")
	keyFile := fs.String("tls-key", "", "PEM key of -tls-cert")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var logMu sync.Mutex
	var logw *bufio.Writer
	if *logPath != "" {
		f, err := os.OpenFile(*logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("open log: %w", err)
		}
		defer f.Close()
		logw = bufio.NewWriter(f)
		defer func() {
			logMu.Lock()
			_ = logw.Flush()
			logMu.Unlock()
		}()
	}
	logEntry := func(e ServerLogEntry) {
		if logw == nil {
			return
		}
		b, _ := json.Marshal(e)
		logMu.Lock()
		defer logMu.Unlock()
		_, _ = logw.Write(append(b, '\n'))
		_ = logw.Flush() // the suite reads the log while the server runs
	}

	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqBody, _ := io.Copy(io.Discard, io.LimitReader(r.Body, MaxBodyBytes))
		cw := &countingWriter{ResponseWriter: w, status: http.StatusOK}
		serveHTTPPath(cw, r, *name, reqBody)
		logEntry(ServerLogEntry{
			Method: r.Method, Path: r.URL.RequestURI(), Proto: r.Proto, Status: cw.status,
			ReqBody: reqBody, RespBody: cw.n, Remote: r.RemoteAddr,
		})
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	if *h2c {
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	if *certFile != "" {
		srv.Protocols.SetHTTP2(true)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *listen, err)
	}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	printReady(stdout, ln.Addr().String())
	serve := func() error { return srv.Serve(ln) }
	if *certFile != "" {
		serve = func() error { return srv.ServeTLS(ln, *certFile, *keyFile) }
	}
	if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

func serveHTTPPath(w http.ResponseWriter, r *http.Request, name string, reqBody int64) {
	// Suites prefix paths with their case name (/case/bytes/N) so each
	// case's records can be told apart; the route is what follows.
	p := r.URL.Path
	if i := strings.LastIndex(p, "/bytes/"); i > 0 {
		p = p[i:]
	} else if i := strings.LastIndex(p, "/status/"); i > 0 {
		p = p[i:]
	}
	switch {
	case strings.HasPrefix(p, "/bytes/"):
		n, err := strconv.Atoi(strings.TrimPrefix(p, "/bytes/"))
		if err != nil || n < 0 || n > MaxBodyBytes {
			http.Error(w, "bad size", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(Pattern(n))
	case strings.HasPrefix(p, "/status/"):
		code, err := strconv.Atoi(strings.TrimPrefix(p, "/status/"))
		if err != nil || code < 200 || code > 599 {
			http.Error(w, "bad status", http.StatusBadRequest)
			return
		}
		w.WriteHeader(code)
		if code != http.StatusNoContent && code != http.StatusNotModified {
			_, _ = io.WriteString(w, http.StatusText(code)+"\n")
		}
	case p == "/echo":
		w.Header().Set("Content-Length", strconv.FormatInt(reqBody, 10))
		_, _ = w.Write(Pattern(int(reqBody)))
	default:
		_, _ = io.WriteString(w, "hello from "+name+"\n")
	}
}

type countingWriter struct {
	http.ResponseWriter
	status      int
	n           int64
	wroteHeader bool
}

func (w *countingWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.wroteHeader = true
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// HTTPResult is one request as the http-client saw it.
type HTTPResult struct {
	Method   string `json:"method"`
	Path     string `json:"path"`
	Proto    string `json:"proto"`
	Status   int    `json:"status"`
	RespBody int64  `json:"respBody"`
	Error    string `json:"error,omitempty"`
}

// HTTPClientReport is the http-client's report.
type HTTPClientReport struct {
	Results []HTTPResult `json:"results"`
	Conns   []ConnReport `json:"conns"`
	PID     int          `json:"pid"`
}

// runHTTPClient sends -n requests to -url + each of -paths in turn, with
// -concurrency workers, over keep-alive connections (default), a new
// connection per request (-new-conn) or HTTP/2 prior knowledge (-h2c).
func runHTTPClient(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("http-client")
	base := fs.String("url", "", "base URL, e.g. http://10.200.1.2:8080")
	paths := fs.String("paths", "/", "comma-separated paths, used in turn")
	n := fs.Int("n", 1, "number of requests")
	newConn := fs.Bool("new-conn", false, "a new connection per request (Connection: close)")
	h2c := fs.Bool("h2c", false, "HTTP/2 over cleartext with prior knowledge")
	h2 := fs.Bool("h2", false, "HTTP/2 over TLS (an https -url): ALPN h2 only")
	conc := fs.Int("concurrency", 1, "requests in flight")
	recordDir := fs.String("record", "", "write each connection's sent and received bytes here")
	recordLimit := fs.Int("record-limit", defaultRecordLimit, "bound on recorded bytes per connection direction")
	timeout := fs.Duration("timeout", 30*time.Second, "bound on the whole run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *base == "":
		return errors.New("-url is required")
	case *n < 1 || *n > maxRequests:
		return fmt.Errorf("-n %d out of range [1, %d]", *n, maxRequests)
	case *conc < 1 || *conc > *n:
		return fmt.Errorf("-concurrency %d out of range [1, -n]", *conc)
	}
	pathList := strings.Split(*paths, ",")
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	rec := &recorder{dir: *recordDir, limit: *recordLimit}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return rec.wrap(c), nil
		},
		DisableKeepAlives:   *newConn,
		MaxIdleConnsPerHost: *conc,
		DisableCompression:  true,
		// https: the servers' certificates are self-signed.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}
	tr.Protocols = new(http.Protocols)
	switch {
	case *h2c:
		tr.Protocols.SetUnencryptedHTTP2(true)
	case *h2:
		tr.Protocols.SetHTTP2(true)
	default:
		tr.Protocols.SetHTTP1(true)
	}
	client := &http.Client{Transport: tr}

	results := make([]HTTPResult, *n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i] = doRequest(ctx, client, *base, pathList[i%len(pathList)])
			}
		}()
	}
	start := 0
	if *h2c || *h2 {
		// One request alone first: concurrent first requests would each
		// dial, and the HTTP/2 cases want all streams on one connection.
		results[0] = doRequest(ctx, client, *base, pathList[0])
		start = 1
	}
	for i := start; i < *n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	tr.CloseIdleConnections()

	conns, err := rec.reports()
	if err != nil {
		return err
	}
	for _, r := range results {
		if r.Error != "" {
			_ = writeReport(stdout, HTTPClientReport{Results: results, Conns: conns, PID: os.Getpid()})
			return fmt.Errorf("request %s %s: %s", r.Method, r.Path, r.Error)
		}
	}
	return writeReport(stdout, HTTPClientReport{Results: results, Conns: conns, PID: os.Getpid()})
}

func doRequest(ctx context.Context, c *http.Client, base, path string) HTTPResult {
	res := HTTPResult{Method: http.MethodGet, Path: path}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	resp, err := c.Do(req)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer resp.Body.Close()
	res.Status, res.Proto = resp.StatusCode, resp.Proto
	res.RespBody, err = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxBodyBytes+1))
	if err != nil {
		res.Error = err.Error()
	}
	return res
}

// ReadServerLog reads an http-server -log file.
func ReadServerLog(path string) ([]ServerLogEntry, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open server log: %w", err)
	}
	defer f.Close()
	var out []ServerLogEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e ServerLogEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("server log line %q: %w", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}
