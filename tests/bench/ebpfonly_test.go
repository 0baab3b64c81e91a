package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/weirnet/weir/bpf"
	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/tests/harness"
)

// countingSink counts the records the reader delivers and keeps nothing:
// a reader with no pipeline and no export behind it.
type countingSink struct{ n atomic.Uint64 }

func (s *countingSink) ConnOpen(event.ConnOpen)     { s.n.Add(1) }
func (s *countingSink) ConnClose(event.ConnClose)   { s.n.Add(1) }
func (s *countingSink) Data(event.Data)             { s.n.Add(1) }
func (s *countingSink) Retransmit(event.Retransmit) { s.n.Add(1) }

// BorrowsMetrics lets the decoder reuse each event's metrics, as it does
// for the daemon's pipeline: the sink keeps nothing.
func (s *countingSink) BorrowsMetrics() bool { return true }

// measureEBPFOnly is the paced attribution's "eBPF only" leg (LegEBPFOnly):
// weir-daemon must not be running. It loads Weir's capture in this process
// with the daemon's default settings (bpf.Config's defaults are the
// daemon's; rich tier on, as the daemon asks), enrolls the pods as the
// daemon does (same ids, per-pod counters on their host veths), drains the
// ring with a reader that only counts, and runs load. Its CPU is this
// process's: the reader's, nothing else here works during the leg.
func measureEBPFOnly(pods []harness.PodRecord, load func() (LoadResult, error)) (WeirRun, error) {
	var w WeirRun
	c, err := bpf.Load(bpf.Config{RichTier: true}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return w, fmt.Errorf("load Weir's capture in the bench process: %w", err)
	}
	defer c.Close()
	for _, p := range pods {
		if err := c.EnrollPod(p.NetNSInode, p.ID, p.HostVethIndex); err != nil {
			return w, fmt.Errorf("enroll pod %s/%s: %w", p.Namespace, p.Name, err)
		}
	}
	sink := &countingSink{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, sink) }()
	stop := func() error {
		cancel()
		return <-done
	}
	lost0, err := kernelLosses(c)
	if err != nil {
		stop()
		return w, err
	}
	self0, err := ReadProcStats(os.Getpid())
	if err != nil {
		stop()
		return w, err
	}
	n0 := sink.n.Load()
	if w.Load, err = load(); err != nil {
		stop()
		return w, err
	}
	// Let the reader take what the last requests wrote: until the count
	// stops moving for a few polls, bounded by drainLimit.
	deadline := time.Now().Add(drainLimit)
	for last, still := sink.n.Load(), 0; still < 3 && time.Now().Before(deadline); {
		time.Sleep(3 * bpf.DefaultPollInterval)
		if n := sink.n.Load(); n == last {
			still++
		} else {
			last, still = n, 0
		}
	}
	self1, err := ReadProcStats(os.Getpid())
	if err != nil {
		stop()
		return w, err
	}
	lost1, err := kernelLosses(c)
	if err != nil {
		stop()
		return w, err
	}
	if err := stop(); err != nil {
		return w, fmt.Errorf("counting reader: %w", err)
	}
	w.CPU = self1.CPU - self0.CPU
	w.Records = float64(sink.n.Load() - n0)
	w.Capturer = true
	w.Lost = map[string]float64{}
	for k, v := range lost1 {
		w.Lost[k] = float64(v - lost0[k])
	}
	return w, nil
}

// kernelLosses reads the kernel side's counters that count losses.
func kernelLosses(c *bpf.Collector) (map[string]uint64, error) {
	all, err := c.Counters()
	if err != nil {
		return nil, fmt.Errorf("read the kernel side's counters: %w", err)
	}
	out := map[string]uint64{}
	for k, v := range all {
		if bpf.CounterLoses(k) {
			out[k] = v
		}
	}
	return out, nil
}
