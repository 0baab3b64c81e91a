package enroll

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestGRPCLoggerWritesStructuredRecordsAtMappedLevels(t *testing.T) {
	var buf bytes.Buffer
	l := GRPCLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l.Infof("transport %d closed", 1) // grpc info is debug: filtered at info
	l.Warningf("keepalive %s", "ping")
	l.Errorln("server", "failed")
	if l.V(0) {
		t.Error("V(0) true although debug is disabled")
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2 (info filtered):\n%s", len(lines), buf.String())
	}
	for i, want := range []struct{ level, msg string }{{"WARN", "keepalive ping"}, {"ERROR", "server failed"}} {
		var rec map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &rec); err != nil {
			t.Fatalf("line %q is not JSON: %v", lines[i], err)
		}
		if rec["level"] != want.level || rec["msg"] != want.msg || rec["component"] != "grpc" {
			t.Errorf("line %d = %v, want level %s msg %q component grpc", i, rec, want.level, want.msg)
		}
	}
	debug := GRPCLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if !debug.V(0) || debug.V(2) {
		t.Error("V: want level 0 only, when debug is enabled")
	}
}
