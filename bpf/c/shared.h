/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * Maps the base tier (capture.bpf.c) owns and the richer tier (tier.bpf.c)
 * reuses: user space loads the tier with the base collection's maps in
 * place of these (MapReplacements), so both tiers see one set of enrolled
 * namespaces and count into one set of counters. Defined once here so the
 * two definitions cannot drift apart (a replacement must match exactly).
 */
#ifndef WEIR_SHARED_H
#define WEIR_SHARED_H

#include "capture.h"

/* netns inode -> pod id, written by user space at enrollment. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u32);
} enrolled_netns SEC(".maps");

/* Drop counters, indexed by enum drop_reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 reason)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &reason);

	if (v)
		*v += 1; /* per-CPU slot: no atomics needed */
}

#endif /* WEIR_SHARED_H */
