package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/weirnet/weir/daemon/api/wire"
	"github.com/weirnet/weir/daemon/capture"
)

// connLister answers every query with conns and keeps the filter it was
// asked with.
type connLister struct {
	conns []wire.ConnInfo
	got   []capture.Filter
}

func (l *connLister) Connections(f capture.Filter) []wire.ConnInfo {
	l.got = append(l.got, f)
	return l.conns
}

func TestConnectionsHandlerParsesTheQueryIntoAFilter(t *testing.T) {
	src := &connLister{conns: []wire.ConnInfo{{ID: 6}, {ID: 5}}}
	srv := httptest.NewServer(ConnectionsHandler(src, nil))
	t.Cleanup(srv.Close)

	for _, tc := range []struct {
		query string
		want  capture.Filter
	}{
		{"", capture.Filter{Limit: DefaultListLimit}},
		{"?state=open", capture.Filter{State: "open", Limit: DefaultListLimit}},
		{"?state=closed", capture.Filter{State: "closed", Limit: DefaultListLimit}},
		{"?pod=shop/cart-0", capture.Filter{Namespace: "shop", Pod: "cart-0", Limit: DefaultListLimit}},
		{"?pod=shop/web-0&state=closed", capture.Filter{Namespace: "shop", Pod: "web-0", State: "closed", Limit: DefaultListLimit}},
		{"?limit=2", capture.Filter{Limit: 2}},
		{"?limit=100000", capture.Filter{Limit: MaxListLimit}},
	} {
		src.got = nil
		resp, err := http.Get(srv.URL + "/api/v1/connections" + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		var got []wire.ConnInfo
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: status %d, content type %q, decode error %v", tc.query, resp.StatusCode, resp.Header.Get("Content-Type"), err)
		}
		if len(src.got) != 1 || src.got[0] != tc.want {
			t.Errorf("%s: lister asked with %+v, want %+v", tc.query, src.got, tc.want)
		}
		if len(got) != 2 || got[0].ID != 6 || got[1].ID != 5 {
			t.Errorf("%s: answered %+v, want the lister's connections in its order", tc.query, got)
		}
	}
}

func TestConnectionsHandlerRejectsBadParametersByName(t *testing.T) {
	src := &connLister{}
	srv := httptest.NewServer(ConnectionsHandler(src, nil))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		query, wantMsg string
	}{
		{"?state=dead", "state"},
		{"?limit=0", "limit"},
		{"?limit=abc", "limit"},
		{"?limit=1000001", "limit"},
		{"?pod=justname", "NAMESPACE/NAME"},
		{"?pod=a/b/c", "NAMESPACE/NAME"},
		{"?pod=/b", "NAMESPACE/NAME"},
		{"?state=open&state=closed", "once"},
		{"?color=red", "unknown parameter"},
	} {
		resp, err := http.Get(srv.URL + "/api/v1/connections" + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body.Error, tc.wantMsg) {
			t.Errorf("%s: status %d error %q, want 400 mentioning %q", tc.query, resp.StatusCode, body.Error, tc.wantMsg)
		}
	}
	if len(src.got) != 0 {
		t.Errorf("a rejected query reached the lister: %+v", src.got)
	}

	resp, err := http.Post(srv.URL+"/api/v1/connections", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: status %d Allow %q, want 405 with Allow GET, HEAD", resp.StatusCode, resp.Header.Get("Allow"))
	}
}
