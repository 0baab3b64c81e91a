package wire

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestClientErrors(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		WriteError(w, http.StatusServiceUnavailable, "registry not loaded")
	}))
	defer ts.Close()
	c, err := NewClient(ts.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Pods(context.Background())
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 503 || se.Message != "registry not loaded" {
		t.Fatalf("error = %v, want a 503 StatusError carrying the daemon's message", err)
	}

	// Nothing listens on a port we just closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, _ = NewClient(addr, nil)
	_, err = c.Pods(context.Background())
	var ue *UnreachableError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "weir-daemon is not reachable at "+addr+": is it running?") {
		t.Fatalf("error = %v, want the not-reachable message", err)
	}

	for _, bad := range []string{"", "ftp://x:1", "http://"} {
		if _, err := NewClient(bad, nil); err == nil {
			t.Errorf("NewClient(%q) succeeded", bad)
		}
	}
}
