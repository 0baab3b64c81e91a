package capture

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/weirnet/weir/bpf/event"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxConns         = 65536
	DefaultMaxBufferedBytes = 64 << 20
	DefaultReorderEvents    = 64
	DefaultReorderBytes     = 256 << 10
	DefaultReorderDelay     = 100 * time.Millisecond
	DefaultClosedRing       = 1024
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultSweepInterval    = 100 * time.Millisecond
)

// PodResolver maps an enrolled pod id to the pod's namespace and name. The
// enrollment registry provides it; ok is false for an unknown id.
type PodResolver func(podID uint32) (namespace, name string, ok bool)

// Config configures a Table. The zero value of every field selects its
// default, so Config{} is a working configuration.
type Config struct {
	// MaxConns bounds the connections tracked at once (open ones, not the
	// closed ring). When full, the least recently active one is evicted.
	MaxConns int
	// MaxBufferedBytes bounds the payload bytes held in reorder buffers of
	// all connections together. When exceeded, the direction that went
	// over is flushed (declaring its gaps).
	MaxBufferedBytes int
	// ReorderEvents and ReorderBytes bound each direction's reorder
	// buffer. ReorderDelay is how long (in event time) an event may wait
	// for a missing predecessor before the predecessor is declared lost.
	ReorderEvents int
	ReorderBytes  int
	ReorderDelay  time.Duration
	// KernelCloses says the capture reports each socket's close where the
	// kernel closes it (the socket tier's inet_sock_set_state), including
	// the sockets a process's exit closes. A process exit then ends none of
	// its connections: their closes follow it on the ring, with the kernel's
	// byte totals, and a socket another process still holds stays open.
	// Without it (the syscall tier sees close syscalls only) an exit ends
	// the process's connections.
	KernelCloses bool
	// ClosedRing is how many closed connections are kept for the API.
	ClosedRing int
	// IdleTimeout expires connections with no event for that long.
	IdleTimeout time.Duration
	// SweepInterval is how often Run calls Sweep.
	SweepInterval time.Duration

	// StreamFactory creates the consumer of each connection's bytes
	// (default: NopStream).
	StreamFactory StreamFactory
	// StreamsCopyMetrics says the streams StreamFactory makes copy a
	// Segment's Send and Recv before Segment returns. The table then
	// copies a held chunk's metrics itself, and is an
	// event.MetricsBorrower: its decoder may reuse their memory.
	StreamsCopyMetrics bool
	// ContainerID maps a cgroup id to a container id, "" when none. It is
	// called from the Sink goroutine when a connection is first seen, so it
	// must be cheap on repeated ids (identity.CgroupResolver.ContainerID caches).
	ContainerID func(cgroupID uint64) string
	// Pods resolves pod ids for the API (optional).
	Pods PodResolver
	// Observer is told how each event changed the table (optional): the
	// daemon's pipeline derives per-syscall kernel operations from it.
	Observer Observer
	// BootTime is the wall-clock time of boot, used to convert event
	// timestamps (default: derived from CLOCK_MONOTONIC now).
	BootTime time.Time
	// Clock returns the current time on the event clock (default:
	// CLOCK_MONOTONIC, which is what bpf_ktime_get_ns reads).
	Clock func() event.Timestamp
	// Logger receives the table's logs (default: slog.Default()).
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	ints := []struct {
		name string
		v    *int
		def  int
	}{
		{"MaxConns", &c.MaxConns, DefaultMaxConns},
		{"MaxBufferedBytes", &c.MaxBufferedBytes, DefaultMaxBufferedBytes},
		{"ReorderEvents", &c.ReorderEvents, DefaultReorderEvents},
		{"ReorderBytes", &c.ReorderBytes, DefaultReorderBytes},
		{"ClosedRing", &c.ClosedRing, DefaultClosedRing},
	}
	for _, f := range ints {
		if *f.v < 0 {
			return c, fmt.Errorf("capture config: %s must not be negative, got %d", f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	durs := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"ReorderDelay", &c.ReorderDelay, DefaultReorderDelay},
		{"IdleTimeout", &c.IdleTimeout, DefaultIdleTimeout},
		{"SweepInterval", &c.SweepInterval, DefaultSweepInterval},
	}
	for _, f := range durs {
		if *f.v < 0 {
			return c, fmt.Errorf("capture config: %s must not be negative, got %s", f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.StreamFactory == nil {
		c.StreamFactory = func(*Conn) Stream { return NopStream{} }
	}
	if c.Clock == nil {
		c.Clock = event.Now
	}
	if c.BootTime.IsZero() {
		c.BootTime = event.BootTime()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
