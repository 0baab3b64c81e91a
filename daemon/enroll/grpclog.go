package enroll

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"google.golang.org/grpc/grpclog"
)

// GRPCLogger adapts log to grpc-go's logger interface, so that grpc's own
// messages reach the daemon's structured log instead of plain text on stderr.
// grpc's info messages (connection churn) are logged at debug level. Install
// it once, from main, with grpclog.SetLoggerV2 before any gRPC call: grpc-go
// keeps its logger process-wide.
func GRPCLogger(log *slog.Logger) grpclog.LoggerV2 {
	return grpcLogger{log: log.With("component", "grpc")}
}

type grpcLogger struct{ log *slog.Logger }

func (g grpcLogger) at(level slog.Level, msg string) { g.log.Log(context.Background(), level, msg) }

func (g grpcLogger) Info(args ...any)   { g.at(slog.LevelDebug, fmt.Sprint(args...)) }
func (g grpcLogger) Infoln(args ...any) { g.at(slog.LevelDebug, sprintln(args...)) }
func (g grpcLogger) Infof(format string, args ...any) {
	g.at(slog.LevelDebug, fmt.Sprintf(format, args...))
}
func (g grpcLogger) Warning(args ...any)   { g.at(slog.LevelWarn, fmt.Sprint(args...)) }
func (g grpcLogger) Warningln(args ...any) { g.at(slog.LevelWarn, sprintln(args...)) }
func (g grpcLogger) Warningf(format string, args ...any) {
	g.at(slog.LevelWarn, fmt.Sprintf(format, args...))
}
func (g grpcLogger) Error(args ...any)   { g.at(slog.LevelError, fmt.Sprint(args...)) }
func (g grpcLogger) Errorln(args ...any) { g.at(slog.LevelError, sprintln(args...)) }
func (g grpcLogger) Errorf(format string, args ...any) {
	g.at(slog.LevelError, fmt.Sprintf(format, args...))
}
func (g grpcLogger) Fatal(args ...any)   { g.at(slog.LevelError, fmt.Sprint(args...)); os.Exit(1) }
func (g grpcLogger) Fatalln(args ...any) { g.at(slog.LevelError, sprintln(args...)); os.Exit(1) }
func (g grpcLogger) Fatalf(format string, args ...any) {
	g.at(slog.LevelError, fmt.Sprintf(format, args...))
	os.Exit(1)
}

// sprintln formats like fmt.Sprintln (spaces between operands) without the
// trailing newline.
func sprintln(args ...any) string { return strings.TrimSuffix(fmt.Sprintln(args...), "\n") }

// V reports whether grpc's verbosity level l is enabled: only level 0, and
// only when the logger logs debug messages.
func (g grpcLogger) V(l int) bool {
	return l <= 0 && g.log.Enabled(context.Background(), slog.LevelDebug)
}
