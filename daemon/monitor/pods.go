package monitor

import (
	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/registry"
)

// Pod returns the current identity of the enrolled pod id (renamed when the
// resolver learned more), or nil when no such pod is enrolled. It is safe
// for concurrent use.
func (m *Monitor) Pod(id uint32) *flow.Pod { return m.pods.ByPodID(id) }

// PodEnrolled implements registry.Observer: the pod's identity is indexed
// and its network namespace handed to the collector before the call
// returns. That is deliberate although it runs under the registry's lock:
// the plugin's Enroll RPC returns only after the registry changed, and the
// runtime starts the pod's processes after that, so capture is on before
// the pod's first instruction. collector.Enroll costs one map write and
// one scan of /proc (milliseconds).
func (m *Monitor) PodEnrolled(p *registry.Pod) {
	m.pods.Add(p, m.log)
	m.enroller.Want(p.NetnsInode, p.ID, int(p.HostVethIndex))
}

// PodRemoved implements registry.Observer.
func (m *Monitor) PodRemoved(p *registry.Pod) {
	m.pods.Remove(p.ID)
	m.enroller.Unwant(p.NetnsInode, p.ID)
}
