package bpf

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Per-pod device counters: two TC programs on the pod's host-side veth
// count what the pod sends (host ingress) and receives (host egress).
// Kernels with TCX (6.6+) get TCX links, which detach when closed and
// coexist with other TCX users; older kernels get a clsact qdisc with a
// direct-action cls_bpf filter, which must be deleted explicitly. Which one
// is chosen by trying TCX on the first pod, not by kernel version.

// tcAttach is how the TC programs of one pod are attached.
type tcAttach struct {
	ifindex int
	links   []link.Link      // TCX
	filters []netlink.Filter // clsact fallback
}

// podAttachments tracks the per-pod TC attachments by netns inode.
type podAttachments struct {
	mu     sync.Mutex
	byNS   map[uint64]*tcAttach
	noTCX  bool // TCX attach failed as unsupported once: use clsact
	method string
}

// PodCounters are per-pod packet counts seen on the pod's host veth, and
// drops of the pod's sockets' packets by kernel drop reason.
type PodCounters struct {
	// Sent by the pod (ingress on its host veth) and received by it
	// (egress on the host veth), as seen at the TC hook: a packet dropped
	// later on its path was still counted here.
	TxPackets, TxBytes uint64
	RxPackets, RxBytes uint64
	// Drops of skbs owned by the pod's tracked sockets, by reason
	// (kfree_skb); packets dropped before a socket owns them (e.g. an
	// INPUT rule in the pod) are not attributed to a pod.
	Drops map[string]uint64
}

// EnrollPod is Enroll plus per-pod device counters on hostVethIndex, the
// pod's host-side veth in the calling thread's network namespace.
// hostVethIndex 0 enrolls without device counters.
func (c *Collector) EnrollPod(netnsInode uint64, podID uint32, hostVethIndex int) error {
	if err := c.Enroll(netnsInode, podID); err != nil {
		return err
	}
	if hostVethIndex <= 0 {
		return nil
	}
	if err := c.attachPod(netnsInode, hostVethIndex); err != nil {
		return fmt.Errorf("enroll pod %d: device counters on ifindex %d: %w", podID, hostVethIndex, err)
	}
	return nil
}

func (c *Collector) attachPod(netnsInode uint64, ifindex int) error {
	c.pods.mu.Lock()
	defer c.pods.mu.Unlock()
	if old := c.pods.byNS[netnsInode]; old != nil {
		if old.ifindex == ifindex {
			return nil
		}
		c.detachLocked(netnsInode)
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("count CPUs: %w", err)
	}
	zero := make([]captureDevCounters, ncpu) // one value per CPU
	for _, dir := range []uint32{0, 1} {
		if err := c.podDev.Update(captureDevKey{Ifindex: uint32(ifindex), Ingress: dir}, zero, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("create counters (at most %d pods): %w", c.podDev.MaxEntries()/2, err)
		}
	}
	a := &tcAttach{ifindex: ifindex}
	if !c.pods.noTCX {
		err = c.attachTCX(a)
		if errors.Is(err, ebpf.ErrNotSupported) {
			c.pods.noTCX = true
			c.log.Info("TCX not supported: per-pod counters use clsact + cls_bpf", "error", err)
		}
	}
	if c.pods.noTCX {
		err = c.attachClsact(a)
	}
	if err != nil {
		c.deleteDevCounters(ifindex)
		return err
	}
	c.pods.byNS[netnsInode] = a
	return nil
}

func (c *Collector) attachTCX(a *tcAttach) error {
	for _, p := range []struct {
		prog   *ebpf.Program
		attach ebpf.AttachType
	}{{c.tcIngress, ebpf.AttachTCXIngress}, {c.tcEgress, ebpf.AttachTCXEgress}} {
		l, err := link.AttachTCX(link.TCXOptions{Interface: a.ifindex, Program: p.prog, Attach: p.attach})
		if err != nil {
			for _, l := range a.links {
				l.Close()
			}
			a.links = nil
			return fmt.Errorf("attach TCX: %w", err)
		}
		a.links = append(a.links, l)
	}
	c.pods.method = "tcx"
	return nil
}

