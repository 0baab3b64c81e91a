package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestReviewsFailsADeterministicTenthOfRequests(t *testing.T) {
	count := func() int {
		h := reviewsHandler(0.1)
		failed := 0
		for i := range 1000 {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/reviews/"+strconv.Itoa(1+i%20), nil))
			switch rec.Code {
			case http.StatusOK:
			case http.StatusInternalServerError:
				failed++
			default:
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
		return failed
	}
	a, b := count(), count()
	if a != b {
		t.Errorf("two runs failed %d and %d requests: not deterministic", a, b)
	}
	if a < 70 || a > 130 {
		t.Errorf("%d of 1000 requests failed, want about 100", a)
	}
}

// startApp runs catalog, reviews (error rate 0.5) and frontend on loopback
// and returns frontend's base URL. Everything stops in t.Cleanup.
func startApp(t *testing.T) string {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	start := func(serve func(ready func(net.Addr)) error) string {
		addrc := make(chan string, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serve(func(a net.Addr) { addrc <- a.String() }); err != nil {
				t.Error(err)
				close(addrc)
			}
		}()
		addr, ok := <-addrc
		if !ok {
			t.FailNow()
		}
		return addr
	}
	catalog := start(func(r func(net.Addr)) error { return serveCatalog(ctx, "127.0.0.1:0", log, r) })
	reviews := start(func(r func(net.Addr)) error { return serveReviews(ctx, "127.0.0.1:0", 0.5, log, r) })
	front := start(func(r func(net.Addr)) error {
		return serveFrontend(ctx, "127.0.0.1:0", catalog, "http://"+reviews, log, r)
	})
	return "http://" + front
}

func TestFrontendCallsCatalogAndDegradesWhenReviewsFails(t *testing.T) {
	base := startApp(t)
	var withReviews, degraded int
	for i := range 20 {
		resp, err := http.Get(base + "/product/7")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %s: %s", i, resp.Status, body)
		}
		var p page
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatalf("decode %s: %v", body, err)
		}
		if len(p.Products) != 1 || p.Products[0].GetName() != "product 7" {
			t.Fatalf("products %v, want product 7 from catalog", p.Products)
		}
		switch {
		case p.Reviews != nil:
			withReviews++
		case strings.Contains(p.ReviewsStatus, "500"):
			degraded++
		default:
			t.Fatalf("neither reviews nor a reviews error: %s", body)
		}
	}
	if withReviews == 0 || degraded == 0 {
		t.Errorf("with reviews %d, degraded %d: want both with a 50%% reviews error rate", withReviews, degraded)
	}
	resp, err := http.Get(base + "/product/999")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("unknown product: %s, want 502 carrying catalog's NotFound", resp.Status)
	}
}

func TestLoadgenStopsAtItsRequestBound(t *testing.T) {
	base := startApp(t)
	l := newLoadgen(base, 200, 10*time.Second, 50, slog.New(slog.DiscardHandler))
	start := time.Now()
	st := l.run(context.Background())
	if st.Sent != 50 || st.OK+st.Failed != 50 {
		t.Errorf("stats %v, want exactly 50 sent and answered", st)
	}
	if st.Failed != 0 {
		t.Errorf("stats %v: frontend degrades instead of failing, want no failures", st)
	}
	if el := time.Since(start); el < 200*time.Millisecond || el > 5*time.Second {
		t.Errorf("50 requests at 200/s took %v", el)
	}
}
