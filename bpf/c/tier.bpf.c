// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
/*
 * Weir's richer tiers: per-function timing of a send syscall's way down the
 * stack, which no tracepoint brackets. Each timed function gets an entry
 * and an exit program, as fentry/fexit where the kernel allows BPF
 * trampolines and as kprobe/kretprobe where it only has kprobes; user
 * space loads one of the two sets (chosen by a runtime probe) with the base
 * collection's inflight map, so the measurements land in the same
 * syscall's metrics the base tier reports.
 *
 * Attribution is the base tier's: the work is the current thread's, while
 * it is inside a send syscall on the same socket (syscall capture tier) or
 * inside a send's op window on it (socket capture tier; see socket_tier). Entry programs stamp the
 * thread's inflight entry; exit programs add the elapsed time. These
 * functions do nest on one thread, though not for the same socket: on veth
 * and loopback the receiver's softirq runs inside the sender's
 * __dev_queue_xmit, and the peer's ACK goes through __ip_queue_xmit,
 * nf_hook_slow and neigh_resolve_output there. So an exit only ends the
 * timing when its socket (or, for the skb functions, its skb) is the one
 * the entry stamped (fexit sees the arguments).
 * kretprobes do not, so the kprobe tier can end an outer timing at a
 * nested exit: its L3, netfilter and ARP times are lower bounds on such
 * devices.
 *
 * The receive side (second half of this file) cannot be attributed by
 * thread: packets are received in softirq, on whatever thread was
 * interrupted, usually not the reader. So its times are kept per skb, in
 * rx_times keyed by the skb pointer, and a read takes the times of the skbs
 * it copies from (tp_btf/skb_copy_datagram_iovec), like the base tier's
 * rx_stamps.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "inflight.h"
#include "shared.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Set from Go (Collector.loadRichTier) when the base object runs the
 * socket capture tier. There is no in-flight syscall then: the work is
 * attributed to the thread's op window instead (window_open in
 * inflight.h), which the base object opens at tcp_sendmsg_locked or the
 * first skb copied and closes at sock_send_length/sock_recv_length. This
 * tier opens a send's window itself, at tcp_sendmsg's entry, so that the
 * L4 time it starts there falls inside the op; the exits and the skb
 * functions then find it as they find an in-flight send syscall (its label
 * is SYS_SENDMSG, a send for send_of). */
volatile const __u8 socket_tier = 0;

/* Socket tier: the current thread's op window on sk, labelled label. With
 * fresh set (tcp_sendmsg's entry: an op begins) a new window is opened
 * whatever was open; otherwise an open window of the op is reused and one
 * is opened only when there is none. A socket whose namespace bit is clear
 * (netns_bits, the base object's map: nearly every unenrolled one) gets
 * none, after one inlined array lookup. As in the base object's
 * op_window, the bits alone decide: sock_io's exact filter decides whether
 * the op is reported. */
static __always_inline struct syscall_args *tier_window(__u64 sk, __u64 ino, __u8 label, bool fresh)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct syscall_args *a = inflight_of(t);

	if (!sk)
		return NULL;
	if (!fresh && a && a->syscall == label && a->sk == sk)
		return a;
	if (!netns_maybe_enrolled(ino))
		return NULL;
	if (!a) {
		a = bpf_task_storage_get(&inflight, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (!a) {
			count(DROP_ARGS_MAP_FULL);
			return NULL;
		}
	}
	window_open(a, sk, label, bpf_ktime_get_ns());
	return a;
}

/* What a send syscall gets measured once this tier sees it enter
 * tcp_sendmsg: a function that was never called (no netfilter rule, no
 * ARP) counted zero, which is a measurement. */
#define TIER_METRICS (METRIC_L4_DURATION | METRIC_L3_DURATION | METRIC_NETFILTER | METRIC_RESOLVE_MAC)

/* tcp_sendmsg entry. ino is sk's network namespace inode, read by the
 * caller (a plain load under fentry, a probe read under kprobes) and only
 * under the socket tier, where it gates the window. */
