package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of the load generator.
const (
	maxRate        = 1000 // requests per second
	maxInFlight    = 16   // a slower frontend gets fewer requests, not a pile
	requestTimeout = 5 * time.Second
	reportEvery    = 10 * time.Second
)

// loadgen sends requests to a frontend at a fixed rate: four product pages
// for every index page, product ids cycling through the catalog.
type loadgen struct {
	target      string
	rate        int
	duration    time.Duration
	maxRequests int64
	client      *http.Client
	log         *slog.Logger

	sent, ok, failed, skipped atomic.Int64
}

// Stats is what a load run did.
type Stats struct {
	Sent, OK, Failed, Skipped int64
}

func (s Stats) String() string {
	return fmt.Sprintf("sent=%d ok=%d failed=%d skipped_at_inflight_bound=%d", s.Sent, s.OK, s.Failed, s.Skipped)
}

func (l *loadgen) stats() Stats {
	return Stats{l.sent.Load(), l.ok.Load(), l.failed.Load(), l.skipped.Load()}
}

func (l *loadgen) path(n int64) string {
	if n%5 == 0 {
		return "/"
	}
	return fmt.Sprintf("/product/%d", 1+n%numProducts)
}

// run sends until ctx ends, duration passes (0: no limit) or maxRequests
// were sent (0: no limit), then waits for the requests in flight.
func (l *loadgen) run(ctx context.Context) Stats {
	if l.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.duration)
		defer cancel()
	}
	tick := time.NewTicker(time.Second / time.Duration(l.rate))
	defer tick.Stop()
	report := time.NewTicker(reportEvery)
	defer report.Stop()
	slots := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	for n := int64(0); l.maxRequests == 0 || n < l.maxRequests; {
		select {
		case <-ctx.Done():
			return l.stats()
		case <-report.C:
			l.log.Info("load", "stats", l.stats().String())
			continue
		case <-tick.C:
		}
		select {
		case slots <- struct{}{}:
		default:
			l.skipped.Add(1)
			continue
		}
		path := l.path(n)
		n++
		l.sent.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if err := l.get(ctx, path); err != nil {
				l.failed.Add(1)
				if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
					l.log.Debug("request failed", "path", path, "err", err)
				}
				return
			}
			l.ok.Add(1)
		}()
	}
	wg.Wait()
	return l.stats()
}

func (l *loadgen) get(ctx context.Context, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.target+path, nil)
	if err != nil {
		return err
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 500 {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return nil
}

func runLoadgen(ctx context.Context, args []string, log *slog.Logger, out io.Writer) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	target := fs.String("target", "", "frontend base URL, e.g. http://10.0.0.2:8080 (required)")
	rate := fs.Int("rate", 20, fmt.Sprintf("requests per second, 1..%d", maxRate))
	duration := fs.Duration("duration", 0, "stop after this long (0: run until stopped)")
	maxReq := fs.Int64("max-requests", 0, "stop after this many requests (0: no limit)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *target == "" {
		return errors.New("loadgen needs --target")
	}
	if *rate < 1 || *rate > maxRate {
		return fmt.Errorf("--rate %d: want 1..%d requests per second", *rate, maxRate)
	}
	if *duration < 0 || *maxReq < 0 {
		return errors.New("--duration and --max-requests must not be negative")
	}
	l := newLoadgen(*target, *rate, *duration, *maxReq, log)
	st := l.run(ctx)
	fmt.Fprintln(out, "loadgen:", st)
	return nil
}

func newLoadgen(target string, rate int, duration time.Duration, maxReq int64, log *slog.Logger) *loadgen {
	return &loadgen{target: target, rate: rate, duration: duration, maxRequests: maxReq, log: log,
		client: &http.Client{Timeout: requestTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: maxInFlight}}}
}
