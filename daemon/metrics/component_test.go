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

// TestRunKeepsTheCurrentStep checks the real clock's step as Run keeps it:
// the one the clock says, following it across a boundary, and read from
// the clock again once Run returned.
func TestRunKeepsTheCurrentStep(t *testing.T) {
	a, err := New(Options{Step: time.Second, Retention: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	clockStep := func() int64 { return time.Now().UnixNano() / int64(time.Second) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for a.keptEpoch.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run did not keep the step")
		}
		time.Sleep(time.Millisecond)
	}
	first := a.epoch()
	if now := clockStep(); first != now && first != now-1 {
		t.Fatalf("kept step %d, clock says %d", first, now)
	}
	for a.epoch() == first {
		if time.Now().After(deadline) {
			t.Fatal("the kept step did not advance at the boundary")
		}
		time.Sleep(time.Millisecond)
	}
	if got, now := a.epoch(), clockStep(); got != first+1 || now != got && now != got+1 {
		t.Errorf("after the boundary: kept step %d, clock says %d, want %d", got, now, first+1)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if a.keptEpoch.Load() != 0 {
		t.Error("step still kept after Run returned")
	}
}