static __always_inline void l4_enter(struct sock *sk, __u64 ino)
{
	struct syscall_args *a;

	if (socket_tier) {
		a = tier_window((__u64)sk, ino, SYS_SENDMSG, true);
		if (!a)
			return;
		a->m.measured |= TIER_METRICS;
		a->l4_ts = a->start_ns; /* the op starts here */
		return;
	}
	a = send_of((__u64)sk);
	if (!a)
		return;
	a->m.measured |= TIER_METRICS;
	a->l4_ts = bpf_ktime_get_ns();
}

static __always_inline void l3_enter(struct sock *sk)
{
	struct syscall_args *a = send_of((__u64)sk);

	if (a)
		a->l3_ts = bpf_ktime_get_ns();
}

static __always_inline void skb_enter(struct sk_buff *skb, bool arp)
{
	struct syscall_args *a = send_of((__u64)BPF_CORE_READ(skb, sk));

	if (!a)
		return;
	if (arp) {
		a->arp_ts = bpf_ktime_get_ns();
		a->arp_skb = (__u64)skb;
	} else {
		a->nf_ts = bpf_ktime_get_ns();
		a->nf_skb = (__u64)skb;
	}
}

/* The current thread's in-flight send syscall, for an exit program: on sk
 * when the exit knows the socket, else any (kretprobes). */
static __always_inline struct syscall_args *exit_args(__u64 sk, bool know_sk)
{
	struct syscall_args *a = current_args();

	if (!a || (know_sk && a->sk != sk))
		return NULL;
	return a;
}

static __always_inline void l4_exit(__u64 sk, bool know_sk)
{
	struct syscall_args *a = exit_args(sk, know_sk);

	if (a && a->l4_ts) {
		a->m.l4_ns += bpf_ktime_get_ns() - a->l4_ts;
		a->l4_ts = 0;
	}
}

static __always_inline void l3_exit(__u64 sk, bool know_sk)
{
	struct syscall_args *a = exit_args(sk, know_sk);

	if (a && a->l3_ts) {
		a->m.l3_ns += bpf_ktime_get_ns() - a->l3_ts;
		a->l3_ts = 0;
	}
}

/* skb functions: the exit knows the skb pointer (not its socket: by then
 * the device may have orphaned or freed it). */
static __always_inline void nf_exit(__u64 skb, bool know_skb)
{
	struct syscall_args *a = current_args();

	if (a && a->nf_ts && (!know_skb || a->nf_skb == skb)) {
		a->m.nf_ns += bpf_ktime_get_ns() - a->nf_ts;
		a->m.nf_count++;
		a->nf_ts = 0;
	}
}

static __always_inline void arp_exit(__u64 skb, bool know_skb)
{
	struct syscall_args *a = current_args();

	if (a && a->arp_ts && (!know_skb || a->arp_skb == skb)) {
		a->m.arp_ns += bpf_ktime_get_ns() - a->arp_ts;
		a->m.arp_count++;
		a->arp_ts = 0;
	}
}

