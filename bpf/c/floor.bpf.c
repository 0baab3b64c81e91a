// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
/*
 * The capture floor: test equipment for `make bench` (tests/bench, part
 * "floor"), never loaded by Weir. Go side: package bpf/floor.
 *
 * What does any payload capture at sock:sock_send_length and
 * sock:sock_recv_length have to pay on this kernel, whatever else it does?
 * These programs do only that, so the bench can put Weir's own socket ops
 * next to them in the same run:
 *
 *   - the gate: the socket's network namespace looked up in an exact set
 *     (one hash lookup), TCP only, a positive result, no MSG_PEEK;
 *   - the user buffer, found from the syscall's saved registers
 *     (bpf_task_pt_regs): write/read/sendto/recvfrom name it directly,
 *     writev/readv name an iovec array, sendmsg/recvmsg a msghdr;
 *   - one ring buffer record reserved in place (a size class), the
 *     payload read straight into it with bpf_probe_read_user, a minimal
 *     header (socket, thread, direction, sizes), submitted without waking
 *     the reader (as Weir does: a wakeup is an IPI).
 *
 * Nothing else: no connection state, no clock, no metrics, no protocol
 * walk. At most FLOOR_MAX_IOV segments and the first FLOOR_BIG bytes of
 * an op are copied; other syscalls reaching the socket (sendfile, splice,
 * mmsg, io_uring) are skipped, not read.
 *
 * The empty_* programs do nothing at all on the same hooks (and two
 * per-packet ones): the dispatch floor, what bpf_stats charges a program
 * run that returns at once.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define MSG_PEEK 0x2
#define PF_KTHREAD 0x00200000
#define FLOOR_MAX_IOV 4
/* Record size classes: most HTTP messages fit the small one. */
#define FLOOR_SMALL 256
#define FLOOR_BIG 4096

/* x86-64 syscall numbers (built for x86-64 only). */
#define NR_READ 0
#define NR_WRITE 1
#define NR_READV 19
#define NR_WRITEV 20
#define NR_SENDTO 44
#define NR_RECVFROM 45
#define NR_SENDMSG 46
#define NR_RECVMSG 47

/* The header of every record; len payload bytes follow it (copied of
 * them, the rest of the op not copied). Shared with Go by bpf2go. */
struct floor_record {
	__u64 sk;
	__u32 tid;
	__u32 dir; /* 0 send, 1 receive */
	__u32 len;
	__u32 copied;
};

/* Keeps floor_record in the object's BTF for bpf2go -type. */
const struct floor_record *unused_floor_record __attribute__((unused));

/* The record as reserved: the payload area is twice the class so the
 * verifier can bound a segment at any offset below the class (it does
 * not relate offset and length); the second half is never written. */
#define FLOOR_REC(n)                   \
	struct floor_rec_##n {         \
		struct floor_record h; \
		__u8 data[2 * (n)];    \
	}
FLOOR_REC(FLOOR_SMALL);
FLOOR_REC(FLOOR_BIG);

/* netns inode -> 1, written by the bench for the namespaces it measures. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u8);
} floor_netns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} floor_ring SEC(".maps");

/* Records the ring had no room for, per CPU: the bench reports them. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} floor_lost SEC(".maps");

/* Copies up to cap bytes of the op's segments (iov, or the one buffer
 * when iov is 0) into data. cap is a compile-time class after inlining. */
static __always_inline __u32 floor_copy(__u8 *data, __u32 cap, __u64 buf, __u64 iov, __u32 niov, __u32 want)
{
	struct iovec v[FLOOR_MAX_IOV];
	__u32 off = 0, n;

	if (!iov) {
		n = want < cap ? want : cap;
		if (bpf_probe_read_user(data, n, (const void *)buf))
			return 0;
		return n;
	}
	if (niov > FLOOR_MAX_IOV)
		niov = FLOOR_MAX_IOV;
	if (!niov || bpf_probe_read_user(v, sizeof(v[0]) * niov, (const void *)iov))
		return 0;
	for (int i = 0; i < FLOOR_MAX_IOV; i++) {
		if (i >= niov || off >= want || off >= cap)
			break;
		n = v[i].iov_len;
		if (n > want - off)
			n = want - off;
		if (n > cap - off)
			n = cap - off;
		if (n > cap) /* for the verifier: off < cap and n <= cap */
			n = cap;
		if (n && bpf_probe_read_user(data + (off & (cap - 1)), n, v[i].iov_base))
			break;
		off += n;
	}
	return off;
}

static __always_inline void floor_lose(void)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&floor_lost, &k);

	if (v)
		*v += 1;
}

/* Reserves a record of class n, fills it, submits it. */
#define FLOOR_EMIT(n)                                                                      \
	do {                                                                               \
		struct floor_rec_##n *r = bpf_ringbuf_reserve(&floor_ring, sizeof(*r), 0); \
		if (!r) {                                                                  \
			floor_lose();                                                      \
			return 0;                                                          \
		}                                                                          \
		r->h.sk = (__u64)sk;                                                       \
		r->h.tid = t->pid;                                                         \
		r->h.dir = dir;                                                            \
		r->h.len = ret;                                                            \
		r->h.copied = floor_copy(r->data, n, buf, iov, niov, ret);                 \
		bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);                                   \
	} while (0)

static __always_inline int floor_io(struct sock *sk, int ret, int flags, __u32 dir)
{
	__u64 ino = sk->__sk_common.skc_net.net->ns.inum, nr, buf, cnt, iov = 0;
	struct task_struct *t;
	struct pt_regs *regs;
	struct user_msghdr m;
	__u32 niov = 0;

	if (!bpf_map_lookup_elem(&floor_netns, &ino))
		return 0;
	if (ret <= 0 || sk->sk_protocol != IPPROTO_TCP || (dir && (flags & MSG_PEEK)))
		return 0;
	t = bpf_get_current_task_btf();
	if (t->flags & PF_KTHREAD)
		return 0;
	regs = (struct pt_regs *)bpf_task_pt_regs(t);
	if (!regs)
		return 0;
	nr = regs->orig_ax;
	buf = regs->si;
	/* Loaded here, not in its case: clang would otherwise merge the loads
	 * of dx (readv) and of the msghdr on the stack (recvmsg) into one
	 * instruction, which the verifier refuses. */
	cnt = regs->dx;
	barrier_var(cnt);
	switch (nr) {
	case NR_READ:
	case NR_WRITE:
	case NR_SENDTO:
	case NR_RECVFROM:
		break;
	case NR_READV:
	case NR_WRITEV:
		iov = buf;
		niov = cnt;
		break;
	case NR_SENDMSG:
	case NR_RECVMSG:
		if (bpf_probe_read_user(&m, sizeof(m), (const void *)buf))
			return 0;
		iov = (__u64)m.msg_iov;
		niov = m.msg_iovlen;
		break;
	default:
		return 0;
	}
	if (ret <= FLOOR_SMALL)
		FLOOR_EMIT(FLOOR_SMALL);
	else
		FLOOR_EMIT(FLOOR_BIG);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(floor_send, struct sock *sk, int ret, int flags)
{
	return floor_io(sk, ret, flags, 0);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(floor_recv, struct sock *sk, int ret, int flags)
{
	return floor_io(sk, ret, flags, 1);
}

/* The dispatch floor: programs that return at once. */
SEC("tp_btf/sock_send_length")
int BPF_PROG(empty_send)
{
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(empty_recv)
{
	return 0;
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(empty_dev_queue)
{
	return 0;
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(empty_netif_rcv)
{
	return 0;
}
