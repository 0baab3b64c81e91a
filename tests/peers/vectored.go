package peers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// VectoredReport is the vectored peer's report.
type VectoredReport struct {
	Status int        `json:"status"`
	Conn   ConnReport `json:"conn"`
	PID    int        `json:"pid"`
	// Readvs is how many readv(2) calls returned data.
	Readvs int `json:"readvs"`
}

// runVectored sends one request with a single writev(2) of several
// segments and reads the whole response with readv(2) into two small
// buffers per call, so the capture of vectored I/O is exercised with
// segment boundaries inside the HTTP message.
func runVectored(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("vectored")
	addr := fs.String("addr", "", "server host:port")
	path := fs.String("path", "/", "request path")
	recordDir := fs.String("record", "", "write the connection's sent and received bytes here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", *addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", *addr, err)
	}
	defer c.Close()
	conn := c.(*net.TCPConn)
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))

	segs := net.Buffers{
		[]byte("GET " + *path + " HTTP/1.1\r\n"),
		[]byte("Host: " + *addr + "\r\n"),
		[]byte("User-Agent: weir-peer-vectored\r\n"),
		[]byte("Connection: close\r\n\r\n"),
	}
	var sent []byte
	for _, s := range segs {
		sent = append(sent, s...)
	}
	// net.Buffers on a *net.TCPConn is written with writev(2).
	if _, err := segs.WriteTo(conn); err != nil {
		return fmt.Errorf("writev: %w", err)
	}

	raw, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("raw conn: %w", err)
	}
	var recv []byte
	readvs := 0
	a, b := make([]byte, 100), make([]byte, 1000)
	for eof := false; !eof; {
		var n int
		var rerr error
		err := raw.Read(func(fd uintptr) bool {
			n, rerr = unix.Readv(int(fd), [][]byte{a, b})
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return fmt.Errorf("readv: %w", err)
		}
		if n == 0 {
			eof = true
			continue
		}
		readvs++
		recv = append(recv, a[:min(n, len(a))]...)
		if n > len(a) {
			recv = append(recv, b[:n-len(a)]...)
		}
		if len(recv) > MaxBodyBytes {
			return errors.New("response exceeds MaxBodyBytes")
		}
	}
	rep := VectoredReport{Readvs: readvs, PID: os.Getpid(), Conn: ConnReport{
		Local: conn.LocalAddr().String(), Remote: conn.RemoteAddr().String(),
		Sent: int64(len(sent)), Recv: int64(len(recv)),
	}}
	if _, err := fmt.Sscanf(string(recv), "HTTP/1.1 %d", &rep.Status); err != nil {
		return fmt.Errorf("parse status line: %w", err)
	}
	if *recordDir != "" {
		rep.Conn.SentFile = filepath.Join(*recordDir, "vectored-sent.bin")
		rep.Conn.RecvFile = filepath.Join(*recordDir, "vectored-recv.bin")
		if err := os.WriteFile(rep.Conn.SentFile, sent, 0o644); err != nil {
			return fmt.Errorf("write record: %w", err)
		}
		if err := os.WriteFile(rep.Conn.RecvFile, recv, 0o644); err != nil {
			return fmt.Errorf("write record: %w", err)
		}
	}
	return writeReport(stdout, rep)
}
