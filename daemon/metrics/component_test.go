package metrics

import (
	"context"
	"testing"
	"time"

	"github.com/weirnet/weir/daemon"
)

// The daemon plugs the aggregator in as a component: it runs eviction,
// adds the API routes and its Prometheus collector.
var (
	_ daemon.Component           = (*Aggregator)(nil)
	_ daemon.HTTPRegistrar       = (*Aggregator)(nil)
	_ daemon.PrometheusRegistrar = (*Aggregator)(nil)
)

func TestRunStopsWithItsContext(t *testing.T) {
	a, _ := newAgg(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
