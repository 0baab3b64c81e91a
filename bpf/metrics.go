package bpf

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf/btf"
	"github.com/weirnet/weir/bpf/event"
)

// dropReasons names the values of the running kernel's enum
// skb_drop_reason. The enum changes between kernel versions (values are
// inserted, not appended), so names come from the kernel's own BTF rather
// than a table compiled into Weir.
type dropReasons map[uint32]string

// loadDropReasons reads enum skb_drop_reason from the kernel BTF, with the
// "SKB_DROP_REASON_" prefix removed (NETFILTER_DROP, TCP_INVALID_SEQUENCE).
// A kernel without the enum (before 5.17) yields an empty table: drops are
// then not measured at all, see metricStatus.
func loadDropReasons(kernel *btf.Spec) (dropReasons, error) {
	var e *btf.Enum
	if err := kernel.TypeByName("skb_drop_reason", &e); err != nil {
		return nil, fmt.Errorf("find enum skb_drop_reason in kernel BTF: %w", err)
	}
	out := make(dropReasons, len(e.Values))
	for _, v := range e.Values {
		out[uint32(v.Value)] = strings.TrimPrefix(strings.TrimPrefix(v.Name, "SKB_DROP_REASON_"), "SKB_")
	}
	return out, nil
}

func (d dropReasons) name(v uint32) string {
	if n, ok := d[v]; ok {
		return n
	}
	return fmt.Sprintf("reason(%d)", v)
}

func (d dropReasons) drops(slots []captureDropSlot) []event.Drop {
	var out []event.Drop
	for _, s := range slots {
		if s.Count == 0 {
			continue
		}
		out = append(out, event.Drop{Reason: d.name(s.Reason), Count: s.Count})
	}
	return out
}

// sendMetrics converts what the kernel accumulated during one send
// syscall into out, which it returns. Fields whose bit is not in Measured
// are left zero.
func (d dropReasons) sendMetrics(out *event.SendMetrics, m *captureSendMetrics) *event.SendMetrics {
	*out = event.SendMetrics{
		Measured:    event.Metric(m.Measured),
		Packets:     m.Packets,
		PacketBytes: m.PacketBytes,
		Retransmits: m.Retrans,
		Drops:       d.drops(m.Drops[:]),
		IfIndex:     m.Ifindex,
	}
	if out.Measured&event.MetricL4Duration != 0 {
		out.L4Duration = m.L4Ns
	}
	if out.Measured&event.MetricL3Duration != 0 {
		out.L3Duration = m.L3Ns
	}
	if out.Measured&event.MetricNetfilter != 0 {
		out.NetfilterCount = m.NfCount
		out.NetfilterDuration = m.NfNs
	}
	if out.Measured&event.MetricResolveMAC != 0 {
		out.ResolveMACCount = m.ArpCount
		out.ResolveMACDuration = m.ArpNs
	}
	if out.Measured&event.MetricL2Duration != 0 {
		out.L2Duration = m.L2Ns
	}
	if out.Measured&event.MetricL2Queue != 0 {
		out.EnterQueueCount = m.Packets
		out.ReadySendDuration = m.ReadyNs
		out.DeviceSendDuration = m.DeviceNs
	}
	return out
}

// recvMetrics converts what the kernel accumulated during one receive
// syscall into out, which it returns; the queue split is zero unless
// measured.
func recvMetrics(out *event.RecvMetrics, r *captureRecvMetrics) *event.RecvMetrics {
	*out = event.RecvMetrics{
		Measured:    event.Metric(r.Measured),
		IfIndex:     r.Ifindex,
		Packets:     r.Packets,
		PacketBytes: r.PacketBytes,
	}
	if out.Measured&event.MetricRecvQueue != 0 {
		out.ToQueueDuration = r.ToQueueNs
		out.FromQueueDuration = r.FromQueueNs
	}
	if out.Measured&event.MetricL3Duration != 0 {
		out.L3Duration = r.L3Ns
	}
	if out.Measured&event.MetricL3Split != 0 {
		out.L3RecvDuration = r.L3RecvNs
		out.L3LocalDuration = r.L3LocalNs
	}
	if out.Measured&event.MetricNetfilter != 0 {
		out.NetfilterCount = r.NfCount
		out.NetfilterDuration = r.NfNs
	}
	if out.Measured&event.MetricL4Duration != 0 {
		out.L4Duration = r.L4Ns
	}
	return out
}

