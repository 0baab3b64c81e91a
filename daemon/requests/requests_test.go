package requests

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/api/wire"
	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/protocol/record"
)

var boot = time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)

func conn(id event.ConnID, ns, name string) *Conn {
	return Show(&flow.Connection{ID: id, Role: event.RoleServer,
		Local:  flow.Peer{Pod: &flow.Pod{Namespace: ns, Name: name}},
		Remote: flow.Peer{Addr: netip.MustParseAddrPort("10.0.0.9:40000")}})
}

func TestRingKeepsTheNewestAndCountsWhatItPushesOut(t *testing.T) {
	r := NewRing(2, boot)
	web, db := conn(1, "shop", "web-0"), conn(2, "data", "db-0")
	for i, c := range []*Conn{web, db, web} {
		r.Add(c, &record.Record{Method: "GET", Path: "/" + string(rune('a'+i)), Status: 200, GRPCStatus: -1,
			ReqStart: event.Timestamp(time.Second), RespEnd: event.Timestamp(time.Second + 3*time.Millisecond)})
	}
	if r.Len() != 2 || r.Overwritten() != 1 {
		t.Fatalf("Len %d Overwritten %d, want 2 and 1", r.Len(), r.Overwritten())
	}
	all := r.Latest("", 10)
	if len(all) != 2 || all[0].Path != "/c" || all[1].Path != "/b" {
		t.Fatalf("Latest = %+v, want /c then /b", all)
	}
	got := r.Latest("shop/web-0", 10)
	if len(got) != 1 || got[0].Pod != "shop/web-0" || got[0].Peer != "10.0.0.9:40000" || got[0].Role != "server" ||
		got[0].LatencyMs != 3 || got[0].GRPCStatus != nil || !got[0].Time.Equal(boot.Add(time.Second)) || got[0].ConnectionID != 1 {
		t.Fatalf("Latest(shop/web-0) = %+v", got)
	}
}

func TestHandlerRejectsBadParametersByName(t *testing.T) {
	r := NewRing(5, boot)
	r.Add(conn(1, "shop", "web-0"), &record.Record{Path: "/", GRPCStatus: -1})
	srv := httptest.NewServer(Handler(r, 5))
	t.Cleanup(srv.Close)
	get := func(q string) (int, []byte) {
		resp, err := http.Get(srv.URL + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&b)
		return resp.StatusCode, b
	}
	code, b := get("?pod=shop/web-0&limit=5")
	var reqs []wire.Request
	if code != 200 || json.Unmarshal(b, &reqs) != nil || len(reqs) != 1 {
		t.Fatalf("valid query: %d %s", code, b)
	}
	for q, want := range map[string]string{
		"?limit=6": "requests.keep", "?limit=0": "limit", "?pod=web": "NAMESPACE/NAME",
		"?pod=a/b&pod=a/c": "once", "?state=open": "unknown parameter",
	} {
		code, b := get(q)
		if code != http.StatusBadRequest || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d %s, want 400 mentioning %q", q, code, b, want)
		}
	}
}
