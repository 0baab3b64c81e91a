package enroll

import "github.com/prometheus/client_golang/prometheus"

// Refusal reasons, the values of weir_enroll_refused_total's reason label.
const (
	ReasonInvalid      = "invalid"       // the record fails validation
	ReasonNetns        = "netns"         // the netns is not a pod's network namespace (or is gone)
	ReasonLink         = "host_link"     // host_veth_index names no interface of the node
	ReasonRegistryFull = "registry_full" // maxPods attachments are enrolled
	ReasonIPInUse      = "ip_in_use"     // an address is enrolled for another live pod
	ReasonTooLarge     = "too_large"     // the registry file would exceed its bound
	ReasonAbandoned    = "abandoned"     // the caller gave up before the daemon got to the call
	ReasonInternal     = "internal"      // the registry could not persist the change
)

var refusalReasons = []string{ReasonInvalid, ReasonNetns, ReasonLink, ReasonRegistryFull, ReasonIPInUse,
	ReasonTooLarge, ReasonAbandoned, ReasonInternal}

// Metrics counts what the enrollment service refused, repaired and skipped,
// so that no pod goes unmonitored silently.
type Metrics struct {
	// Refused counts Enroll calls (live or replayed from the spool) the
	// daemon refused, by reason.
	Refused *prometheus.CounterVec
	// Repaired counts pods repair enrolled because no ADD ever reached
	// the registry (registry was full, spool overflowed or stranded).
	Repaired prometheus.Counter
	// Superseded counts spooled records skipped because a newer live call
	// for the same attachment was already applied.
	Superseded prometheus.Counter
	// SpoolDropped counts spooled enrollments dropped on replay because the
	// pod's netns is gone or the registry is full (repair catches up).
	SpoolDropped prometheus.Counter
}

// NewMetrics returns the service's counters, every refusal reason at 0.
func NewMetrics() *Metrics {
	m := &Metrics{
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_enroll_refused_total",
			Help: "Enroll calls (live or replayed from the plugin's spool) the daemon refused, by reason.",
		}, []string{"reason"}),
		Repaired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weir_enroll_repaired_total",
			Help: "Pods enrolled by repair: found on the node (CRI or CNI cache) but never enrolled by an ADD.",
		}),
		Superseded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weir_enroll_spool_superseded_total",
			Help: "Spooled plugin calls skipped because a newer live call for the same attachment came first.",
		}),
		SpoolDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weir_enroll_spool_dropped_total",
			Help: "Spooled enrollments dropped on replay: the pod's netns is gone or the registry is full (repair catches up).",
		}),
	}
	for _, r := range refusalReasons {
		m.Refused.WithLabelValues(r)
	}
	return m
}

// Collectors returns the collectors to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Refused, m.Repaired, m.Superseded, m.SpoolDropped}
}