/* ---- receive path: per-skb L3/L4 times ------------------------------------
 *
 * IPv4 delivers a TCP segment in one softirq call chain (IPv6 alike, with
 * ipv6_rcv, ip6_input and tcp_v6_rcv):
 *
 *   ip_rcv -> [nf PRE_ROUTING] -> ip_rcv_finish (routing) -> ip_local_deliver
 *     -> [nf LOCAL_IN] -> ip_local_deliver_finish -> tcp_v4_rcv
 *
 * Measured per skb: L3 receive = ip_rcv entry to ip_local_deliver entry,
 * L3 local = ip_local_deliver entry to tcp_v4_rcv entry, L4 = tcp_v4_rcv
 * entry to exit, netfilter = each nf_hook_slow on the skb in between. Only
 * tcp_v4_rcv and nf_hook_slow need their exits for timing; ip_rcv's exit
 * only ends the per-CPU slot below. Limits (the first two show as bits the
 * read does not claim, counted as rx_untimed):
 *  - ip_list_rcv/ipv6_list_rcv (GRO batches of NAPI drivers: real NICs,
 *    veth with GRO or XDP) bypass ip_rcv: such skbs get L3 local and L4
 *    times but no L3 receive time nor PRE_ROUTING netfilter passes, so the
 *    read claims L4 only.
 *  - a segment TCP coalesces into the skb before it in the receive queue
 *    is never copied from as itself: its times are not added (the read is
 *    still claimed: what it reports is the times of the skbs it copied).
 *  - a reader on another CPU can copy an skb before its tcp_v4_rcv has
 *    returned: that read claims no L4.
 *  - when the reader owns the socket, tcp_v4_rcv only queues the segment
 *    to the backlog, processed later on the reader's thread: L4 is then
 *    the time to queue it there.
 *  - kprobe tier: a hook that sends a packet itself (a REJECT rule on the
 *    way in) nests an nf_hook_slow whose kretprobe ends the outer pass:
 *    receive netfilter time is then a lower bound, as on the send side.
 * Only skbs received in enrolled namespaces are tracked.
 */

/* A received skb's times, from its softirq to the read that copies it. */
struct rx_times {
	__u64 local_ts; /* ip_local_deliver / ip6_input entry */
	__u64 l4_ts;    /* tcp_v4_rcv / tcp_v6_rcv entry */
	__u64 recv_ns;  /* ip_rcv entry -> ip_local_deliver entry (have_recv) */
	__u64 local_ns; /* ip_local_deliver entry -> tcp_v4_rcv entry */
	__u64 l4_ns;    /* tcp_v4_rcv entry -> exit */
	__u64 nf_ns;    /* nf_hook_slow on this skb, PRE_ROUTING and LOCAL_IN */
	__u32 nf_count;
	__u8 have_recv; /* came through ip_rcv (not ip_list_rcv) */
	__u8 stage;     /* RX_LOCAL, RX_L4, RX_DONE, RX_COPIED */
	__u8 _pad[2];
};

enum { RX_LOCAL = 1, RX_L4 = 2, RX_DONE = 3, RX_COPIED = 4 };

/* skb pointer -> times. Entries are created at ip_local_deliver (a fresh
 * one every time, so a reused skb never inherits old times) and marked
 * RX_COPIED by the first read that copies from the skb: a later read that
 * copies the rest of it adds nothing and still claims the fields. Entries
 * are not deleted (so that mark survives) and age out of the LRU, like
 * the base tier's rx_stamps, which tracks the same skbs with the same
 * size. An insert that fails is counted (rx_times_map_full); an entry
 * evicted before its read shows as that read's rx_untimed. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct rx_times);
} rx_times SEC(".maps");

/* What this CPU's softirq is doing, before an skb has an rx_times entry
 * (ip_rcv up to ip_local_deliver), and which skb a running tcp_v4_rcv or
 * nf_hook_slow belongs to, for kretprobes (they do not see arguments).
 * Softirqs do not nest on a CPU, so one slot of each suffices. */
struct rx_cpu {
	__u64 rcv_skb;   /* skb inside this CPU's ip_rcv */
	__u64 rcv_ts;    /* its ip_rcv entry */
	__u64 rcv_nf_ns; /* its PRE_ROUTING netfilter time and passes */
	__u32 rcv_nf_count;
	__u8 rcv_tracked; /* it was received in an enrolled namespace */
	__u8 rcv_local;   /* it reached ip_local_deliver: rx_times has it */
	__u8 nf_pre;      /* the running nf_hook_slow is a PRE_ROUTING one */
	__u8 _pad;
	__u64 l4_skb; /* skb of the running tcp_v4_rcv, if tracked */
	__u64 nf_skb; /* skb of the running nf_hook_slow, if tracked */
	__u64 nf_ts;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rx_cpu);
} rx_cpus SEC(".maps");

static __always_inline struct rx_cpu *rx_cpu(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&rx_cpus, &zero);
}

