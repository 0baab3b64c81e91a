package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
)

// reviewsSeed makes the failing requests the same on every run, so a demo
// and its test see the same error rate.
const reviewsSeed = 0x7765697200000007

// failer decides which requests fail: a seeded PCG stream, one draw per
// request, so the error share converges on rate deterministically.
type failer struct {
	mu   sync.Mutex
	rng  *rand.Rand
	rate float64
}

func newFailer(rate float64) *failer {
	return &failer{rng: rand.New(rand.NewPCG(reviewsSeed, reviewsSeed)), rate: rate}
}

func (f *failer) fail() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rng.Float64() < f.rate
}

type review struct {
	Product uint32 `json:"product"`
	Stars   int    `json:"stars"`
	Text    string `json:"text"`
}

// reviewsHandler serves GET /reviews/{id}; a share errorRate of the
// requests answers 500 (the demo's error route).
func reviewsHandler(errorRate float64) http.Handler {
	f := newFailer(errorRate)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /reviews/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseUint(r.PathValue("id"), 10, 32)
		if err != nil {
			http.Error(w, fmt.Sprintf("bad product id %q", r.PathValue("id")), http.StatusBadRequest)
			return
		}
		if f.fail() {
			http.Error(w, "reviews backend failed (deliberate demo error)", http.StatusInternalServerError)
			return
		}
		out := []review{
			{Product: uint32(id), Stars: 1 + int(id%5), Text: "does what it says"},
			{Product: uint32(id), Stars: 1 + int((id+2)%5), Text: "arrived on time"},
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
	return mux
}

func runReviews(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("reviews", flag.ContinueOnError)
	listen := fs.String("listen", ":8081", "HTTP listen address")
	rate := fs.Float64("error-rate", 0.1, "share of requests answered with 500, 0..1")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rate < 0 || *rate > 1 {
		return fmt.Errorf("--error-rate %g: want a value in 0..1", *rate)
	}
	return serveReviews(ctx, *listen, *rate, log, nil)
}

func serveReviews(ctx context.Context, addr string, rate float64, log *slog.Logger, ready func(net.Addr)) error {
	return serveHTTP(ctx, addr, reviewsHandler(rate), log, ready)
}
