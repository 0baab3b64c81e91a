// Package daemon wires weir-daemon's components together and runs them until
// the context ends.
//
// Start-up order matters and is the point of this package:
//
//  1. The pod registry is loaded; components that mirror it (the eBPF netns
//     map) are its observers and are told about every persisted pod first.
//  2. The enrollment socket and the HTTP port are bound, so a second daemon
//     or a taken port fails start-up before anything changes.
//  3. The plugin's spool is drained into the registry. The socket is already
//     listening, so a plugin calling now waits in the accept backlog instead
//     of spooling a record this drain would miss.
//  4. Pods whose network namespace disappeared while the daemon was down are
//     dropped (reconcile).
//  5. Pods the node runs that never reached the registry are enrolled
//     (repair: CRI sandboxes and libcni's cache; see enroll.Repair).
//  6. gRPC, HTTP and the attached components run. Every ReconcileInterval
//     the spool is drained again (a plugin that timed out during start-up
//     may have spooled), the registry reconciled and repaired.
//
// On ctx's end every part is stopped and waited for; the first failure of
// any part stops the others and is returned.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weirnet/weir/daemon/api"
	"github.com/weirnet/weir/daemon/config"
	"github.com/weirnet/weir/daemon/enroll"
	"github.com/weirnet/weir/daemon/registry"
	"github.com/weirnet/weir/enrollapi/enrollpb"
	"github.com/weirnet/weir/enrollapi/spool"
)

// GRPCStopTimeout bounds the graceful stop of the enrollment service; after
// it in-flight RPCs are cut.
const GRPCStopTimeout = 5 * time.Second

// Component is a part of weir-daemon that runs alongside the enrollment
// service: the eBPF collector, the exporters. Attach components by passing
// them to Run. A component may also implement:
//   - registry.Observer, to be told about every enrolled pod (those loaded
//     from disk included) and every removal;
//   - HTTPRegistrar, to add its handlers and readiness checks to the API;
//   - PrometheusRegistrar, to add its collectors to the daemon's /metrics.
type Component interface {
	Name() string
	// Run runs the component until ctx ends. A non-nil error (other than
	// ctx's) stops the daemon.
	Run(ctx context.Context) error
}

// HTTPRegistrar is implemented by components that serve HTTP endpoints.
type HTTPRegistrar interface {
	RegisterHTTP(*api.Server)
}

// PrometheusRegistrar is implemented by components that export metrics.
// The daemon owns one prometheus.Registry, served at GET /metrics, with the
// Go runtime and process collectors and weir_enrolled_pods; components add
// theirs before anything is served. An error (e.g. a duplicate metric)
// fails start-up.
type PrometheusRegistrar interface {
	RegisterMetrics(prometheus.Registerer) error
}

