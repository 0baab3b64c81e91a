// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
/*
 * Part of capture.bpf.c, included by it once (not a standalone header).
 *
 * Kernel metrics per operation: per-packet programs (device queue and transmit, receive stamps),
 * retransmits and drops, accumulated on the operation in flight.
 */

/* ---- per-syscall kernel metrics (base tier) -------------------------------
 *
 * A send syscall on TCP pushes its segments down the stack on its own
 * thread: tcp_sendmsg -> ip_queue_xmit -> dev_queue_xmit -> driver, all
 * before the syscall returns (unless the congestion window holds them back).
 * So a tracepoint that fires for an skb of socket S, on a thread that is
 * inside a send syscall on S, is work of that syscall: the thread's
 * inflight entry accumulates it and the syscall's last data event carries
 * it. Skbs that leave later from softirq are not attributed to a syscall.
 */

/* The current thread's send syscall whose packet skb is in the device path.
 * Matched by skb, not skb->sk: drivers such as loopback orphan the skb
 * before net_dev_xmit fires. */
static __always_inline struct syscall_args *send_of_skb(const void *skb)
{
	struct syscall_args *a = current_args();

	if (!a || a->cur_skb != (__u64)skb || !a->queue_ts)
		return NULL;
	return a;
}

/* The packet of a send (syscall or op window) now in this CPU's device
 * path, and when the driver got it: net_dev_start_xmit and net_dev_xmit
 * compare the skb here (an array lookup the verifier inlines) instead of
 * looking up the thread's task storage for every packet, and net_dev_xmit
 * looks it up only for the packet that matches. A transmit runs its
 * three tracepoints on one CPU with bottom halves off, so no other packet
 * of this CPU is transmitted in between (a packet a qdisc held back leaves
 * later, and the thread's cur_skb check still decides). */
struct xmit_slot {
	__u64 skb;
	__u64 start_ts;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xmit_slot);
} xmit_at SEC(".maps");

static __always_inline struct xmit_slot *cpu_xmit_slot(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&xmit_at, &zero);
}

/* A packet enters the device layer (__dev_queue_xmit). */
SEC("tp_btf/net_dev_queue")
int BPF_PROG(on_dev_queue, struct sk_buff *skb)
{
	/* tp_btf arguments are BTF pointers: plain loads, no probe reads,
	 * in the hooks that run for every packet on the node. */
	struct syscall_args *a = send_of((__u64)skb->sk);
	struct xmit_slot *x;

	if (!a)
		return 0;
	a->m.packets++;
	a->m.packet_bytes += skb->len;
	a->m.ifindex = skb->dev->ifindex;
	a->cur_skb = (__u64)skb;
	a->queue_ts = bpf_ktime_get_ns();
	a->start_ts = 0;
	x = cpu_xmit_slot();
	if (x) {
		x->skb = (__u64)skb;
		x->start_ts = 0;
	}
	return 0;
}

/* The packet is handed to the driver (after the qdisc, if any). */
SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(on_dev_start_xmit, const struct sk_buff *skb, const struct net_device *dev)
{
	struct xmit_slot *x = cpu_xmit_slot();

	if (x && x->skb == (__u64)skb)
		x->start_ts = bpf_ktime_get_ns();
	return 0;
}

/* The driver took the packet. */
SEC("tp_btf/net_dev_xmit")
int BPF_PROG(on_dev_xmit, struct sk_buff *skb, int rc, struct net_device *dev, unsigned int len)
{
	struct xmit_slot *x = cpu_xmit_slot();
	struct syscall_args *a;
	__u64 now, start;

	if (!x || x->skb != (__u64)skb || !x->start_ts)
		return 0;
	start = x->start_ts;
	x->skb = x->start_ts = 0;
	a = send_of_skb(skb);
	if (!a)
		return 0;
	now = bpf_ktime_get_ns();
	a->m.l2_ns += now - a->queue_ts;
	a->m.ready_ns += start - a->queue_ts;
	a->m.device_ns += now - start;
	a->m.xmit_seen++;
	a->queue_ts = a->cur_skb = 0;
	return 0;
}