/* Received in an enrolled namespace (the device's, as the base tier's
 * netif_receive_skb program checks). */
static __always_inline bool rx_enrolled(struct net_device *dev)
{
	__u64 ino;

	if (!dev)
		return false;
	ino = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	return bpf_map_lookup_elem(&enrolled_netns, &ino) != NULL;
}

/* ip_rcv / ipv6_rcv entry: remember the skb and whether it is tracked, so
 * the later hooks need not look its namespace up again. */
static __always_inline void rx_rcv_enter(struct sk_buff *skb, struct net_device *dev)
{
	struct rx_cpu *c = rx_cpu();

	if (!c)
		return;
	c->rcv_skb = (__u64)skb;
	c->rcv_tracked = rx_enrolled(dev);
	c->rcv_ts = bpf_ktime_get_ns();
	c->rcv_nf_ns = 0;
	c->rcv_nf_count = 0;
	c->rcv_local = 0;
}

/* ip_rcv / ipv6_rcv exit: the skb left L3 (delivered, forwarded, dropped). */
static __always_inline void rx_rcv_exit(__u64 skb, bool know_skb)
{
	struct rx_cpu *c = rx_cpu();

	if (c && (!know_skb || c->rcv_skb == skb))
		c->rcv_skb = 0;
}

/* ip_local_deliver / ip6_input entry: the skb is for this host. */
static __always_inline void rx_local_enter(struct sk_buff *skb)
{
	struct rx_cpu *c = rx_cpu();
	struct rx_times t = {};
	__u64 key = (__u64)skb;
	__u64 now = bpf_ktime_get_ns();

	if (c && c->rcv_skb == key) {
		if (!c->rcv_tracked || c->rcv_local)
			return;
		t.have_recv = 1;
		t.recv_ns = now - c->rcv_ts;
		t.nf_ns = c->rcv_nf_ns;
		t.nf_count = c->rcv_nf_count;
		c->rcv_local = 1;
	} else if (!rx_enrolled(BPF_CORE_READ(skb, dev))) {
		return; /* not from ip_rcv (ip_list_rcv): look the namespace up */
	}
	t.local_ts = now;
	t.stage = RX_LOCAL;
	if (bpf_map_update_elem(&rx_times, &key, &t, BPF_ANY))
		count(DROP_RX_TIMES_MAP_FULL);
}

/* tcp_v4_rcv / tcp_v6_rcv entry: L3 ends, L4 begins. */
static __always_inline void rx_l4_enter(struct sk_buff *skb)
{
	struct rx_cpu *c = rx_cpu();
	__u64 key = (__u64)skb;
	struct rx_times *t = bpf_map_lookup_elem(&rx_times, &key);
	__u64 now;

	if (c)
		c->l4_skb = 0;
	if (!t || t->stage != RX_LOCAL)
		return;
	now = bpf_ktime_get_ns();
	t->local_ns = now - t->local_ts;
	t->l4_ts = now;
	t->stage = RX_L4;
	if (c)
		c->l4_skb = key;
}

static __always_inline void rx_l4_exit(__u64 skb, bool know_skb)
{
	struct rx_times *t;

	if (!know_skb) {
		struct rx_cpu *c = rx_cpu();

		if (!c || !c->l4_skb)
			return;
		skb = c->l4_skb;
		c->l4_skb = 0;
	}
	/* Past RX_L4 when a reader on another CPU already copied from it. */
	t = bpf_map_lookup_elem(&rx_times, &skb);
	if (!t || t->stage != RX_L4)
		return;
	t->l4_ns = bpf_ktime_get_ns() - t->l4_ts;
	t->stage = RX_DONE;
}

/* nf_hook_slow entry on a tracked skb on its way up: PRE_ROUTING while in
 * ip_rcv (no entry yet: kept per CPU), LOCAL_IN once it has one. Other
 * calls (send paths, untracked skbs) leave the slot alone, so a nested
 * pass never clobbers the outer one (fexit matches by skb). */
