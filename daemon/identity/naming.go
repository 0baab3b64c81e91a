package identity

import "github.com/weirnet/weir/daemon/registry"

// The interfaces in this file are the naming contract between this package
// and its consumers (the monitor's pod index, which names every flow.Pod).
// They live here, with the one implementation of each, so that a rule about
// names is written once: a consumer takes a ServiceResolver and discovers
// the optional abilities by type assertion.

// ServiceResolver names the workload (service) a pod is reported under
// (flow.Pod's Service), or returns "" when it cannot. It is called when a
// pod is enrolled, with the registry's lock held: it must answer from
// memory and never block. Resolvers that learn from the CRI or the
// Kubernetes API keep a cache and answer from it. Owner never answers "" for
// a pod with a name or a sandbox id, which is why it ends every chain.
type ServiceResolver interface {
	Service(pod *registry.Pod) string
}

// Generationer is implemented by a ServiceResolver whose answers change
// after enrollment (labels read from the runtime once it has recorded the
// sandbox, Services created later). Generation moves whenever an answer may
// have changed and never goes back; a consumer that keeps the names it got
// names its pods again when it moves, so a name chosen before the resolver
// knew better does not stick.
type Generationer interface {
	Generation() uint64
}

// ServiceSelector is implemented by a ServiceResolver that knows whether
// its name for a pod is a Kubernetes Service selecting it (flow.Pod's
// Selected): a name SkyWalking's OAP gives the pod too.
type ServiceSelector interface {
	Selected(pod *registry.Pod) bool
}

// ContainerNamer is implemented by a ServiceResolver that can also name a
// pod's containers (from the runtime's CRI). It must answer from memory,
// with "" while the name is unknown.
type ContainerNamer interface {
	ContainerName(sandboxID, containerID string) string
}

// The daemon's resolver offers every ability; Owner only the base one.
var (
	_ ServiceResolver = (*Resolver)(nil)
	_ Generationer    = (*Resolver)(nil)
	_ ServiceSelector = (*Resolver)(nil)
	_ ContainerNamer  = (*Resolver)(nil)
	_ ServiceResolver = Owner{}
)
