/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * The per-thread state of an in-flight syscall, shared by the base tier
 * (capture.bpf.c, which owns the map) and the richer tiers (tier.bpf.c,
 * loaded with the base collection's map in place of its own): both add
 * what they measure to the same syscall's metrics.
 */
#ifndef WEIR_INFLIGHT_H
#define WEIR_INFLIGHT_H

#include "capture.h"

/*
 * Arguments of the current thread's in-flight syscall, in task-local
 * storage: a thread runs one syscall at a time, and the storage goes away
 * with the thread, so nothing can leak. It was an LRU hash keyed by
 * pid_tgid; an update and a delete of that map on every monitored syscall
 * cost more than the rest of the filter, while task storage is a pointer
 * away from current. A slot is in flight while syscall is not SYS_UNKNOWN.
 */
struct syscall_args {
	__u64 start_ns;
	__u64 sk;  /* struct sock * of fd, resolved at enter */
	__u64 buf; /* buffer, iovec array, msghdr or mmsghdr vector */
	__u64 netns;
	__u32 count; /* iovcnt or vlen */
	__s32 fd;
	__u32 pod_id;
	__u8 syscall;
	__u8 window; /* socket tier: the metrics below are an op window's */
	__u8 _pad[2];
	__u8 addr[28]; /* connect: the sockaddr asked for */
	__u32 _pad2;
	/* Send syscalls: what the tracepoints saw happen to this socket's
	 * skbs on this thread while the syscall ran (see the metrics section). */
	__u64 cur_skb;  /* the packet now in the device path */
	__u64 queue_ts; /* its net_dev_queue */
	__u64 start_ts; /* its net_dev_start_xmit */
	/* Richer tiers: entry times of the functions being timed, and the
	 * packets netfilter and neighbour resolution are timed for (an exit
	 * matches its entry by the skb pointer: the skb itself may be gone). */
	__u64 l4_ts, l3_ts, nf_ts, arp_ts;
	__u64 nf_skb, arp_skb;
	/* Richer tiers, receive syscalls: the last skb whose receive times
	 * were added (partial copies count once), and the METRIC_* bits some
	 * copied skb lacked, which the read then does not claim. */
	__u64 rx_skb;
	__u32 rx_missing;
	__u32 _pad3;
	/* A syscall sends or receives, never both: every writer of m checks
	 * for a send syscall (send_of, or a cur_skb/timestamp only a send set),
	 * every writer of r for a receive syscall. Sharing the space keeps the
	 * struct small enough for the exit programs that copy it to the stack. */
	union {
		struct send_metrics m;
		struct recv_metrics r; /* receive syscalls */
	};
};

#define OP_METRICS_SIZE                                                                            \
	(sizeof(struct send_metrics) > sizeof(struct recv_metrics) ? sizeof(struct send_metrics) : \
								     sizeof(struct recv_metrics))

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct syscall_args);
} inflight SEC(".maps");

/* Thread t's inflight slot, or NULL; never creates one. A thread with no
 * task storage at all (every thread that never used an enrolled socket,
 * unless another BPF user gave it some) is told apart by a plain load,
 * without the helper call: the hooks that use this run for every packet
 * and thread on the node. */
static __always_inline __attribute__((unused)) struct syscall_args *inflight_of(struct task_struct *t)
{
	if (!t->bpf_storage)
		return NULL;
	return bpf_task_storage_get(&inflight, t, 0, 0);
}

/* The current thread's in-flight syscall, or NULL. Never creates storage. */
static __always_inline __attribute__((unused)) struct syscall_args *current_args(void)
{
	struct syscall_args *a = inflight_of(bpf_get_current_task_btf());

	if (!a || a->syscall == SYS_UNKNOWN)
		return NULL;
	return a;
}

/*
 * Socket capture tier: opens an op window on slot a -- the per-operation
 * state the per-packet hooks and the richer tier's hooks add to, as they
 * do to a syscall tier's in-flight syscall (label is SYS_SENDMSG for a
 * send, SYS_RECVMSG for a receive; sock_io closes it). Shared by the base
 * object (op_window) and the richer tier (tier.bpf.c), whichever of their
 * hooks sees the op first, so both reset the same fields: everything a
 * hook accumulates or matches on, not the payload fields sock_io fills.
 */
static __always_inline __attribute__((unused)) void window_open(struct syscall_args *a, __u64 sk, __u8 label,
								__u64 now)
{
	a->sk = sk;
	a->syscall = label;
	a->start_ns = now;
	a->cur_skb = a->queue_ts = a->start_ts = 0;
	a->l4_ts = a->l3_ts = a->nf_ts = a->arp_ts = 0;
	a->nf_skb = a->arp_skb = a->rx_skb = 0;
	a->rx_missing = 0;
	__builtin_memset(&a->m, 0, OP_METRICS_SIZE);
}

/* The in-flight send syscall of the current thread, if it is on sk. */
static __always_inline __attribute__((unused)) struct syscall_args *send_of(__u64 sk)
{
	struct syscall_args *a;

	if (!sk)
		return NULL;
	a = current_args();
	if (!a || a->sk != sk)
		return NULL;
	switch (a->syscall) {
	case SYS_WRITE:
	case SYS_WRITEV:
	case SYS_SENDTO:
	case SYS_SENDMSG:
	case SYS_SENDMMSG:
	case SYS_SENDFILE:
		return a;
	}
	return NULL;
}

#endif /* WEIR_INFLIGHT_H */