// socketStats converts the socket state reported at close.
func (d dropReasons) socketStats(s *captureSockStats) *event.SocketStats {
	if s.Measured == 0 {
		return nil
	}
	out := &event.SocketStats{
		Measured: event.Metric(s.Measured),
		Drops:    d.drops(s.Drops[:]),
	}
	if out.Measured&event.MetricRTT != 0 {
		out.SRTT = uint64(s.SrttUs) * 1000
		out.RTTVar = uint64(s.MdevUs) * 1000
	}
	if out.Measured&event.MetricRetransmits != 0 {
		out.Retransmits = s.TotalRetrans
	}
	return out
}

// MetricStatus says whether one kernel metric is measured on this node.
type MetricStatus struct {
	Metric    event.Metric
	Name      string
	Available bool
	// Reason says why not, or what limits it, in one line.
	Reason string
}

// metricNames are the public names of event.Metric bits, in bit order.
var metricNames = []struct {
	m    event.Metric
	name string
}{
	{event.MetricL4Duration, "l4_duration"},
	{event.MetricPackets, "packets"},
	{event.MetricRetransmits, "retransmits"},
	{event.MetricDrops, "drops"},
	{event.MetricL3Duration, "l3_duration"},
	{event.MetricL3Split, "l3_split"},
	{event.MetricNetfilter, "netfilter"},
	{event.MetricResolveMAC, "resolve_mac"},
	{event.MetricL2Duration, "l2_duration"},
	{event.MetricL2Queue, "l2_queue"},
	{event.MetricRecvQueue, "recv_queue"},
	{event.MetricRTT, "rtt"},
}

