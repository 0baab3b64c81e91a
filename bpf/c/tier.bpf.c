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
 * it is inside a send syscall on the same socket. Entry programs stamp the
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
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "inflight.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* What a send syscall gets measured once this tier sees it enter
 * tcp_sendmsg: a function that was never called (no netfilter rule, no
 * ARP) counted zero, which is a measurement. */
#define TIER_METRICS (METRIC_L4_DURATION | METRIC_L3_DURATION | METRIC_NETFILTER | METRIC_RESOLVE_MAC)

static __always_inline void l4_enter(struct sock *sk)
{
	struct syscall_args *a = send_of((__u64)sk);

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

/* ---- fentry tier ---------------------------------------------------------- */

SEC("fentry/tcp_sendmsg")
int BPF_PROG(fentry_tcp_sendmsg, struct sock *sk)
{
	l4_enter(sk);
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
	return 0;
}

SEC("fexit/nf_hook_slow")
int BPF_PROG(fexit_nf_hook_slow, struct sk_buff *skb)
{
	nf_exit((__u64)skb, true);
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
	l4_enter(sk);
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
	return 0;
}

SEC("kretprobe/nf_hook_slow")
int BPF_KRETPROBE(kretprobe_nf_hook_slow)
{
	nf_exit(0, false);
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