static __always_inline void rx_nf_enter(struct sk_buff *skb)
{
	struct rx_cpu *c = rx_cpu();
	__u64 key = (__u64)skb;
	struct rx_times *t;

	if (!c)
		return;
	if (c->rcv_skb == key && c->rcv_tracked && !c->rcv_local) {
		c->nf_pre = 1;
	} else {
		t = bpf_map_lookup_elem(&rx_times, &key);
		if (!t || t->stage != RX_LOCAL)
			return;
		c->nf_pre = 0;
	}
	c->nf_skb = key;
	c->nf_ts = bpf_ktime_get_ns();
}

static __always_inline void rx_nf_exit(__u64 skb, bool know_skb)
{
	struct rx_cpu *c = rx_cpu();
	struct rx_times *t;
	__u64 d;

	if (!c || !c->nf_skb || (know_skb && c->nf_skb != skb))
		return;
	skb = c->nf_skb;
	c->nf_skb = 0;
	d = bpf_ktime_get_ns() - c->nf_ts;
	if (c->nf_pre) {
		if (c->rcv_skb == skb && c->rcv_tracked && !c->rcv_local) {
			c->rcv_nf_ns += d;
			c->rcv_nf_count++;
		}
		return;
	}
	t = bpf_map_lookup_elem(&rx_times, &skb);
	if (t && t->stage == RX_LOCAL) {
		t->nf_ns += d;
		t->nf_count++;
	}
}

/* What a read claims once this tier has timed every skb it copied from. */
#define TIER_RECV_METRICS (METRIC_L4_DURATION | METRIC_L3_DURATION | METRIC_L3_SPLIT | METRIC_NETFILTER)
#define TIER_RECV_L3 (METRIC_L3_DURATION | METRIC_L3_SPLIT | METRIC_NETFILTER)

/*
 * The reader copies from skb: add its times to the thread's receive
 * syscall, once per skb (the entry is marked RX_COPIED; within one read,
 * the copy loop's further calls for the same skb are skipped by rx_skb).
 * The base tier's program on the same tracepoint keeps its own per-skb
 * state (r.last_skb) and never reads what this one writes before the
 * syscall's exit, so the order the two run in does not matter.
 */
SEC("tp_btf/skb_copy_datagram_iovec")
int BPF_PROG(tier_skb_copy, const struct sk_buff *skb, int len)
{
	struct syscall_args *a;
	__u64 key = (__u64)skb;
	__u32 missing = TIER_RECV_METRICS;
	struct rx_times *t;
	struct sock *sk = skb->sk;

	if (socket_tier) {
		/* The read's op window: the base object's on_skb_copy opens it
		 * at the first copy, or this does if it runs first (the order
		 * of two programs on one tracepoint is not a contract). */
		if (!sk)
			return 0;
		a = tier_window((__u64)sk, sk->__sk_common.skc_net.net->ns.inum, SYS_RECVMSG, false);
		if (!a)
			return 0;
		goto copy;
	}
	a = current_args();
	if (!a || a->sk != (__u64)sk)
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
copy:
	if (a->rx_skb == key)
		return 0;
	a->rx_skb = key;
	t = bpf_map_lookup_elem(&rx_times, &key);
	if (t && t->stage == RX_COPIED) {
		missing = 0; /* an earlier read took its times */
	} else if (t) {
		if (t->have_recv && t->stage >= RX_L4) {
			a->r.l3_recv_ns += t->recv_ns;
			a->r.l3_local_ns += t->local_ns;
			a->r.l3_ns += t->recv_ns + t->local_ns;
			a->r.nf_ns += t->nf_ns;
			a->r.nf_count += t->nf_count;
			missing &= ~TIER_RECV_L3;
		}
		if (t->stage == RX_DONE) {
			a->r.l4_ns += t->l4_ns;
			missing &= ~METRIC_L4_DURATION;
		}
		t->stage = RX_COPIED;
	}
	if (missing) {
		a->rx_missing |= missing;
		count(DROP_RX_UNTIMED);
	}
	a->r.measured = TIER_RECV_METRICS & ~a->rx_missing;
	return 0;
}

