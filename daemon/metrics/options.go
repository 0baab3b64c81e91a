package metrics

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults of Options.
const (
	DefaultRetention              = 30 * time.Minute
	DefaultStep                   = 10 * time.Second
	DefaultWindow                 = 5 * time.Minute
	DefaultMaxEndpointsPerService = 100
	DefaultMaxEndpoints           = 2000
	DefaultMaxPods                = 1024
	DefaultMaxServices            = 256
	DefaultMaxEdges               = 1024
	DefaultMaxDropReasons         = 32
	DefaultMaxPathBytes           = 256
	DefaultMaxConnCache           = 65536
	// MaxSlots bounds Retention/Step: the ring length of every series.
	MaxSlots = 4096
)

// Options configures an Aggregator. Zero fields take the defaults above.
//
// Memory is bounded by the series limits. Every service and every edge
// holds a ring of Retention/Step slots for HTTP (96 bytes a slot plus its
// latency histogram) and for TCP (80 bytes a slot); every endpoint an HTTP
// ring. A slot's histogram spans only the latency buckets used in that step,
// 4 bytes each: about 110 bytes for latencies within one order of
// magnitude, at most logHistBytes (1248 bytes). With the defaults (180
// slots) a service or edge costs about 50 KiB in the usual case and 256 KiB
// at worst, an endpoint 36 KiB and 242 KiB. Prometheus totals add about
// 6 KiB per pod, 2.5 KiB per edge and 0.4 KiB per endpoint; the connection
// cache about 100 bytes per open connection.
type Options struct {
	// Retention is how much history the rings keep, and the largest window
	// a query may ask for.
	Retention time.Duration
	// Step is the time resolution of the rings.
	Step time.Duration
	// DefaultWindow is the window of a query that names none.
	DefaultWindow time.Duration

	// RoutePatterns name endpoints: a request path matching
	// "/api/items/{id}" is counted as that pattern. A segment "{name}"
	// matches one path segment; a final "{name...}" matches the rest.
	// Paths matching a pattern are always kept; other paths are kept
	// verbatim up to MaxEndpointsPerService per service, and counted
	// under "<other>" past that.
	RoutePatterns []string
	// MaxEndpointsPerService bounds distinct unpatterned endpoints per
	// service; MaxEndpoints bounds endpoints across all services.
	MaxEndpointsPerService int
	MaxEndpoints           int
	// MaxPods, MaxServices and MaxEdges bound the pods, services and
	// client→server edges tracked. Traffic of a pod, service or edge past
	// the limit is not attributed to it; the overflow is counted in
	// weir_metrics_cardinality_overflow_total.
	MaxPods     int
	MaxServices int
	MaxEdges    int
	// MaxDropReasons bounds distinct drop reasons per pod and per edge;
	// further reasons are counted as "other".
	MaxDropReasons int
	// MaxPathBytes truncates request paths before they name an endpoint.
	MaxPathBytes int
	// MaxConnCache bounds the connections whose attribution is cached
	// (about 100 bytes each). Past it flows are attributed the slow way,
	// which is counted.
	MaxConnCache int

	// Now is the clock (time.Now when nil). Tests pass a fake one.
	Now    func() time.Time
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defd(&o.Retention, DefaultRetention)
	defd(&o.Step, DefaultStep)
	defd(&o.DefaultWindow, min(DefaultWindow, o.Retention))
	def(&o.MaxEndpointsPerService, DefaultMaxEndpointsPerService)
	def(&o.MaxEndpoints, DefaultMaxEndpoints)
	def(&o.MaxPods, DefaultMaxPods)
	def(&o.MaxServices, DefaultMaxServices)
	def(&o.MaxEdges, DefaultMaxEdges)
	def(&o.MaxDropReasons, DefaultMaxDropReasons)
	def(&o.MaxPathBytes, DefaultMaxPathBytes)
	def(&o.MaxConnCache, DefaultMaxConnCache)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

func (o Options) validate() error {
	var errs []error
	if o.Step <= 0 || o.Step%time.Second != 0 {
		errs = append(errs, fmt.Errorf("step %s must be a positive whole number of seconds", o.Step))
	} else if o.Retention%o.Step != 0 || o.Retention < o.Step {
		errs = append(errs, fmt.Errorf("retention %s must be a positive multiple of step %s", o.Retention, o.Step))
	} else if n := o.Retention / o.Step; n > MaxSlots {
		errs = append(errs, fmt.Errorf("retention %s / step %s = %d slots, over the limit %d", o.Retention, o.Step, n, MaxSlots))
	}
	if o.DefaultWindow <= 0 || o.DefaultWindow > o.Retention {
		errs = append(errs, fmt.Errorf("default window %s must be in (0, retention %s]", o.DefaultWindow, o.Retention))
	}
	for name, v := range map[string]int{
		"MaxEndpointsPerService": o.MaxEndpointsPerService, "MaxEndpoints": o.MaxEndpoints, "MaxPods": o.MaxPods,
		"MaxServices": o.MaxServices, "MaxEdges": o.MaxEdges, "MaxDropReasons": o.MaxDropReasons, "MaxPathBytes": o.MaxPathBytes,
		"MaxConnCache": o.MaxConnCache,
	} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s %d is negative", name, v))
		}
	}
	return errors.Join(errs...)
}
