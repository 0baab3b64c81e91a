// Package monitor runs the capture pipeline: eBPF collector → connection
// table → protocol parsers → flow consumers.
//
// It is the one place where the daemon's capture parts meet, so that each
// of them stays ignorant of the others: package bpf knows network
// namespaces and pod ids, package capture knows connections and byte
// streams, package protocol knows HTTP, and the consumers (aggregation,
// exporters) know only package flow. The Monitor
//   - mirrors the pod registry (it is a registry.Observer) into the
//     collector's enrolled namespaces (package podnetns) and into the
//     identities it attaches to connections (package podindex: pod by id,
//     remote pod by IP, service name);
//   - drives the connection table with the collector's events and gives
//     every connection an HTTP parser;
//   - turns syscalls into flow.KernelOps and parsed exchanges into
//     flow.Exchanges for every consumer, and hands the latest exchanges to
//     package requests (GET /api/v1/requests) and the bytes to package
//     streamdump when capture.dumpDir is set;
//   - mounts the connections, requests and features views (packages api,
//     requests, features) and exposes the pipeline's counters to Prometheus.
//
// Everything it keeps is bounded: see Options and the constants below.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weirnet/weir/bpf"
	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/capture"
	"github.com/weirnet/weir/daemon/config"
	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/identity"
	"github.com/weirnet/weir/daemon/podindex"
	"github.com/weirnet/weir/daemon/podnetns"
	"github.com/weirnet/weir/daemon/protocol/record"
	"github.com/weirnet/weir/daemon/requests"
	"github.com/weirnet/weir/daemon/streamdump"
)

// Bounds of the per-connection state the pipeline keeps next to the
// capture table's.
const (
	// OpsPerConn is how many complete read/write operations a connection
	// holds for the exchanges that may claim them: enough for an exchange
	// whose request and response took dozens of syscalls, small enough
	// that a full connection table stays bounded. Beyond it the oldest
	// goes to OpConsumers on its own (counted, never lost).
	OpsPerConn = 64
	// OpsPerExchange bounds the operations attached to one exchange; the
	// rest of its operations go to OpConsumers on their own (counted).
	OpsPerExchange = 64
	// IOHoldDelay is how long (event clock) a read or write waits for an
	// exchange to claim it before it goes to OpConsumers on its own: HTTP/2
	// control frames, and requests whose response takes longer than this.
	// It is also how long an operation whose syscall's last event was lost,
	// with nothing after it, waits before it is taken as complete.
	IOHoldDelay = 30 * time.Second
	// PendingExchangesPerConn bounds the exchanges of a connection that
	// wait for their last operation to complete; beyond it the oldest is
	// delivered with the operations known so far (counted).
	PendingExchangesPerConn = 64
)

// Collector is the kernel side as the Monitor uses it: *bpf.Collector, or
// a fake feeding recorded events in tests.
type Collector interface {
	Enroll(netnsInode uint64, podID uint32) error
	Unenroll(netnsInode uint64) error
	Run(ctx context.Context, sink event.Sink) error
	Features() bpf.Features
	Counters() (bpf.Counters, error)
	ReaderStats() bpf.ReaderStats
	Close() error
}

// Options configure a Monitor.
type Options struct {
	// Config is the daemon's configuration; the capture, bpf, protocol and
	// requests sections apply.
	Config config.Config
	// Logger receives the pipeline's logs (default: discard).
	Logger *slog.Logger
	// Consumers receive every kernel operation and exchange. Calls are
	// never concurrent: they are made with the connection table's lock
	// held, from the eBPF reader's goroutine or the table's sweeper, so a
	// consumer must not block (see flow.Consumer) and must not call the
	// connections API of this Monitor from inside a call.
	Consumers []flow.Consumer
	// Services names the service of each pod (default: identity.Owner).
	Services identity.ServiceResolver
	// Prometheus, when set, gets the pipeline's collectors at New. Under
	// daemon.Run leave it nil: the daemon calls RegisterMetrics with its
	// own registry.
	Prometheus prometheus.Registerer
	// Collector replaces the eBPF collector (tests). Nil: New loads one
	// with bpf.Load when Config.Capture.Enabled.
	Collector Collector
	// BootTime and Clock override the event clock (tests); zero values
	// use CLOCK_MONOTONIC.
	BootTime time.Time
	Clock    func() event.Timestamp
}