/* ---- fentry tier ---------------------------------------------------------- */

SEC("fentry/tcp_sendmsg")
int BPF_PROG(fentry_tcp_sendmsg, struct sock *sk)
{
	l4_enter(sk, socket_tier ? sk->__sk_common.skc_net.net->ns.inum : 0);
	return 0;
}

SEC("fexit/tcp_sendmsg")
int BPF_PROG(fexit_tcp_sendmsg, struct sock *sk)
{
	l4_exit((__u64)sk, true);
	return 0;
}

SEC("fentry/__ip_queue_xmit")
int BPF_PROG(fentry_ip_queue_xmit, struct sock *sk)
{
	l3_enter(sk);
	return 0;
}

SEC("fexit/__ip_queue_xmit")
int BPF_PROG(fexit_ip_queue_xmit, struct sock *sk)
{
	l3_exit((__u64)sk, true);
	return 0;
}

SEC("fentry/nf_hook_slow")
int BPF_PROG(fentry_nf_hook_slow, struct sk_buff *skb)
{
	skb_enter(skb, false);
	rx_nf_enter(skb);
	return 0;
}

SEC("fexit/nf_hook_slow")
int BPF_PROG(fexit_nf_hook_slow, struct sk_buff *skb)
{
	nf_exit((__u64)skb, true);
	rx_nf_exit((__u64)skb, true);
	return 0;
}

SEC("fentry/neigh_resolve_output")
int BPF_PROG(fentry_neigh_resolve_output, struct neighbour *n, struct sk_buff *skb)
{
	skb_enter(skb, true);
	return 0;
}

SEC("fexit/neigh_resolve_output")
int BPF_PROG(fexit_neigh_resolve_output, struct neighbour *n, struct sk_buff *skb)
{
	arp_exit((__u64)skb, true);
	return 0;
}

/* ---- kprobe tier: the same, for kernels without BPF trampolines ---------- */

SEC("kprobe/tcp_sendmsg")
int BPF_KPROBE(kprobe_tcp_sendmsg, struct sock *sk)
{
	l4_enter(sk, socket_tier ? BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum) : 0);
	return 0;
}

SEC("kretprobe/tcp_sendmsg")
int BPF_KRETPROBE(kretprobe_tcp_sendmsg)
{
	l4_exit(0, false);
	return 0;
}

SEC("kprobe/__ip_queue_xmit")
int BPF_KPROBE(kprobe_ip_queue_xmit, struct sock *sk)
{
	l3_enter(sk);
	return 0;
}

SEC("kretprobe/__ip_queue_xmit")
int BPF_KRETPROBE(kretprobe_ip_queue_xmit)
{
	l3_exit(0, false);
	return 0;
}

SEC("kprobe/nf_hook_slow")
int BPF_KPROBE(kprobe_nf_hook_slow, struct sk_buff *skb)
{
	skb_enter(skb, false);
	rx_nf_enter(skb);
	return 0;
}

SEC("kretprobe/nf_hook_slow")
int BPF_KRETPROBE(kretprobe_nf_hook_slow)
{
	nf_exit(0, false);
	rx_nf_exit(0, false);
	return 0;
}

SEC("kprobe/neigh_resolve_output")
int BPF_KPROBE(kprobe_neigh_resolve_output, struct neighbour *n, struct sk_buff *skb)
{
	skb_enter(skb, true);
	return 0;
}

SEC("kretprobe/neigh_resolve_output")
int BPF_KRETPROBE(kretprobe_neigh_resolve_output)
{
	arp_exit(0, false);
	return 0;
}

/* ---- receive path, fentry tier -------------------------------------------- */

SEC("fentry/ip_rcv")
int BPF_PROG(fentry_ip_rcv, struct sk_buff *skb, struct net_device *dev)
{
	rx_rcv_enter(skb, dev);
	return 0;
}