// Run runs weir-daemon with cfg until ctx ends. It returns nil after a
// clean shutdown caused by ctx.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, components ...Component) error {
	var observers []registry.Observer
	for _, c := range components {
		if o, ok := c.(registry.Observer); ok {
			observers = append(observers, o)
		}
	}
	reg, err := registry.Open(registry.Options{
		Dir:       cfg.StateDir,
		MaxPods:   cfg.MaxPods,
		Observers: observers,
		Logger:    log.With("component", "registry"),
	})
	if err != nil {
		return err
	}
	log.Info("pod registry loaded", "path", reg.Path(), "pods", reg.Stats().Pods)

	grpcLn, err := enroll.Listen(enroll.ListenOptions{
		Path:        cfg.Socket,
		AllowedUIDs: cfg.AllowedUIDs,
		Logger:      log.With("component", "enroll"),
	})
	if err != nil {
		return fmt.Errorf("enrollment socket: %w", err)
	}
	defer grpcLn.Close()
	httpLn, err := net.Listen("tcp", cfg.HTTP)
	if err != nil {
		return fmt.Errorf("http api: %w", err)
	}
	defer httpLn.Close()

	enrollSrv := enroll.NewServer(reg, log.With("component", "enroll"), enroll.ServerOptions{})
	sp := spool.New(cfg.SpoolDir, 0)
	m := &maintenance{reg: reg, srv: enrollSrv, spool: sp, log: log}
	if cfg.Repair {
		m.repairOpts = &enroll.RepairOptions{CacheDir: cfg.CNICacheDir, Socket: cfg.Socket}
		if cfg.Identity.CRISocket != "" {
			cri, err := enroll.NewCRISandboxes(cfg.Identity.CRISocket)
			if err != nil {
				return err
			}
			defer cri.Close()
			m.repairOpts.Sandboxes = cri
		}
	}
	m.drainSpool(ctx)
	m.reconcile()
	m.repair(ctx)
	m.conf = &enroll.InstalledCheck{Dir: cfg.CNIConfDir, Socket: cfg.Socket, SpoolDir: cfg.SpoolDir}
	for _, w := range m.conf.Refresh() {
		log.Warn("installed weir CNI entry does not match this daemon: its pods are found only by repair", "problem", w)
	}

	var grpcServing atomic.Bool
	apiSrv := api.New(reg, log.With("component", "api"))
	apiSrv.AddReadyCheck("registry", func() error { return nil }) // loaded: Run got past Open
	apiSrv.AddReadyWarning("cni-config", m.conf.Warnings)
	apiSrv.AddReadyCheck("grpc", func() error {
		if !grpcServing.Load() {
			return errors.New("enrollment service is not serving")
		}
		return nil
	})
	for _, c := range components {
		if r, ok := c.(HTTPRegistrar); ok {
			r.RegisterHTTP(apiSrv)
		}
	}
	metrics, err := newMetricsRegistry(reg, components)
	if err != nil {
		return err
	}
	if err := registerAll(metrics, enrollSrv.Metrics().Collectors()); err != nil {
		return err
	}
	apiSrv.Handle("GET /metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
	}))

	if cfg.Pprof {
		registerPprof(apiSrv)
		log.Warn("serving Go runtime profiles", "addr", httpLn.Addr().String(), "path", "/debug/pprof/")
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g := &group{ctx: ctx, cancel: cancel}

	grpcSrv := enroll.NewGRPCServer(enrollSrv)
	g.Go("grpc", func() error {
		grpcServing.Store(true)
		defer grpcServing.Store(false)
		log.Info("enrollment service listening", "socket", cfg.Socket, "allowedUIDs", cfg.AllowedUIDs)
		return grpcSrv.Serve(grpcLn)
	})
	g.Go("grpc-stop", func() error {
		<-ctx.Done()
		stopGRPC(grpcSrv)
		return nil
	})
	g.Go("http", func() error {
		log.Info("http api listening", "addr", httpLn.Addr().String())
		return apiSrv.Serve(ctx, httpLn)
	})
	g.Go("maintenance", func() error {
		m.loop(ctx, cfg.ReconcileInterval.Duration)
		return nil
	})
	for _, c := range components {
		g.Go(c.Name(), func() error { return c.Run(ctx) })
	}

	log.Info("weir-daemon running", "node", cfg.NodeName, "components", len(components))
	if err := g.Wait(); err != nil {
		log.Error("weir-daemon stopping after a failure", "error", err)
		return err
	}
	log.Info("weir-daemon stopped")
	return nil
}

// newMetricsRegistry builds the registry served at /metrics.
func newMetricsRegistry(reg *registry.Registry, components []Component) (*prometheus.Registry, error) {
	r := prometheus.NewRegistry()
	if err := RegisterMetrics(r, reg, components); err != nil {
		return nil, err
	}
	return r, nil
}

// RegisterMetrics registers on r everything the daemon serves at /metrics:
// the Go runtime and process collectors, weir_enrolled_pods (read from reg
// at scrape time) and every component's collectors. It is exported so that
// what reads the daemon's metrics (the Grafana dashboard's test) can take
// their names from the collectors' descriptors instead of a hand-kept list.
func RegisterMetrics(r prometheus.Registerer, reg *registry.Registry, components []Component) error {
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "weir_enrolled_pods",
			Help: "Pod attachments in the enrollment registry.",
		}, func() float64 { return float64(reg.Stats().Pods) }),
	} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("daemon metrics: %w", err)
		}
	}
	for _, c := range components {
		if pr, ok := c.(PrometheusRegistrar); ok {
			if err := pr.RegisterMetrics(r); err != nil {
				return fmt.Errorf("%s: metrics: %w", c.Name(), err)
			}
		}
	}
	return nil
}