/* TCP retransmits a segment. From the send path it is counted to the send
 * syscall in flight. Most retransmits come from elsewhere: the retransmit
 * timer, a tail loss probe, or fast retransmit on an incoming ACK, none of
 * them in a syscall of the connection. Those become one small record each,
 * so a lossy keep-alive connection shows its retransmits while it lives
 * (the tcp_sock total read at close is not added again). A retransmit is
 * rare next to the data records, so the ring has room for them. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(on_retransmit, const struct sock *sk, const struct sk_buff *skb)
{
	__u64 key = (__u64)sk;
	struct syscall_args *a;
	struct retransmit_event *e;
	struct sock_conn *sc;

	/* Since Linux 6.17 the tracepoint also fires for attempts that failed
	 * (its third argument is the error), e.g. -EBUSY while the original
	 * is still queued in the host (a qdisc, a device backlog). The kernel counts only sent
	 * retransmits in total_retrans, and so do we. Before 6.17 it fired for
	 * sent ones only and has two arguments; the CO-RE check makes the read
	 * of the third dead code the verifier skips there. */
	if (bpf_core_field_exists(struct trace_event_raw_tcp_retransmit_skb, err) && (int)ctx[2] != 0)
		return 0;
	a = send_of(key);

	/* Segments, as the socket's total_retrans counts them: a retransmitted
	 * skb still holding several MSS of a GSO send counts for each. The
	 * count lives in the skb's TCP control block; one read per retransmit. */
	__u16 segs = BPF_CORE_READ((struct tcp_skb_cb *)&skb->cb[0], tcp_gso_segs);

	if (!segs)
		segs = 1;
	if (a) {
		a->m.retrans += segs;
		return 0;
	}
	sc = bpf_map_lookup_elem(&socks, &key);
	if (!sc)
		return 0; /* not an enrolled pod's connection */
	/* The close event carried the socket's total_retrans: a retransmit
	 * after it (FIN_WAIT1 on, data still queued) would be counted twice
	 * against that total. The syscall tier removes the entry at close. */
	if (sc->closed)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(DROP_RINGBUF_FULL);
		return 0;
	}
	e->type = EVENT_RETRANSMIT;
	e->state = sk->__sk_common.skc_state;
	e->segs = segs;
	__builtin_memset(e->_pad, 0, sizeof(e->_pad));
	e->conn_id = sc->conn_id;
	e->ts = bpf_ktime_get_ns();
	bpf_ringbuf_submit(e, RB_FLAGS);
	return 0;
}

/*
 * An skb is freed as dropped. skb->sk is set for packets a local socket
 * sent (netfilter OUTPUT, qdisc, device drops) and for received packets
 * already matched to a socket; drops before the socket lookup (e.g. a
 * netfilter INPUT rule) have no socket and are not attributed to a
 * connection. Reasons are the kernel's enum skb_drop_reason values; 0 and
 * SKB_CONSUMED are normal frees, not drops.
 */
static __always_inline void count_pod_drop(__u32 pod, __u32 reason)
{
	struct pod_drop_key k = {.pod_id = pod, .reason = reason};
	__u64 one = 1, *v = bpf_map_lookup_elem(&pod_drops, &k);

	if (v) {
		*v += 1;
		return;
	}
	if (bpf_map_update_elem(&pod_drops, &k, &one, BPF_NOEXIST))
		count(DROP_POD_DROPS_MAP_FULL);
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(on_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	__u64 sk = (__u64)skb->sk;
	struct syscall_args *a;
	struct sock_conn *sc;

	if (!sk || reason == SKB_NOT_DROPPED_YET)
		return 0;
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_CONSUMED) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_CONSUMED))
		return 0;
	sc = bpf_map_lookup_elem(&socks, &sk);
	if (!sc)
		return 0;
	add_drop(sc->drops, CONN_DROP_SLOTS, reason, 1);
	count_pod_drop(sc->proc.pod_id, reason);
	a = send_of(sk);
	if (a)
		add_drop(a->m.drops, SYSCALL_DROP_SLOTS, reason, 1);
	return 0;
}