SEC("fexit/ip_rcv")
int BPF_PROG(fexit_ip_rcv, struct sk_buff *skb)
{
	rx_rcv_exit((__u64)skb, true);
	return 0;
}

SEC("fentry/ipv6_rcv")
int BPF_PROG(fentry_ipv6_rcv, struct sk_buff *skb, struct net_device *dev)
{
	rx_rcv_enter(skb, dev);
	return 0;
}

SEC("fexit/ipv6_rcv")
int BPF_PROG(fexit_ipv6_rcv, struct sk_buff *skb)
{
	rx_rcv_exit((__u64)skb, true);
	return 0;
}

SEC("fentry/ip_local_deliver")
int BPF_PROG(fentry_ip_local_deliver, struct sk_buff *skb)
{
	rx_local_enter(skb);
	return 0;
}

SEC("fentry/ip6_input")
int BPF_PROG(fentry_ip6_input, struct sk_buff *skb)
{
	rx_local_enter(skb);
	return 0;
}

SEC("fentry/tcp_v4_rcv")
int BPF_PROG(fentry_tcp_v4_rcv, struct sk_buff *skb)
{
	rx_l4_enter(skb);
	return 0;
}

SEC("fexit/tcp_v4_rcv")
int BPF_PROG(fexit_tcp_v4_rcv, struct sk_buff *skb)
{
	rx_l4_exit((__u64)skb, true);
	return 0;
}

SEC("fentry/tcp_v6_rcv")
int BPF_PROG(fentry_tcp_v6_rcv, struct sk_buff *skb)
{
	rx_l4_enter(skb);
	return 0;
}

SEC("fexit/tcp_v6_rcv")
int BPF_PROG(fexit_tcp_v6_rcv, struct sk_buff *skb)
{
	rx_l4_exit((__u64)skb, true);
	return 0;
}

/* ---- receive path, kprobe tier -------------------------------------------- */

SEC("kprobe/ip_rcv")
int BPF_KPROBE(kprobe_ip_rcv, struct sk_buff *skb, struct net_device *dev)
{
	rx_rcv_enter(skb, dev);
	return 0;
}

SEC("kretprobe/ip_rcv")
int BPF_KRETPROBE(kretprobe_ip_rcv)
{
	rx_rcv_exit(0, false);
	return 0;
}

SEC("kprobe/ipv6_rcv")
int BPF_KPROBE(kprobe_ipv6_rcv, struct sk_buff *skb, struct net_device *dev)
{
	rx_rcv_enter(skb, dev);
	return 0;
}

SEC("kretprobe/ipv6_rcv")
int BPF_KRETPROBE(kretprobe_ipv6_rcv)
{
	rx_rcv_exit(0, false);
	return 0;
}

SEC("kprobe/ip_local_deliver")
int BPF_KPROBE(kprobe_ip_local_deliver, struct sk_buff *skb)
{
	rx_local_enter(skb);
	return 0;
}

SEC("kprobe/ip6_input")
int BPF_KPROBE(kprobe_ip6_input, struct sk_buff *skb)
{
	rx_local_enter(skb);
	return 0;
}

SEC("kprobe/tcp_v4_rcv")
int BPF_KPROBE(kprobe_tcp_v4_rcv, struct sk_buff *skb)
{
	rx_l4_enter(skb);
	return 0;
}

SEC("kretprobe/tcp_v4_rcv")
int BPF_KRETPROBE(kretprobe_tcp_v4_rcv)
{
	rx_l4_exit(0, false);
	return 0;
}

SEC("kprobe/tcp_v6_rcv")
int BPF_KPROBE(kprobe_tcp_v6_rcv, struct sk_buff *skb)
{
	rx_l4_enter(skb);
	return 0;
}

SEC("kretprobe/tcp_v6_rcv")
int BPF_KRETPROBE(kretprobe_tcp_v6_rcv)
{
	rx_l4_exit(0, false);
	return 0;
}
