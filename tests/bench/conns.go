package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The 10k-connection scenario needs a server and a client that hold many
// idle keep-alive connections cheaply and bounded in time. wrk and h2load
// cannot hold connections idle, so the benchmark's test binary re-executes
// itself inside the pods as these two helpers.

// HeldLine is printed by the client once every connection is open and has
// completed its one request; the count follows it.
const HeldLine = "bench-conns held"

// ServerReadyLine is printed by the server once it listens.
const ServerReadyLine = "bench-conns listening"

// RaiseNoFile lifts RLIMIT_NOFILE to want (soft and hard); 10,000 sockets
// do not fit the default 1024. Root may raise the hard limit.
func RaiseNoFile(want uint64) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("get RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur >= want {
		return nil
	}
	lim.Cur = want
	lim.Max = max(lim.Max, want)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", want, err)
	}
	return nil
}

// ServeConns runs a keep-alive HTTP server on addr until SIGTERM/SIGINT or
// until maxLife passes, whichever comes first.
func ServeConns(addr string, maxConns int, maxLife time.Duration) error {
	if err := RaiseNoFile(uint64(maxConns) + 1024); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "ok\n")
		}),
		ReadHeaderTimeout: maxLife,
		IdleTimeout:       maxLife,
	}
	ctx, stop := signalContext(maxLife)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	fmt.Println(ServerReadyLine, ln.Addr())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// HoldConns opens n connections to addr (at most parallel dials at a time),
// sends one GET on each and reads the response, then keeps them all open
// and idle until SIGTERM/SIGINT or until maxLife passes. It fails if any
// connection could not be opened or answered: the scenario is "10,000
// connections", not "as many as happened to work".
func HoldConns(addr string, n, parallel int, maxLife time.Duration) error {
	if err := RaiseNoFile(uint64(n) + 1024); err != nil {
		return err
	}
	ctx, stop := signalContext(maxLife)
	defer stop()
	conns := make([]net.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	var (
		next   atomic.Int64
		wg     sync.WaitGroup
		errMu  sync.Mutex
		first  error
		failed atomic.Int64
	)
	d := net.Dialer{Timeout: 10 * time.Second}
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := oneRequest(ctx, &d, addr)
				if err != nil {
					failed.Add(1)
					errMu.Lock()
					if first == nil {
						first = fmt.Errorf("connection %d: %w", i, err)
					}
					errMu.Unlock()
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return fmt.Errorf("%d of %d connections failed, first: %w", failed.Load(), n, first)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("opening %d connections: %w", n, err)
	}
	fmt.Println(HeldLine, n)
	<-ctx.Done()
	return nil
}

func oneRequest(ctx context.Context, d *net.Dialer, addr string) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: bench\r\n\r\n"); err != nil {
		c.Close()
		return nil, fmt.Errorf("write request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 512), nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("read response: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// signalContext ends on SIGTERM or SIGINT, or after maxLife: a helper never
// outlives the benchmark even if the benchmark forgets it.
func signalContext(maxLife time.Duration) (context.Context, context.CancelFunc) {
	sctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	ctx, cancel := context.WithTimeout(sctx, maxLife)
	return ctx, func() { cancel(); stopSignals() }
}