/* ---- receive path: stamps on skbs, read by the copying syscall ------------
 *
 * A received skb is stamped when its device hands it to the stack (only in
 * enrolled namespaces, so the map sees pod traffic, not the node's) and
 * again when TCP takes it into an established socket. The reading thread's
 * skb_copy_datagram_iovec then turns the stamps into the read's
 * to-queue and from-queue times. Keyed by skb pointer in an LRU map: a
 * reused skb is stamped afresh on its next receive.
 */
struct rx_stamp {
	__u64 rx_ns;
	__u64 queue_ns;
	__u32 ifindex;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct rx_stamp);
} rx_stamps SEC(".maps");

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(on_netif_receive, struct sk_buff *skb)
{
	__u64 ino = skb->dev->nd_net.net->ns.inum;
	struct rx_stamp fresh = {}, *st;
	__u64 key = (__u64)skb;

	/* The filter bits alone, as in op_window: a stamp only serves the
	 * reads of enrolled sockets, and a namespace sharing a bit with an
	 * enrolled one costs stamps nobody reads, nothing else. */
	if (!netns_maybe_enrolled(ino))
		return 0;
	/* skb heads come back from a per-CPU cache, so the stamp of an
	 * earlier skb at this address is usually still here: overwritten in
	 * place. An LRU update would take a free node from the LRU list and
	 * push the replaced one back on every packet, which perf showed as
	 * two thirds of this program's time. Only one skb lives at an address
	 * at a time, so no reader of the old stamp remains. */
	st = bpf_map_lookup_elem(&rx_stamps, &key);
	if (st) {
		st->rx_ns = bpf_ktime_get_ns();
		st->queue_ns = 0;
		st->ifindex = skb->dev->ifindex;
		return 0;
	}
	fresh.rx_ns = bpf_ktime_get_ns();
	fresh.ifindex = skb->dev->ifindex;
	if (bpf_map_update_elem(&rx_stamps, &key, &fresh, BPF_ANY))
		count(DROP_RX_STAMP_MAP_FULL);
	return 0;
}

/* tcp_rcv_established begins: the segment is about to be queued. */
SEC("tp_btf/tcp_probe")
int BPF_PROG(on_tcp_probe, struct sock *sk, const struct sk_buff *skb)
{
	__u64 key = (__u64)skb;
	struct rx_stamp *st;

	/* Only skbs of enrolled namespaces were stamped: the others' sockets
	 * are turned away by the filter bits before the stamp lookup. */
	if (!netns_maybe_enrolled(sk->__sk_common.skc_net.net->ns.inum))
		return 0;
	st = bpf_map_lookup_elem(&rx_stamps, &key);

	if (st && !st->queue_ns)
		st->queue_ns = bpf_ktime_get_ns();
	return 0;
}

/* The reader copies from skb: attribute it to the thread's receive syscall. */
SEC("tp_btf/skb_copy_datagram_iovec")
int BPF_PROG(on_skb_copy, const struct sk_buff *skb, int len)
{
	__u64 key = (__u64)skb;
	struct syscall_args *a;
	struct rx_stamp *st;
	bool opened = false;
	__u64 now;

	if (socket_tier) {
		/* The first copy of an enrolled socket's op opens its window. */
		a = op_window(skb->sk, SYS_RECVMSG, &opened);
		if (!a)
			return 0;
	} else {
		a = current_args();
		if (!a || a->sk != (__u64)skb->sk)
			return 0;
		switch (a->syscall) {
		case SYS_READ:
		case SYS_READV:
		case SYS_RECVFROM:
		case SYS_RECVMSG:
		case SYS_RECVMMSG:
			break;
		default:
			return 0;
		}
	}
	if (len > 0)
		a->r.packet_bytes += len;
	if (a->r.last_skb == key)
		return 0;
	a->r.last_skb = key;
	a->r.packets++;
	st = bpf_map_lookup_elem(&rx_stamps, &key);
	if (!st || !st->queue_ns || st->queue_ns < st->rx_ns) {
		a->r.unstamped++;
		count(DROP_RX_UNSTAMPED);
		return 0;
	}
	/* A window opened by this copy was stamped a moment ago. */
	now = opened ? a->start_ns : bpf_ktime_get_ns();
	a->r.ifindex = st->ifindex;
	a->r.to_queue_ns += st->queue_ns - st->rx_ns;
	a->r.from_queue_ns += now - st->queue_ns;
	return 0;
}