// metricStatus lists every metric with its availability given what was
// attached (hooks by section name) and the tier probes.
func metricStatus(attached map[string]bool, active Tier, tiers []TierStatus, haveDropReasons bool) []MetricStatus {
	richer := "not measured by any tier yet"
	if active == TierBase {
		richer = "needs the fentry or kprobe tier; on this kernel: " + tierReasons(tiers)
	}
	tierHook := func(fn string) []string {
		if active == TierFentry {
			return []string{"fentry/" + fn, "fexit/" + fn}
		}
		return []string{"kprobe/" + fn, "kretprobe/" + fn}
	}
	// The socket tier opens a send's window for the device hooks at
	// tcp_sendmsg_locked (the syscall tier at the syscall's entry), and the
	// richer tier, when it runs, at tcp_sendmsg's entry: either will do
	// (6.12 has no tcp_sendmsg_locked tracepoint).
	var sendWindow []string
	if attached["tp_btf/sock_send_length"] && !(active != TierBase && attached[tierHook("tcp_sendmsg")[0]]) {
		sendWindow = []string{"tp_btf/tcp_sendmsg_locked"}
	}
	out := make([]MetricStatus, 0, len(metricNames))
	for _, mn := range metricNames {
		st := MetricStatus{Metric: mn.m, Name: mn.name}
		// need marks the metric available when every hook is attached,
		// and otherwise names the missing one as the reason.
		need := func(hooks ...string) bool {
			for _, h := range hooks {
				if !attached[h] {
					st.Reason = "hook " + h + " not attached"
					return false
				}
			}
			st.Available = true
			return true
		}
		switch mn.m {
		case event.MetricPackets:
			if need(append(sendWindow, "tp_btf/net_dev_queue", "tp_btf/skb_copy_datagram_iovec")...) {
				st.Reason = "send: packets the sending thread queued to a device during the operation; receive: skbs the reader copied from"
			}
		case event.MetricRetransmits:
			if need("tp_btf/tcp_retransmit_skb") {
				st.Reason = "per send syscall: retransmits on its thread; per connection: tcp_sock total_retrans at close"
			}
		case event.MetricDrops:
			switch {
			case !need("tp_btf/kfree_skb"):
			case !haveDropReasons:
				st.Available, st.Reason = false, "kernel BTF has no enum skb_drop_reason"
			default:
				st.Reason = "drops of skbs owned by the socket (skb->sk set); drops before socket lookup are not attributed"
			}
		case event.MetricL2Duration, event.MetricL2Queue:
			if need(append(sendWindow, "tp_btf/net_dev_queue", "tp_btf/net_dev_start_xmit", "tp_btf/net_dev_xmit")...) {
				st.Reason = "only for operations whose every packet reached the driver on the sending thread (no qdisc delay)"
			}
		case event.MetricRecvQueue:
			if need("tp_btf/netif_receive_skb", "tp_btf/tcp_probe", "tp_btf/skb_copy_datagram_iovec") {
				st.Reason = "reads whose every segment was stamped at device receive and at TCP receive (not segments that came with the handshake)"
			}
		case event.MetricRTT:
			closeHook := "tracepoint/syscalls/sys_enter_close"
			if attached["tp_btf/sock_send_length"] {
				closeHook = "tp_btf/inet_sock_set_state" // socket tier: closes come from state changes
			}
			if need(closeHook) {
				st.Reason = "tcp_sock srtt/mdev at close; not for MPTCP sockets"
			}
		case event.MetricL4Duration, event.MetricL3Duration, event.MetricNetfilter, event.MetricResolveMAC:
			if active == TierBase {
				st.Reason = richer
				break
			}
			fn := map[event.Metric]string{event.MetricL4Duration: "tcp_sendmsg", event.MetricL3Duration: "__ip_queue_xmit",
				event.MetricNetfilter: "nf_hook_slow", event.MetricResolveMAC: "neigh_resolve_output"}[mn.m]
			if need(append(tierHook("tcp_sendmsg"), tierHook(fn)...)...) {
				st.Reason = "sends on TCP sockets, " + active.String() + " tier (" + fn + ")"
				if mn.m != event.MetricResolveMAC {
					st.Reason += "; " + recvTierReason(attached, tierHook)
				}
			}
		case event.MetricL3Split:
			if active == TierBase {
				st.Reason = richer
				break
			}
			if need(recvTierHooks(tierHook)...) {
				st.Reason = "reads only (ip_rcv to ip_local_deliver, ip_local_deliver to tcp_v4_rcv), " +
					active.String() + " tier; the send-side local/output split is not measured"
			}
		default:
			st.Reason = richer
		}
		out = append(out, st)
	}
	return out
}

// recvTierHooks are the hooks the receive-side L3/L4/netfilter times need
// (IPv4; the IPv6 ones add IPv6 coverage).
func recvTierHooks(tierHook func(string) []string) []string {
	hooks := []string{"tp_btf/skb_copy_datagram_iovec"}
	for _, fn := range []string{"ip_rcv", "tcp_v4_rcv", "nf_hook_slow"} {
		hooks = append(hooks, tierHook(fn)...)
	}
	return append(hooks, tierHook("ip_local_deliver")[0])
}

// recvTierReason says what reads get of a send-and-receive metric.
func recvTierReason(attached map[string]bool, tierHook func(string) []string) string {
	for _, h := range recvTierHooks(tierHook) {
		if !attached[h] {
			return "not for reads: hook " + h + " not attached"
		}
	}
	r := "reads: per skb copied, from ip_rcv, ip_local_deliver and tcp_v4_rcv"
	if !attached[tierHook("ipv6_rcv")[0]] || !attached[tierHook("ip6_input")[0]] || !attached[tierHook("tcp_v6_rcv")[0]] {
		r += " (IPv4 only: IPv6 hooks not attached)"
	} else {
		r += " (IPv6: ipv6_rcv, ip6_input, tcp_v6_rcv)"
	}
	return r + "; reads of skbs that bypassed ip_rcv (ip_list_rcv: GRO batches of NAPI drivers) claim L4 only"
}

func tierReasons(tiers []TierStatus) string {
	parts := []string{}
	for _, t := range tiers {
		if t.Tier != TierBase && !t.Available {
			parts = append(parts, t.Tier.String()+": "+t.Reason)
		}
	}
	return strings.Join(parts, "; ")
}
