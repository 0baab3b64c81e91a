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
 * thread's inflight entry; exit programs add the elapsed time. None of
 * these functions nests into itself on one thread, so one stamp each is
 * enough.
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
	if (arp)
		a->arp_ts = bpf_ktime_get_ns();
	else
		a->nf_ts = bpf_ktime_get_ns();
}

/* Exits only know the thread: its inflight entry (current_args) holds the
 * stamp. */

static __always_inline void l4_exit(void)
{
	struct syscall_args *a = current_args();

	if (a && a->l4_ts) {
		a->m.l4_ns += bpf_ktime_get_ns() - a->l4_ts;
		a->l4_ts = 0;
	}
}

static __always_inline void l3_exit(void)
{
	struct syscall_args *a = current_args();

	if (a && a->l3_ts) {
		a->m.l3_ns += bpf_ktime_get_ns() - a->l3_ts;
		a->l3_ts = 0;
	}
}

static __always_inline void nf_exit(void)
{
	struct syscall_args *a = current_args();

	if (a && a->nf_ts) {
		a->m.nf_ns += bpf_ktime_get_ns() - a->nf_ts;
		a->m.nf_count++;
		a->nf_ts = 0;
	}
}

static __always_inline void arp_exit(void)
{
	struct syscall_args *a = current_args();

	if (a && a->arp_ts) {
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
int BPF_PROG(fexit_tcp_sendmsg)
{
	l4_exit();
	return 0;
}

SEC("fentry/__ip_queue_xmit")
int BPF_PROG(fentry_ip_queue_xmit, struct sock *sk)
{
	l3_enter(sk);
	return 0;
}

SEC("fexit/__ip_queue_xmit")
int BPF_PROG(fexit_ip_queue_xmit)
{
	l3_exit();
	return 0;
}

SEC("fentry/nf_hook_slow")
int BPF_PROG(fentry_nf_hook_slow, struct sk_buff *skb)
{
	skb_enter(skb, false);
	return 0;
}

SEC("fexit/nf_hook_slow")
int BPF_PROG(fexit_nf_hook_slow)
{
	nf_exit();
	return 0;
}

SEC("fentry/neigh_resolve_output")
int BPF_PROG(fentry_neigh_resolve_output, struct neighbour *n, struct sk_buff *skb)
{
	skb_enter(skb, true);
	return 0;
}

SEC("fexit/neigh_resolve_output")
int BPF_PROG(fexit_neigh_resolve_output)
{
	arp_exit();
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
	l4_exit();
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
	l3_exit();
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
	nf_exit();
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
	arp_exit();
	return 0;
}
