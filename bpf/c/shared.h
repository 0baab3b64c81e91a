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

/*
 * A filter in front of enrolled_netns: bit (inode % 4096) is set for every
 * enrolled namespace (user space sets it before the hash entry and clears
 * it after the last namespace that maps to it is gone). Array lookups are
 * inlined by the verifier, so a namespace whose bit is clear -- nearly
 * every unenrolled one while few pods are enrolled -- is turned away with a
 * few loads, no helper call. That is the gate every syscall (syscall tier),
 * socket op (socket tier) and received packet of the node passes; calls
 * are what costs there (a return is slow under the SRSO mitigation).
 * Hooks that only gather numbers for a later exact decision (op windows,
 * receive stamps) use the bits alone: a namespace that shares a bit with
 * an enrolled one (inodes 4096 apart) costs them work nobody reads.
 */
#define NETNS_BITS_WORDS 64

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NETNS_BITS_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} netns_bits SEC(".maps");

/* Whether namespace ino may be enrolled: false means it is not. */
static __always_inline __attribute__((unused)) bool netns_maybe_enrolled(__u64 ino)
{
	__u32 k = (ino >> 6) & (NETNS_BITS_WORDS - 1);
	__u64 *w = bpf_map_lookup_elem(&netns_bits, &k);

	return w && ((*w >> (ino & 63)) & 1);
}

static __always_inline void count(__u32 reason)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &reason);

	if (v)
		*v += 1; /* per-CPU slot: no atomics needed */
}

#endif /* WEIR_SHARED_H */