// Monitor is the capture pipeline as a daemon component. Create it with
// New; it implements daemon.Component, registry.Observer,
// daemon.HTTPRegistrar and daemon.PrometheusRegistrar.
type Monitor struct {
	log      *slog.Logger
	cfg      config.Config
	coll     Collector // nil when capture is disabled
	table    *capture.Table
	cgroups  *identity.CgroupResolver
	pstats   *record.Stats
	pods     *podindex.Index
	enroller *podnetns.Enroller
	tls      *tlsGate // nil: TLS plaintext is not captured
	requests *requests.Ring
	pipe     *pipeline
	metrics  *metrics
	boot     time.Time
	clock    func() event.Timestamp

	closeOnce sync.Once
}

// New builds the pipeline and, unless capture is disabled or
// opts.Collector is given, loads the eBPF programs. Load failures wrap
// bpf.ErrBTFMissing, bpf.ErrPermission or bpf.ErrHookUnavailable; see
// Explain for a message that names the cause for an operator.
func New(opts Options) (*Monitor, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := opts.Config
	services := opts.Services
	if services == nil {
		services = identity.Owner{}
	}
	m := &Monitor{
		log:    log.With("component", "monitor"),
		cfg:    cfg,
		pstats: &record.Stats{},
		boot:   opts.BootTime,
		clock:  opts.Clock,
	}
	if m.clock == nil {
		m.clock = event.Now
	}
	if m.boot.IsZero() {
		m.boot = time.Now().Add(-time.Duration(m.clock()))
	}
	m.requests = requests.NewRing(cfg.Requests.Keep, m.boot)
	m.pods = podindex.New(services)
	m.metrics = newMetrics(m)

	limits := record.DefaultLimits()
	limits.MaxHeaderBytes = cfg.Protocol.MaxHeaderBytes
	limits.MaxStreams = cfg.Protocol.MaxStreams
	limits.MaxPending = cfg.Protocol.MaxPending
	limits.MaxBuffered = max(limits.MaxBuffered, limits.MaxHeaderBytes)
	if err := limits.Validate(); err != nil {
		return nil, fmt.Errorf("monitor: protocol limits: %w", err)
	}

	var dump *streamdump.Writer
	if cfg.Capture.DumpDir != "" {
		var err error
		if dump, err = streamdump.New(cfg.Capture.DumpDir, m.log); err != nil {
			return nil, err
		}
	}
	m.pipe = newPipeline(pipelineConfig{
		log:       m.log,
		consumers: opts.Consumers,
		pods:      m.pods,
		requests:  m.requests,
		pstats:    m.pstats,
		limits:    limits,
		dump:      dump,
		metrics:   m.metrics,
	})

	if cg, err := identity.NewCgroupResolver(identity.CgroupResolverConfig{}); err != nil {
		m.log.Warn("container ids of connections unavailable", "error", err)
	} else {
		m.cgroups = cg
	}
	switch {
	case opts.Collector != nil:
		m.coll = opts.Collector
	case cfg.Capture.Enabled:
		tier, err := bpf.ParseCaptureTier(cfg.BPF.CaptureTier)
		if err != nil {
			return nil, fmt.Errorf("bpf.captureTier: %w", err)
		}
		c, err := bpf.Load(bpf.Config{
			RingBufferSize: cfg.BPF.RingBufferSize,
			ChunkSize:      cfg.BPF.ChunkSize,
			CaptureLimit:   cfg.BPF.CaptureLimit,
			MaxFrameCopy:   cfg.BPF.MaxFrameCopy,
			HintMapSize:    cfg.BPF.HintMapSize,
			PollInterval:   cfg.BPF.PollInterval.Duration,
			NoPayload:      !cfg.BPF.Payload,
			RichTier:       cfg.BPF.RichTier,
			CaptureTier:    tier,
		}, log.With("component", "bpf"))
		if err != nil {
			return nil, fmt.Errorf("load eBPF capture: %w", err)
		}
		m.coll = c
		if !cfg.BPF.TLS {
			m.log.Info("TLS plaintext capture off (bpf.tls=false): TLS connections are reported without their content")
		} else if t, err := c.LoadTLS(log.With("component", "tls")); err != nil {
			m.log.Warn("TLS plaintext capture not loaded: TLS connections are reported without their content", "error", err)
		} else {
			m.tls = newTLSGate(t, log.With("component", "tls"))
		}
	default:
		m.log.Info("eBPF capture disabled by configuration (capture.enabled=false): pods are enrolled, not monitored")
	}
	tcfg := capture.Config{
		MaxConns:         cfg.Capture.MaxConnections,
		MaxBufferedBytes: cfg.Capture.MaxBufferedBytes,
		IdleTimeout:      cfg.Capture.IdleTimeout.Duration,
		StreamFactory:    m.pipe.newStream,
		// A pipeline that reuses values copies each segment's metrics
		// (connState.track), so the decoder may reuse their memory.
		StreamsCopyMetrics: m.pipe.reuse,
		Observer:           m.pipe,
		Pods:               m.pods.Names,
		BootTime:           m.boot,
		Clock:              m.clock,
		Logger:             log,
		// The socket tier reports the kernel's close of every socket,
		// after the exit of the process that held it.
		KernelCloses: captureTier(m.coll) == bpf.CaptureSocket,
	}
	if m.cgroups != nil {
		tcfg.ContainerID = m.cgroups.ContainerID
	}
	var err error
	if m.table, err = capture.NewTable(tcfg); err != nil {
		m.Close()
		return nil, fmt.Errorf("monitor: %w", err)
	}

	if ctl, ok := m.coll.(captureController); ok {
		m.pipe.ctl = ctl
	}
	var tlsWatch podnetns.Watcher // nil: no TLS probes
	if m.tls != nil {
		tlsWatch = m.tls
	}
	m.enroller = podnetns.New(m.coll, tlsWatch, m.log)
	if opts.Prometheus != nil {
		if err := m.RegisterMetrics(opts.Prometheus); err != nil {
			m.Close()
			return nil, err
		}
	}
	return m, nil
}

