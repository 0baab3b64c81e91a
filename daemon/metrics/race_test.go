package metrics

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/flow"
)

// TestConcurrentFeedQueryCollectEvict runs the pipeline's calls, API
// queries, scrapes and eviction at once (meaningful under -race) and checks
// that no update was lost.
func TestConcurrentFeedQueryCollectEvict(t *testing.T) {
	a, clk := newAgg(t, Options{})
	const feeders, perFeeder = 4, 2000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for f := range feeders {
		wg.Go(func() {
			c, s := pairConns(event.ConnID(f*10), frontend, catalog0)
			for i := range perFeeder {
				a.KernelOp(op(c, flow.OpWrite, 1))
				a.Exchange(exchange(s, "GET", fmt.Sprintf("/p%d", i%5), 200, time.Millisecond))
			}
		})
	}
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			a.Services(0)
			a.Topology(0)
			a.Endpoints("catalog.shop", 0)
			a.Series("catalog.shop", 0, 0)
			testutil.CollectAndCount(a)
			a.EvictIdle()
			clk.Add(time.Millisecond)
		}
	})
	wg.Wait()
	close(stop)
	readers.Wait()
	svcs, err := a.Services(DefaultRetention)
	if err != nil {
		t.Fatal(err)
	}
	fe, cat := findService(t, svcs, "frontend.shop"), findService(t, svcs, "catalog.shop")
	if fe.TCP.BytesSent != feeders*perFeeder || cat.HTTP.Requests != feeders*perFeeder {
		t.Fatalf("bytes %d requests %d, want %d each", fe.TCP.BytesSent, cat.HTTP.Requests, feeders*perFeeder)
	}
}
