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

/* Arguments of an in-flight syscall, keyed by pid_tgid (one syscall per
 * thread at a time). LRU so a thread killed inside a syscall leaks nothing. */
struct syscall_args {
	__u64 start_ns;
	__u64 sk;       /* struct sock * of fd, resolved at enter */
	__u64 buf;      /* buffer, iovec array, msghdr or mmsghdr vector */
	__u64 netns;
	__u32 count;    /* iovcnt or vlen */
	__s32 fd;
	__u32 pod_id;
	__u8 syscall;
	__u8 _pad[3];
	__u8 addr[28];  /* connect: the sockaddr asked for */
	__u32 _pad2;
	/* Send syscalls: what the tracepoints saw happen to this socket's
	 * skbs on this thread while the syscall ran (see the metrics section). */
	__u64 cur_skb;   /* the packet now in the device path */
	__u64 queue_ts;  /* its net_dev_queue */
	__u64 start_ts;  /* its net_dev_start_xmit */
	/* Richer tiers: entry times of the functions being timed. */
	__u64 l4_ts, l3_ts, nf_ts, arp_ts;
	struct send_metrics m;
	struct recv_metrics r; /* receive syscalls */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct syscall_args);
} inflight SEC(".maps");

/* The in-flight send syscall of the current thread, if it is on sk. */
static __always_inline __attribute__((unused)) struct syscall_args *send_of(__u64 sk)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct syscall_args *a;

	if (!sk)
		return NULL;
	a = bpf_map_lookup_elem(&inflight, &id);
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