// captureTier is the capture tier coll runs, CaptureAuto for a collector
// that is not the eBPF one (tests' fakes, capture disabled).
func captureTier(coll any) bpf.CaptureTier {
	if f, ok := coll.(interface{ Features() bpf.Features }); ok {
		return f.Features().Capture
	}
	return bpf.CaptureAuto
}

// Explain turns an error of New into one line for an operator, naming what
// the node lacks and what to do about it.
func Explain(err error) string {
	var he *bpf.HookError
	switch {
	case errors.As(err, &he):
		return fmt.Sprintf("the kernel lacks the eBPF hook %s that capture needs (%v); run on a kernel that has it or set capture.enabled=false", he.Hook, he.Err)
	case errors.Is(err, bpf.ErrBTFMissing):
		return fmt.Sprintf("the kernel has no BTF (needs CONFIG_DEBUG_INFO_BTF); set capture.enabled=false to run without capture: %v", err)
	case errors.Is(err, bpf.ErrPermission):
		return fmt.Sprintf("not permitted to load eBPF programs: run weir-daemon as root or with CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): %v", err)
	}
	return err.Error()
}

// Name implements daemon.Component.
func (m *Monitor) Name() string { return "monitor" }

// CaptureEnabled reports whether eBPF capture runs.
func (m *Monitor) CaptureEnabled() bool { return m.coll != nil }

// Run runs the pipeline until ctx ends: the table's sweeps and the
// collector's reader. At the end every connection is closed
// (so parsers emit what they hold), the collector detached and the dump
// files closed. A reader failure is returned and stops the daemon.
func (m *Monitor) Run(ctx context.Context) error {
	defer m.Close()
	if m.coll == nil {
		<-ctx.Done()
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { _ = m.table.Run(ctx) })
	var sink event.Sink = m.table
	if m.tls != nil {
		sink = tlsExecSink{m.table, m.tls}
	}
	err := m.coll.Run(ctx, sink)
	cancel()
	wg.Wait()
	m.table.CloseAll(m.clock())
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("eBPF reader: %w", err)
	}
	return nil
}

// Close detaches the eBPF programs and closes the dump files. Run calls it;
// call it yourself when Run never ran (start-up failed after New).
func (m *Monitor) Close() error {
	var err error
	m.closeOnce.Do(func() {
		if m.tls != nil {
			if terr := m.tls.tls.Close(); terr != nil {
				m.log.Warn("detach TLS probes", "error", terr)
			}
		}
		if m.coll != nil {
			err = m.coll.Close()
		}
		m.pipe.closeDump()
	})
	return err
}

// Table is the connection table, for components that read it.
func (m *Monitor) Table() *capture.Table { return m.table }
