package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weirnet/weir/daemon/api/wire"
	"github.com/weirnet/weir/daemon/registry"
)

type podList []*registry.Pod

func (l podList) List() []*registry.Pod { return l }

var enrolled = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)

func samplePod() *registry.Pod {
	return &registry.Pod{
		ID: 7, Network: "kindnet", ContainerID: "sandbox123", Ifname: "eth0",
		Netns: "/var/run/netns/cni-1", NetnsInode: 4026532001, IfIndex: 2,
		HostVeth: "veth1a2b", HostVethIndex: 17,
		IPs: []registry.IPConfig{
			{Address: "10.22.0.5/16", Gateway: "10.22.0.1"},
			{Address: "fd00::5/64"},
		},
		Namespace: "shop", Name: "cart-0", UID: "7f9c", InfraContainerID: "infra123",
		EnrolledAt: enrolled, CNIVersion: "1.1.0",
	}
}

func get(t *testing.T, h http.Handler, path string) (*http.Response, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	resp := rec.Result()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

func TestPodsJSONShape(t *testing.T) {
	s := New(podList{samplePod()}, slog.New(slog.DiscardHandler))
	resp, body := get(t, s, "/api/v1/pods")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d content-type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var pods []map[string]any
	if err := json.Unmarshal(body, &pods); err != nil {
		t.Fatalf("body is not a JSON array of objects: %v: %s", err, body)
	}
	if len(pods) != 1 {
		t.Fatalf("got %d pods", len(pods))
	}
	p := pods[0]
	want := map[string]any{
		"id": 7.0, "network": "kindnet", "namespace": "shop", "name": "cart-0", "uid": "7f9c",
		"sandboxID": "sandbox123", "infraContainerID": "infra123", "netns": "/var/run/netns/cni-1",
		"netnsInode": 4026532001.0, "ifname": "eth0", "ifIndex": 2.0, "hostVeth": "veth1a2b", "hostVethIndex": 17.0,
	}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("%s = %#v, want %#v", k, p[k], v)
		}
	}
	ips, ok := p["ips"].([]any)
	if !ok || len(ips) != 2 || ips[0] != "10.22.0.5/16" || ips[1] != "fd00::5/64" {
		t.Errorf("ips = %#v, want the two CIDR strings", p["ips"])
	}
	at, _ := p["enrolledAt"].(string)
	parsed, err := time.Parse(time.RFC3339Nano, at)
	if err != nil || !parsed.Equal(enrolled) {
		t.Errorf("enrolledAt = %q, want %s in RFC 3339 with nanoseconds", at, enrolled.Format(time.RFC3339Nano))
	}
}

func TestNoPodsIsAnEmptyArray(t *testing.T) {
	s := New(podList{}, slog.New(slog.DiscardHandler))
	_, body := get(t, s, "/api/v1/pods")
	if strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("body = %s, want []", body)
	}
	withoutIPs := samplePod()
	withoutIPs.IPs = nil
	_, body = get(t, New(podList{withoutIPs}, slog.New(slog.DiscardHandler)), "/api/v1/pods")
	if !strings.Contains(string(body), `"ips":[]`) {
		t.Fatalf("pod without addresses: %s, want \"ips\":[]", body)
	}
}

func TestHealthzAndReadyz(t *testing.T) {
	s := New(podList{}, slog.New(slog.DiscardHandler))
	if resp, body := get(t, s, "/healthz"); resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"ok"`) {
		t.Fatalf("healthz = %d %s", resp.StatusCode, body)
	}
	// No checks: ready.
	if resp, _ := get(t, s, "/readyz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz without checks = %d", resp.StatusCode)
	}
	grpcUp := false
	s.AddReadyCheck("registry", func() error { return nil })
	s.AddReadyCheck("grpc", func() error {
		if !grpcUp {
			return errors.New("not listening")
		}
		return nil
	})
	resp, body := get(t, s, "/readyz")
	var eb wire.ErrorBody
	if resp.StatusCode != http.StatusServiceUnavailable || json.Unmarshal(body, &eb) != nil ||
		eb.Error != "not ready: grpc: not listening" {
		t.Fatalf("readyz = %d %s, want 503 naming the grpc check", resp.StatusCode, body)
	}
	grpcUp = true
	if resp, body := get(t, s, "/readyz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz = %d %s, want 200", resp.StatusCode, body)
	}
}

func TestReadyzListsWarningsWithoutFailing(t *testing.T) {
	s := New(podList{}, slog.New(slog.DiscardHandler))
	var warns []string
	s.AddReadyWarning("cni-config", func() []string { return warns })
	if _, body := get(t, s, "/readyz"); strings.Contains(string(body), "warnings") {
		t.Fatalf("readyz without warnings = %s", body)
	}
	warns = []string{"spoolDir differs"}
	resp, body := get(t, s, "/readyz")
	var got struct {
		Status   string   `json:"status"`
		Warnings []string `json:"warnings"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &got) != nil || got.Status != "ready" ||
		len(got.Warnings) != 1 || got.Warnings[0] != "cni-config: spoolDir differs" {
		t.Fatalf("readyz = %d %s, want 200 ready listing the warning", resp.StatusCode, body)
	}
}

func TestHandleAddsRoutesAndMethodsAreEnforced(t *testing.T) {
	s := New(podList{}, slog.New(slog.DiscardHandler))
	s.Handle("GET /api/v1/features", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		wire.WriteJSON(w, http.StatusOK, map[string]bool{"tcx": true})
	}))
	if resp, body := get(t, s, "/api/v1/features"); resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"tcx":true`) {
		t.Fatalf("extension route = %d %s", resp.StatusCode, body)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v1/pods", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /api/v1/pods = %d, want 405", rec.Code)
	}
}

func TestServeShutsDownWhenContextEnds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(podList{samplePod()}, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()

	c, err := wire.NewClient(ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	pods, err := c.Pods(context.Background())
	if err != nil || len(pods) != 1 || pods[0].Name != "cart-0" || pods[0].SandboxID != "sandbox123" {
		t.Fatalf("Pods over a real listener = %v, %v", pods, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Fatal("listener still accepts after shutdown")
	}
}
