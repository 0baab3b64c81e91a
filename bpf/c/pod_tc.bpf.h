// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
/*
 * Part of capture.bpf.c, included by it once (not a standalone header).
 *
 * Per-pod device counters: TC programs attached to each enrolled pod's host veth.
 */

/* ---- per-pod device counters (TC on the pod's host veth) ------------------
 *
 * Attached per pod by user space, through TCX where the kernel has it and
 * a clsact qdisc with a direct-action cls_bpf filter otherwise. They count
 * what passes the host veth and never change a verdict: TC_ACT_UNSPEC is
 * "next program" for TCX and "continue" for cls_bpf. They see packets, not
 * drops: a packet dropped later on the path (netfilter, a full queue) was
 * counted here; drops come from kfree_skb (pod_drops).
 */
static __always_inline int count_dev(struct __sk_buff *skb, __u32 ingress)
{
	struct dev_key k = {.ifindex = skb->ifindex, .ingress = ingress};
	struct dev_counters *c = bpf_map_lookup_elem(&pod_dev, &k);

	if (c) {
		c->packets++;
		c->bytes += skb->len;
	}
	return -1; /* TC_ACT_UNSPEC / TCX_NEXT */
}

SEC("tc")
int tc_pod_ingress(struct __sk_buff *skb)
{
	return count_dev(skb, 1);
}

SEC("tc")
int tc_pod_egress(struct __sk_buff *skb)
{
	return count_dev(skb, 0);
}
