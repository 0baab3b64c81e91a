package streamdump

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/api/wire"
)

func TestDumpIsTheStreamWithGapsCutOutAndNamedFinalWhenComplete(t *testing.T) {
	dir := t.TempDir()
	w, err := New(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c := w.Open(7)
	c.Data(event.Egress, []byte("GET / "))
	c.Skip(event.Egress, 4)
	c.Data(event.Egress, []byte("HTTP/1.1"))
	c.Data(event.Ingress, []byte("200"))
	if _, err := os.Stat(filepath.Join(dir, "7-egress.bin")); !os.IsNotExist(err) {
		t.Fatalf("final name exists while the connection is open: %v", err)
	}
	c.Close(wire.ConnInfo{ID: 7})

	if b, _ := os.ReadFile(filepath.Join(dir, "7-egress.bin")); string(b) != "GET / HTTP/1.1" {
		t.Fatalf("egress.bin = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "7-ingress.bin")); string(b) != "200" {
		t.Fatalf("ingress.bin = %q", b)
	}
	var sum Summary
	b, err := os.ReadFile(filepath.Join(dir, "7.json"))
	if err != nil || json.Unmarshal(b, &sum) != nil {
		t.Fatalf("7.json: %v %s", err, b)
	}
	if sum.Connection.ID != 7 || !slices.Equal(sum.Gaps, []Gap{{Direction: "egress", Offset: 6, Length: 4}}) {
		t.Fatalf("summary %+v", sum)
	}
	if w.Skipped() != 0 || w.Errors() != 0 {
		t.Fatalf("skipped %d errors %d", w.Skipped(), w.Errors())
	}
}

func TestConnectionsPastMaxConnsAreCountedNotDumped(t *testing.T) {
	w, err := New(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.CloseAll)
	for i := range MaxConns {
		if w.Open(event.ConnID(i+1)) == nil {
			t.Fatalf("connection %d not dumped below the bound", i+1)
		}
	}
	c := w.Open(MaxConns + 1)
	if c != nil || w.Skipped() != 1 {
		t.Fatalf("past the bound: conn %v, skipped %d; want nil and 1", c, w.Skipped())
	}
	c.Data(event.Egress, []byte("x")) // a nil Conn is a no-op
	c.Close(wire.ConnInfo{})
}
