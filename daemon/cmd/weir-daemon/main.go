// Command weir-daemon is Weir's node agent: it keeps the registry of pods the
// weir CNI plugin enrolls, serves the enrollment socket and the HTTP API,
// and captures their traffic with eBPF (package daemon/monitor).
//
// It logs JSON to stderr and exits 2 on a configuration error, 1 on a
// runtime error (including a kernel that cannot run the eBPF capture: the
// log names what is missing), 0 after SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"syscall"
	"time"

	"google.golang.org/grpc/grpclog"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon"
	"github.com/weirnet/weir/daemon/config"
	"github.com/weirnet/weir/daemon/conntrack"
	"github.com/weirnet/weir/daemon/dashboard"
	"github.com/weirnet/weir/daemon/enroll"
	"github.com/weirnet/weir/daemon/export/skywalking"
	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/identity"
	"github.com/weirnet/weir/daemon/metrics"
	"github.com/weirnet/weir/daemon/monitor"
)

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1
	exitConfig  = 2
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stderr))
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	cfg, err := config.Load(args)
	if errors.Is(err, config.ErrHelp) {
		config.Usage(stderr)
		return exitOK
	}
	if err != nil {
		log := slog.New(slog.NewJSONHandler(stderr, nil))
		attrs := []any{"error", err}
		var cerr *config.Error
		if errors.As(err, &cerr) && cerr.Key != "" {
			attrs = append(attrs, "key", cerr.Key)
		}
		log.Error("invalid configuration", attrs...)
		return exitConfig
	}

	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	_, fromEnv := os.LookupEnv("GOMAXPROCS")
	procs := cfg.Procs(runtime.NumCPU(), runtime.GOMAXPROCS(0), fromEnv)
	runtime.GOMAXPROCS(procs)
	log.Info("daemon parallelism", "gomaxprocs", procs, "cpus", runtime.NumCPU(), "maxProcs", cfg.MaxProcs)
	if cfg.Nice > 0 {
		if err := setNice(cfg.Nice); err != nil {
			log.Error("cannot lower the daemon's priority", "error", err, "nice", cfg.Nice)
			return exitRuntime
		}
		log.Info("daemon priority", "nice", cfg.Nice)
	}
	_, envGC := os.LookupEnv("GOGC")
	_, envLimit := os.LookupEnv("GOMEMLIMIT")
	percent, limit := cfg.GC(envGC, envLimit)
	if percent > 0 {
		debug.SetGCPercent(percent)
	}
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	gc := []rtmetrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	rtmetrics.Read(gc)
	log.Info("garbage collector", "gcPercent", gc[0].Value.Uint64(), "memoryLimit", gc[1].Value.Uint64(),
		"configGCPercent", cfg.GCPercent, "configMemoryLimit", cfg.MemoryLimit)
	grpclog.SetLoggerV2(enroll.GRPCLogger(log))
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// One reading of the event clock's origin for every component that
	// turns event timestamps into wall-clock times, so that they agree.
	boot := event.BootTime()
	comps, cerr := components(cfg, boot, log)
	if cerr != nil {
		log.Error("invalid configuration", "error", cerr, "key", cerr.Key)
		return exitConfig
	}
	mon, err := monitor.New(monitor.Options{Config: cfg, Logger: log, Consumers: comps.consumers, Services: comps.names, BootTime: boot})
	if err != nil {
		log.Error("eBPF capture cannot start", "error", err, "cause", monitor.Explain(err))
		return exitRuntime
	}
	defer mon.Close() // Run closes it too; this covers a failure before Run
	if comps.exporter != nil {
		// Hold exports until Services are known, and name pods as they
		// are named when a batch is sent.
		comps.exporter.SetIdentity(comps.names.HasSynced, mon.Pod)
	}
	// The resolver comes before the monitor so that it sees each enrollment
	// first; the dashboard last, since it only serves files.
	all := append([]daemon.Component{comps.names}, mon)
	all = append(all, comps.others...)
	if err := daemon.Run(ctx, cfg, log, all...); err != nil {
		log.Error("weir-daemon failed", "error", err)
		return exitRuntime
	}
	return exitOK
}

// The resolver's counters reach /metrics only through this interface.
var _ daemon.PrometheusRegistrar = (*identity.Resolver)(nil)

// parts are the daemon's components besides the capture monitor.
type parts struct {
	names     *identity.Resolver
	exporter  *skywalking.Exporter // nil without --oap
	consumers []flow.Consumer      // fed by the monitor
	others    []daemon.Component   // aggregation, export, dashboard
}

// components builds aggregation, the SkyWalking exporter (when --oap is
// set), pod naming and the dashboard. A setting they reject is a
// configuration error naming its key.
func components(cfg config.Config, boot time.Time, log *slog.Logger) (parts, *config.Error) {
	var p parts
	agg, err := metrics.New(metrics.Options{
		RoutePatterns:          cfg.Metrics.RoutePatterns,
		MaxEndpointsPerService: cfg.Metrics.MaxEndpointsPerService,
		Retention:              cfg.Metrics.Retention.Duration,
		Logger:                 log.With("component", "metrics"),
	})
	if err != nil {
		return p, &config.Error{Key: "metrics.routePatterns", Err: err}
	}
	p.consumers = append(p.consumers, agg)
	p.others = append(p.others, agg)

	if cfg.OAP.Address != "" {
		exp, err := skywalking.New(skywalking.Config{
			OAP: cfg.OAP.Address, Token: cfg.OAP.Token, CAFile: cfg.OAP.CAFile, Insecure: cfg.OAP.Insecure,
			ServerName: cfg.OAP.ServerName, Cluster: cfg.Cluster, NodeName: cfg.NodeName,
			BootTime:    boot,
			FlushPeriod: cfg.OAP.FlushPeriod.Duration, BatchSize: cfg.OAP.BatchSize, QueueSize: cfg.OAP.QueueSize,
			ExcludeNamespaces: cfg.ExcludeNamespaces, ServiceNameTemplate: cfg.ServiceNameTemplate,
			// The daemon runs in the host's network namespace, where
			// kube-proxy's DNAT of ClusterIPs is tracked.
			Conntrack: conntrack.New(0),
		}, log.With("component", "skywalking"))
		if err != nil {
			return p, &config.Error{Key: "oap", Err: err}
		}
		p.consumers = append(p.consumers, exp)
		p.others = append(p.others, exp)
		p.exporter = exp
	}

	kube, inCluster, err := identity.KubernetesClient(cfg.Identity.Kubeconfig)
	if err != nil {
		return p, &config.Error{Key: "identity.kubeconfig", Err: err}
	}
	if !inCluster {
		kube = nil
	}
	names, err := identity.New(identity.Options{
		NodeName:   cfg.NodeName,
		Kubernetes: kube,
		CRI:        identity.CRIOptions{Socket: cfg.Identity.CRISocket},
		Logger:     log.With("component", "identity"),
	})
	if err != nil {
		return p, &config.Error{Key: "identity", Err: err}
	}
	p.names = names
	p.others = append(p.others, dashboard.New())
	return p, nil
}
