// Command app is the demo application `make demo` runs in its pods: one
// binary, four roles, so the demo builds and ships a single static program.
//
//	app frontend --listen :8080 --catalog 10.0.0.3:9090 --reviews http://10.0.0.4:8081
//	app catalog  --listen :9090
//	app reviews  --listen :8081 [--error-rate 0.1]
//	app loadgen  --target http://10.0.0.2:8080 [--rate 20] [--duration 0] [--max-requests 0]
//
// frontend serves HTTP/1.1 and calls catalog over gRPC (HTTP/2) and reviews
// over HTTP/1.1; reviews fails a deterministic share of requests with 500;
// loadgen drives frontend at a bounded rate. Together they give Weir an
// HTTP/1.1 edge, a gRPC edge, an error route and (with netem in demo.sh) a
// lossy link to observe. Every role stops on SIGINT/SIGTERM.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Server bounds shared by the HTTP roles.
const (
	readHeaderTimeout = 5 * time.Second
	idleTimeout       = 60 * time.Second
	shutdownTimeout   = 3 * time.Second
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], log, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "app:", err)
		os.Exit(1)
	}
}

const usage = "usage: app frontend|catalog|reviews|loadgen [flags] (see -h of each role)"

func run(ctx context.Context, args []string, log *slog.Logger, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	role, rest := args[0], args[1:]
	log = log.With("role", role)
	switch role {
	case "frontend":
		return runFrontend(ctx, rest, log)
	case "catalog":
		return runCatalog(ctx, rest, log)
	case "reviews":
		return runReviews(ctx, rest, log)
	case "loadgen":
		return runLoadgen(ctx, rest, log, out)
	default:
		return fmt.Errorf("unknown role %q: %s", role, usage)
	}
}

// serveHTTP serves h on addr until ctx ends, then shuts down gracefully.
// ready, if not nil, gets the bound address once listening.
func serveHTTP(ctx context.Context, addr string, h http.Handler, log *slog.Logger, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	log.Info("serving", "addr", ln.Addr().String())
	if ready != nil {
		ready(ln.Addr())
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown %s: %w", addr, err)
	}
	return nil
}
