package peers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// EchoReport is the echo client's report: its connection's local address
// and the read and write calls that moved bytes (each is one syscall the
// capture reports).
type EchoReport struct {
	Local  string `json:"local"`
	Writes int    `json:"writes"`
	Reads  int    `json:"reads"`
}

// echoPrefix starts every echo message: bytes no HTTP parser takes for a
// request, so the connection is plain TCP to the monitor, like a
// database's or a cache's.
var echoPrefix = []byte{0x00, 0x01, 0x02, 'E', 'C', 'H', 'O'}

// runEchoServer echoes every read back in one write, on every connection,
// until it is stopped.
func runEchoServer(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("echo-server")
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); lis.Close() }()
	printReady(stdout, lis.Addr().String())
	for {
		c, err := lis.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(time.Minute))
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// runEchoClient writes -n messages of -size bytes on one connection, reads
// each one's echo before the next, and reports its calls.
func runEchoClient(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("echo-client")
	addr := fs.String("addr", "", "server host:port")
	n := fs.Int("n", 10, "messages")
	size := fs.Int("size", 64, "bytes per message")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *n > 10000 || *size < len(echoPrefix) || *size > 1<<20 {
		return fmt.Errorf("echo-client: -n %d must be 1..10000, -size %d %d..1MiB", *n, *size, len(echoPrefix))
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", *addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", *addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	rep := EchoReport{Local: c.LocalAddr().String()}
	msg := bytes.Repeat([]byte{'x'}, *size)
	copy(msg, echoPrefix)
	got := make([]byte, *size)
	for i := range *n {
		msg[len(echoPrefix)] = byte('0' + i%10)
		if _, err := c.Write(msg); err != nil {
			return fmt.Errorf("write %d: %w", i, err)
		}
		rep.Writes++
		for read := 0; read < len(got); {
			k, err := c.Read(got[read:])
			if k > 0 {
				rep.Reads++
				read += k
			}
			if err != nil {
				return fmt.Errorf("read echo %d: %w", i, err)
			}
		}
		if !bytes.Equal(got, msg) {
			return fmt.Errorf("echo %d differs from what was sent", i)
		}
	}
	if err := c.Close(); err != nil {
		return err
	}
	return writeReport(stdout, rep)
}
