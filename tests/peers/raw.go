package peers

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"
)

// maxPipelined bounds the requests one pipeline run writes.
const maxPipelined = 1000

// PipelineReport is the pipeline peer's report.
type PipelineReport struct {
	Results []HTTPResult `json:"results"`
	Conn    ConnReport   `json:"conn"`
	PID     int          `json:"pid"`
}

// runPipeline writes every request in a single write on one connection —
// HTTP/1.1 pipelining — and then reads the responses in order. The last
// request carries Connection: close so the server ends the connection.
func runPipeline(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("pipeline")
	addr := fs.String("addr", "", "server host:port")
	paths := fs.String("paths", "/", "comma-separated paths, one request each")
	recordDir := fs.String("record", "", "write the connection's sent and received bytes here")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on the whole run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	list := strings.Split(*paths, ",")
	if *addr == "" || len(list) > maxPipelined {
		return fmt.Errorf("need -addr and at most %d paths", maxPipelined)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rec := &recorder{dir: *recordDir, limit: defaultRecordLimit}
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", *addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", *addr, err)
	}
	conn := rec.wrap(c)
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	var reqs bytes.Buffer
	for i, p := range list {
		fmt.Fprintf(&reqs, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: weir-peer-pipeline\r\n", p, *addr)
		if i == len(list)-1 {
			reqs.WriteString("Connection: close\r\n")
		}
		reqs.WriteString("\r\n")
	}
	if _, err := conn.Write(reqs.Bytes()); err != nil {
		return fmt.Errorf("write pipelined requests: %w", err)
	}
	br := bufio.NewReader(conn)
	var results []HTTPResult
	for _, p := range list {
		req, _ := http.NewRequest(http.MethodGet, "http://"+*addr+p, nil)
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return fmt.Errorf("read response %d of %d: %w", len(results)+1, len(list), err)
		}
		n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, MaxBodyBytes+1))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("read body %d: %w", len(results)+1, err)
		}
		results = append(results, HTTPResult{Method: http.MethodGet, Path: p, Proto: resp.Proto, Status: resp.StatusCode, RespBody: n})
	}
	// Drain to EOF so every byte the server sent is in the record.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return fmt.Errorf("drain to EOF: %w", err)
	}
	_ = conn.Close()
	reps, err := rec.reports()
	if err != nil {
		return err
	}
	return writeReport(stdout, PipelineReport{Results: results, Conn: reps[0], PID: os.Getpid()})
}

// ShortReport is the short peer's report.
type ShortReport struct {
	Status int        `json:"status"`
	Conn   ConnReport `json:"conn"`
	PID    int        `json:"pid"`
}

// runShort is the short-lived client: it connects, sends one request with
// Connection: close, reads to EOF and exits — milliseconds from exec to
// exit. It is the case where a monitor that learns about processes late
// misses the connection entirely.
func runShort(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("short")
	addr := fs.String("addr", "", "server host:port")
	path := fs.String("path", "/", "request path")
	recordDir := fs.String("record", "", "write the connection's sent and received bytes here")
	noClose := fs.Bool("no-close", false, "exit holding the socket: the kernel closes it at exit, no close(2)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rec := &recorder{dir: *recordDir, limit: defaultRecordLimit}
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", *addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", *addr, err)
	}
	conn := rec.wrap(c)
	if !*noClose {
		defer conn.Close()
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", *path, *addr); err != nil {
		return fmt.Errorf("write request: %w", err)
	}
	resp, err := io.ReadAll(io.LimitReader(conn, MaxBodyBytes))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if !*noClose {
		_ = conn.Close()
	}
	status := 0
	if r, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(resp)), nil); err == nil {
		status = r.StatusCode
	}
	reps, err := rec.reports()
	if err != nil {
		return err
	}
	return writeReport(stdout, ShortReport{Status: status, Conn: reps[0], PID: os.Getpid()})
}

// DialReport is the dial peer's report.
type DialReport struct {
	Refused bool   `json:"refused"`
	Error   string `json:"error,omitempty"`
	Local   string `json:"local,omitempty"`
}

// runDial connects once and reports the outcome without treating a refusal
// as a failure of the peer: for the refused-connect case it is the point.
func runDial(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("dial")
	addr := fs.String("addr", "", "host:port")
	blocking := fs.Bool("blocking", false, "a blocking connect(2) on a raw socket instead of Go's non-blocking dial")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *blocking {
		return blockingDial(*addr, stdout)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", *addr)
	if err != nil {
		return writeReport(stdout, DialReport{Refused: isRefused(err), Error: err.Error()})
	}
	defer c.Close()
	return writeReport(stdout, DialReport{Local: c.LocalAddr().String()})
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// blockingDial connects with a blocking connect(2), so the kernel reports a
// refusal as the syscall's own result rather than through SO_ERROR later.
func blockingDial(addr string, stdout io.Writer) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	family := syscall.AF_INET
	var sa syscall.Sockaddr = &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	if ap.Addr().Is6() && !ap.Addr().Is4In6() {
		family = syscall.AF_INET6
		sa = &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer syscall.Close(fd)
	tv := syscall.Timeval{Sec: 5}
	_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv)
	if err := syscall.Connect(fd, sa); err != nil {
		return writeReport(stdout, DialReport{Refused: isRefused(err), Error: err.Error()})
	}
	local := ""
	if la, err := syscall.Getsockname(fd); err == nil {
		switch a := la.(type) {
		case *syscall.SockaddrInet4:
			local = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
		case *syscall.SockaddrInet6:
			local = netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)).String()
		}
	}
	return writeReport(stdout, DialReport{Local: local})
}