func (c *Collector) attachClsact(a *tcAttach) error {
	q := &netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: a.ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT,
	}, QdiscType: "clsact"}
	if err := netlink.QdiscReplace(q); err != nil {
		return fmt.Errorf("add clsact qdisc: %w", err)
	}
	for _, p := range []struct {
		prog   *ebpf.Program
		parent uint32
		name   string
	}{{c.tcIngress, netlink.HANDLE_MIN_INGRESS, "weir_pod_in"}, {c.tcEgress, netlink.HANDLE_MIN_EGRESS, "weir_pod_eg"}} {
		f := &netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{
				LinkIndex: a.ifindex, Parent: p.parent, Handle: 1, Protocol: unix.ETH_P_ALL, Priority: 1,
			},
			Fd: p.prog.FD(), Name: p.name, DirectAction: true,
		}
		if err := netlink.FilterReplace(f); err != nil {
			c.deleteFilters(a)
			return fmt.Errorf("add cls_bpf filter %s: %w", p.name, err)
		}
		a.filters = append(a.filters, f)
	}
	c.pods.method = "clsact"
	return nil
}

func (c *Collector) deleteFilters(a *tcAttach) {
	for _, f := range a.filters {
		if err := netlink.FilterDel(f); err != nil && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.ENOENT) {
			c.log.Warn("remove per-pod filter", "ifindex", a.ifindex, "error", err)
		}
	}
	a.filters = nil
}

func (c *Collector) deleteDevCounters(ifindex int) {
	for _, dir := range []uint32{0, 1} {
		_ = c.podDev.Delete(captureDevKey{Ifindex: uint32(ifindex), Ingress: dir})
	}
}

// detachLocked removes the TC programs and counters of one pod. The veth
// may already be gone with the pod: that detaches them too.
func (c *Collector) detachLocked(netnsInode uint64) {
	a := c.pods.byNS[netnsInode]
	if a == nil {
		return
	}
	delete(c.pods.byNS, netnsInode)
	for _, l := range a.links {
		if err := l.Close(); err != nil {
			c.log.Warn("detach per-pod TCX", "ifindex", a.ifindex, "error", err)
		}
	}
	c.deleteFilters(a)
	c.deleteDevCounters(a.ifindex)
}

func (c *Collector) detachAllPods() {
	c.pods.mu.Lock()
	defer c.pods.mu.Unlock()
	for ns := range c.pods.byNS {
		c.detachLocked(ns)
	}
}

// PodCounters reads the per-pod counters, keyed by pod id, summed over
// CPUs. Pods enrolled without a host veth have drops only.
func (c *Collector) PodCounters() (map[uint32]PodCounters, error) {
	out := map[uint32]PodCounters{}
	get := func(pod uint32) PodCounters {
		pc, ok := out[pod]
		if !ok {
			pc.Drops = map[string]uint64{}
		}
		return pc
	}
	c.pods.mu.Lock()
	for ns, a := range c.pods.byNS {
		var pod uint32
		if err := c.netns.Lookup(ns, &pod); err != nil {
			continue // unenrolled meanwhile
		}
		pc := get(pod)
		for _, dir := range []uint32{0, 1} {
			var per []captureDevCounters
			if err := c.podDev.Lookup(captureDevKey{Ifindex: uint32(a.ifindex), Ingress: dir}, &per); err != nil {
				c.pods.mu.Unlock()
				return nil, fmt.Errorf("read device counters of pod %d: %w", pod, err)
			}
			for _, v := range per {
				if dir == 1 { // host ingress: sent by the pod
					pc.TxPackets += v.Packets
					pc.TxBytes += v.Bytes
				} else {
					pc.RxPackets += v.Packets
					pc.RxBytes += v.Bytes
				}
			}
		}
		out[pod] = pc
	}
	c.pods.mu.Unlock()

	var (
		k   capturePodDropKey
		per []uint64
	)
	it := c.podDrops.Iterate()
	for it.Next(&k, &per) {
		pc := get(k.PodId)
		for _, v := range per {
			pc.Drops[c.dropReasons.name(k.Reason)] += v
		}
		out[k.PodId] = pc
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read pod drop counters: %w", err)
	}
	return out, nil
}
