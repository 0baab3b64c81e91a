package identity

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/weirnet/weir/daemon/api"
	"github.com/weirnet/weir/daemon/registry"
)

// runResolver runs r for the test's duration.
func runResolver(t *testing.T, r *Resolver) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

// The chain's order: the Service name beats the pod's labels, which beat
// the owner name.
func TestResolverChainOrderKubernetesThenCRIThenOwner(t *testing.T) {
	f := &fakeRuntime{}
	sock := startFakeCRI(t, f)
	// The checkout Service selects app=checkout; the pod's own name label
	// says otherwise, and the Service wins.
	f.set("sb-checkout", &fakeSandbox{labels: map[string]string{LabelApp: "checkout", LabelName: "checkout-label"}, containers: map[string]string{"c1": "server"}})
	f.set("sb-cart", &fakeSandbox{labels: map[string]string{LabelName: "cart-label"}})
	f.set("sb-batch", &fakeSandbox{labels: map[string]string{}})

	client := fake.NewClientset(
		service("shop", "checkout"),
		slice("shop", "checkout-1", "checkout", podEndpoint("shop", "checkout-7d4b9c8f6d-x2kq9", "10.1.0.5")),
	)
	r, err := New(Options{NodeName: "node-1", Kubernetes: client, CRI: CRIOptions{Socket: sock}})
	if err != nil {
		t.Fatal(err)
	}
	runResolver(t, r)

	checkout := &registry.Pod{ContainerID: "sb-checkout", Namespace: "shop", Name: "checkout-7d4b9c8f6d-x2kq9",
		IPs: []registry.IPConfig{{Address: "10.1.0.5/24"}}}
	cart := &registry.Pod{ContainerID: "sb-cart", Namespace: "shop", Name: "cart-5f6c7d8b9-qzt4w"}
	batch := &registry.Pod{ContainerID: "sb-batch", Namespace: "jobs", Name: "nightly-29012345-zt4wq"}
	for _, p := range []*registry.Pod{checkout, cart, batch} {
		r.PodEnrolled(p)
	}
	waitFor(t, "kubernetes synced", r.HasSynced)
	waitFor(t, "CRI labels of all three", func() bool {
		return r.Labels("sb-checkout") != nil && r.Labels("sb-cart") != nil && r.Labels("sb-batch") != nil
	})
	for _, tc := range []struct {
		pod  *registry.Pod
		want string
	}{{checkout, "checkout"}, {cart, "cart-label"}, {batch, "nightly"}} {
		if got := r.Service(tc.pod); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.pod.Name, got, tc.want)
		}
	}
	waitFor(t, "container name", func() bool { return r.ContainerName("sb-checkout", "c1") == "server" })

	r.PodRemoved(cart)
	if st := r.Stats(); st.CRI == nil || st.CRI.Sandboxes != 2 || st.Kubernetes == nil || !st.Kubernetes.Synced {
		t.Errorf("stats after removing a pod: %+v", st)
	}
}

func TestResolverCountersOnMetricsAndAPI(t *testing.T) {
	f := &fakeRuntime{}
	sock := startFakeCRI(t, f)
	f.set("s1", &fakeSandbox{labels: map[string]string{LabelApp: "web"}, notFound: 1})
	r, err := New(Options{Kubernetes: fake.NewClientset(service("a", "b")), CRI: CRIOptions{Socket: sock, Retry: 5 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	runResolver(t, r)
	r.PodEnrolled(&registry.Pod{ContainerID: "s1"})
	waitFor(t, "labels", func() bool { return r.Labels("s1") != nil })
	waitFor(t, "synced", r.HasSynced)

	c := NewCollector(r)
	values := lintedValues(t, c)
	for key, want := range map[string]float64{
		"weir_identity_kubernetes_synced":                         1,
		"weir_identity_kubernetes_cached_objects{services}":       1,
		"weir_identity_cri_cached_sandboxes":                      1,
		"weir_identity_cri_call_failures_total{not_found}":        1,
		"weir_identity_cri_call_failures_total{timeout}":          0,
		"weir_identity_cri_calls_total":                           3, // NotFound, status, list
		"weir_identity_cri_bounds_hit_total{queue_full}":          0,
		"weir_identity_kubernetes_cached_objects{endpointslices}": 0,
	} {
		if got, ok := values[key]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}

	srv := api.New(nil, nil)
	r.RegisterHTTP(srv)
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/identity", nil))
	var st Stats
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("GET /api/v1/identity: %d %s (%v)", rec.Code, rec.Body, err)
	}
	if st.CRI == nil || st.CRI.NotFound != 1 || st.Kubernetes == nil || !st.Kubernetes.Synced {
		t.Errorf("API stats %+v", st)
	}
}

// lintedValues lints collector c as Prometheus would and returns each
// series' value keyed by name and label values ("name{v1}{v2}").
func lintedValues(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("metrics lint: %v %v", problems, err)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetValue() + "}"
			}
			values[key] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return values
}

// TestResolverRegistersItsCountersWithTheDaemon pins that the resolver adds
// its weir_identity_* series to the daemon's registry: the collector existed
// before it was ever registered, so /metrics never showed it.
func TestResolverRegistersItsCountersWithTheDaemon(t *testing.T) {
	r, err := New(Options{CRI: CRIOptions{Socket: filepath.Join(t.TempDir(), "absent.sock")}})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := r.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	for _, want := range []string{"weir_identity_cri_calls_total", "weir_identity_cri_cached_sandboxes"} {
		if !slices.Contains(names, want) {
			t.Errorf("registry lacks %s; has %v", want, names)
		}
	}
	if err := r.RegisterMetrics(reg); err == nil {
		t.Error("a second registration on the same registry was accepted")
	}
}
