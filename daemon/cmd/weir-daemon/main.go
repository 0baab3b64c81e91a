// Command weir-daemon is Weir's node agent: it keeps the registry of pods the
// weir CNI plugin enrolls, serves the enrollment socket and the HTTP API, and
// (as components are attached) captures and exports their traffic.
//
// It logs JSON to stderr and exits 2 on a configuration error, 1 on a
// runtime error, 0 after SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc/grpclog"

	"github.com/weirnet/weir/daemon"
	"github.com/weirnet/weir/daemon/config"
	"github.com/weirnet/weir/daemon/enroll"
)

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1
	exitConfig  = 2
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stderr))
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	cfg, err := config.Load(args)
	if errors.Is(err, config.ErrHelp) {
		config.Usage(stderr)
		return exitOK
	}
	if err != nil {
		log := slog.New(slog.NewJSONHandler(stderr, nil))
		attrs := []any{"error", err}
		var cerr *config.Error
		if errors.As(err, &cerr) && cerr.Key != "" {
			attrs = append(attrs, "key", cerr.Key)
		}
		log.Error("invalid configuration", attrs...)
		return exitConfig
	}

	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	grpclog.SetLoggerV2(enroll.GRPCLogger(log))
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := daemon.Run(ctx, cfg, log); err != nil {
		log.Error("weir-daemon failed", "error", err)
		return exitRuntime
	}
	return exitOK
}