func registerAll(r prometheus.Registerer, cs []prometheus.Collector) error {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	return nil
}

func stopGRPC(s interface {
	GracefulStop()
	Stop()
}) {
	done := make(chan struct{})
	go func() { s.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(GRPCStopTimeout):
		s.Stop()
		<-done
	}
}

// maintenance re-drains the spool, reconciles the registry and repairs it.
type maintenance struct {
	reg        *registry.Registry
	srv        *enroll.Server
	spool      *spool.Spool
	log        *slog.Logger
	repairOpts *enroll.RepairOptions // nil: repair is off
	conf       *enroll.InstalledCheck
}

func (m *maintenance) loop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.drainSpool(ctx)
			m.reconcile()
			m.repair(ctx)
			m.conf.Refresh()
		}
	}
}

// drainSpool replays the plugin's spooled calls. Failures are logged, not
// fatal: the records stay and the next round retries them.
func (m *maintenance) drainSpool(ctx context.Context) {
	start := time.Now()
	st, err := m.spool.Drain(ctx, func(rec *enrollpb.SpoolRecord) error { return m.srv.Apply(ctx, rec) })
	if err == nil {
		m.srv.PruneOrder(start)
	}
	if st != (spool.DrainStats{}) || err != nil {
		attrs := []any{"dir", m.spool.Dir(), "applied", st.Applied, "corrupt", st.Corrupt,
			"rejected", st.Rejected, "staleTempsRemoved", st.TempsRemoved}
		if err != nil && ctx.Err() == nil {
			m.log.Error("spool drain stopped; remaining records are retried later", append(attrs, "error", err)...)
			return
		}
		m.log.Info("spool drained", attrs...)
	}
}

func (m *maintenance) reconcile() {
	removed, err := enroll.Reconcile(m.reg, m.log.With("component", "reconcile"))
	if err != nil {
		m.log.Error("reconcile failed", "error", err)
		return
	}
	if len(removed) > 0 {
		m.log.Info("reconcile removed pods whose netns is gone", "removed", len(removed))
	}
}

// repair enrolls pods the node runs that never reached the registry.
func (m *maintenance) repair(ctx context.Context) {
	if m.repairOpts == nil {
		return
	}
	st, err := m.srv.Repair(ctx, *m.repairOpts)
	if err != nil && ctx.Err() == nil {
		m.log.Error("repair failed", "error", err)
		return
	}
	if st.Repaired > 0 || st.Failed > 0 {
		m.log.Info("repair round", "candidates", st.Candidates, "repaired", st.Repaired, "stillMissing", st.Failed)
	}
}

// group runs functions until the first returns an error or all return; the
// first error cancels the rest. A function returning ctx's error after ctx
// ended is a clean stop, not a failure.
type group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

func (g *group) Go(name string, f func() error) {
	g.wg.Go(func() {
		err := f()
		if err != nil && !(g.ctx.Err() != nil && errors.Is(err, g.ctx.Err())) {
			g.once.Do(func() {
				g.err = fmt.Errorf("%s: %w", name, err)
				g.cancel()
			})
		}
	})
}

func (g *group) Wait() error {
	g.wg.Wait()
	return g.err
}

// registerPprof serves net/http/pprof's handlers on the API server, so an
// operator can profile a daemon in place (`go tool pprof
// http://127.0.0.1:9847/debug/pprof/heap`). A CPU profile or trace must be
// shorter than the API's write timeout.
func registerPprof(s *api.Server) {
	s.Handle("GET /debug/pprof/", http.HandlerFunc(pprof.Index))
	s.Handle("GET /debug/pprof/cmdline", http.HandlerFunc(pprof.Cmdline))
	s.Handle("GET /debug/pprof/profile", http.HandlerFunc(pprof.Profile))
	s.Handle("GET /debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
	s.Handle("GET /debug/pprof/trace", http.HandlerFunc(pprof.Trace))
}
