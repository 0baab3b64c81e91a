// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
/*
 * Weir's capture core, base tier: what every kernel with BTF and tracepoints
 * can run, including kernels in lockdown with neither kprobes nor fentry.
 * This file holds the load-time knobs, the maps and the shared helpers; the
 * programs are in the files it includes at its end, one per concern (data
 * events and the HTTP/2 walker, the syscall tier, the socket tier, kernel
 * metrics, process lifecycle, per-pod TC counters).
 *
 * Who is monitored: a socket or thread whose network namespace is enrolled
 * (its inode is a key of enrolled_netns, mirrored in the netns_bits bitmap
 * for a helper-free first check). The socket tier (the default) checks the
 * socket's namespace at each socket operation; the syscall tier checks the
 * calling thread's at each syscall enter. Both are exact across fork, setns
 * (ip netns exec), unshare and threads, need no user-space round trip, and so
 * cover a process from its first instruction. The sched_process_{fork,exec,
 * exit} programs do not filter anything; they report process lifecycle (so
 * user space can name processes) and keep a small tid -> pod map that still
 * answers at exit, when namespaces are being torn down.
 *
 * What is captured: TCP sockets only (IPv4 and IPv6): connection events and
 * data chunks, to one ring buffer.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>

#include "capture.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EALREADY 114
#define EINPROGRESS 115
#define EISCONN 106

/* Load-time knobs, set from Go through CollectionSpec.Variables:
 * chunk_size      1..MAX_CHUNK_SIZE;
 * capture_limit   budget per connection and direction (see report_data), 0 = unlimited;
 * capture_payload 0: events carry sizes and metrics, never payload;
 * max_frame_copy  HTTP/2 non-DATA frame payloads are copied up to this;
 * socket_tier     1: connections come from the socket tier's hooks. */
volatile const __u32 chunk_size = 4096;
volatile const __u64 capture_limit = 1ULL << 20;
volatile const __u32 capture_payload = 1;
volatile const __u32 max_frame_copy = 64 << 10;
volatile const __u8 socket_tier = 0;

/* HTTP/2 DATA payloads up to this many bytes are copied even past the
 * budget: a data event's header is about this large, so copying is cheaper
 * for the ring and the reader than splitting the event around the skip. */
#define H2_SMALL_DATA 256

/* A walk layout of report_data beyond enum syscall_id: the socket tier's
 * mmsg message reported size-only (SKIP_MMSG). */
#define WALK_MMSG_SIZE_ONLY 0xfe

/* Source of connection ids; 0 is never handed out. */
__u64 next_conn_id = 0;

/* enrolled_netns (netns inode -> pod id), its filter bits (netns_bits)
 * and the drop counters are in shared.h: the richer tier reuses them. */
#include "shared.h"

/* The pod id of network namespace ino if it is enrolled, else NULL. */
static __always_inline __u32 *enrolled_pod(__u64 ino)
{
	if (!netns_maybe_enrolled(ino))
		return NULL;
	return bpf_map_lookup_elem(&enrolled_netns, &ino);
}

/*
 * The HTTP/2 frame walker's position in one direction of a connection.
 * Frame boundaries cross syscalls and iovec segments, so this lives with the
 * connection. mode starts W_UNDECIDED and is decided by the direction's
 * first syscall (at stream offset 0): W_H2 when it starts with the client
 * preface (at least "PRI ") or a SETTINGS frame header, else W_OPAQUE for
 * good. A W_H2
 * direction whose frames stop making sense becomes W_OPAQUE too (counted as
 * h2_desync): from then on the capture budget decides, as for any unknown
 * protocol. Byte-for-byte the same decisions as the Go twin (package
 * bpf/walker), which the tests compare against this code.
 */
enum walk_mode {
	W_UNDECIDED = 0,
	W_H2 = 1,
	W_OPAQUE = 2,
};

struct walk_state {
	__u64 copy_left; /* payload bytes of the current frame still to copy */
	__u64 skip_left; /* ... then still to skip, typed skip_reason */
	__u8 mode;       /* enum walk_mode */
	__u8 hdr_have;   /* 0..8: header bytes seen; 9: in the payload */
	__u8 skip_reason;
	__u8 _pad[5];
	/* The frame header being collected (9 used; room for the verifier's
	 * bound on a read at hdr_have). */
	__u8 hdr[24];
};

/* Per-connection state, keyed by tgid << 32 | fd in the syscall tier and by
 * socket cookie in the socket tier. LRU because a process can exit without
 * closing (no close syscall then): stale entries age out, and a stale entry
 * whose socket differs from the fd's current one is replaced. */
struct conn_state {
	__u64 conn_id;
	__u64 sk;
	__u64 seq[2];      /* next Seq per direction */
	__u64 bytes[2];    /* stream offset per direction (= bytes moved) */
	__u64 captured[2]; /* payload bytes emitted per direction */
	__u8 role;
	__u8 pending; /* socket tier: open not reported yet (first I/O will) */
	__u8 closed;  /* socket tier: close reported, socket not yet gone */
	__u8 _pad[5];
	struct walk_state walk[2];
};

/* conn id -> HTTP/1 hint, written by user space (Collector.HintHTTP1,
 * SkipBody) once its parser has proved the connection is HTTP/1; deleted
 * at close. LRU: a connection whose process exited without close ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct h1_hint);
} h1_hints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct conn_state);
} conns SEC(".maps");

#include "inflight.h"

/* tid -> pod id of monitored tasks, maintained by fork/exec/exit and seeded
 * by user space's scan of already-running processes at enrollment. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u32);
} procs SEC(".maps");

/* struct sock * -> the connection it carries, for hooks that see a socket
 * but not the file descriptor: state changes and packet events run in
 * softirq or timer context, on no particular thread. Written when a
 * connection is opened, removed at close; LRU because sockets of processes
 * that exit without close are never removed explicitly. */
struct sock_conn {
	__u64 conn_id;
	__u64 start_ns; /* connect start, for the failure event */
	__s32 fd;
	__u8 role;
	__u8 connecting; /* connect returned EINPROGRESS, outcome not seen yet */
	__u8 closed;     /* socket tier: its close is reported (the entry stays
			  * until TCP_CLOSE, for drops), so later retransmits of
			  * data still queued are not reported after it */
	__u8 _pad;
	struct proc_info proc;
	struct drop_slot drops[CONN_DROP_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct sock_conn);
} socks SEC(".maps");

/* Per-pod traffic on the pod's host-side veth, written by the TC programs
 * (tc_pod_ingress/egress) that user space attaches per pod. Per CPU: no
 * atomics on the packet path. Entries are created by user space at
 * enrollment, so the programs never insert (and never fill the map). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 8192); /* two per enrolled pod */
	__type(key, struct dev_key);
	__type(value, struct dev_counters);
} pod_dev SEC(".maps");

/* Drops of pod sockets' packets by pod and kernel drop reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct pod_drop_key);
	__type(value, __u64);
} pod_drops SEC(".maps");

/*
 * State of one syscall's walk over its bytes, for the bpf_loop callback.
 * It lives in the scratch map value, not on the stack, on purpose: the
 * verifier does not track map value contents, so every iteration of the
 * callback looks alike to it and verification converges at once. On the
 * stack, the changing lengths made each iteration a new verifier state
 * and the programs hit the million-instruction limit.
 *
 * The walk moves through the syscall's bytes in runs: a run is copied or
 * skipped (typed) and never crosses an iovec segment, an HTTP/2 frame part
 * (header, copied payload, skipped payload) or an HTTP/1 body range. An
 * event gathers copied runs up to chunk_size, then skipped runs of one
 * reason: copied prefix + skipped suffix. So a write of HEADERS behind DATA
 * frames is a few events, each frame header and non-DATA payload copied.
 */
struct chunk_loop {
	__u64 iov;      /* user iovec array, or 0 for a single buffer */
	__u64 base;     /* next byte of the current segment */
	__u64 seg_left; /* bytes left in the current segment */
	__u64 left;     /* bytes of the syscall not yet walked */
	__u64 budget;   /* bytes this direction may still copy (unknown protocols,
			 * HTTP/2 DATA payloads); ~0 = unlimited */
	__u64 seq;
	__u64 offset; /* stream offset of the event being gathered */
	__u64 captured;
	__u64 pos;                /* stream offset of the next byte walked */
	__u64 body_from, body_to; /* HTTP/1 hint: skipped body range */
	__u32 iov_idx;
	__u32 iov_cnt;
	__u32 stop;   /* skip_reason that ended the walk early, or 0 */
	__u32 events; /* events emitted */
	/* The event being gathered: cover stream bytes, the first fill copied. */
	__u32 cover;
	__u32 fill;
	__u8 skip;       /* skip_reason of the gathered event's suffix */
	__u8 h1;         /* user space hinted HTTP/1 */
	__u8 tail;       /* out of events: the rest is skipped, still walked */
	__u8 budget_hit; /* a run was skipped for the budget */
	__u8 _pad[4];
	struct walk_state w;
	/* sendmmsg/recvmmsg: the mmsghdr vector and the summed length of its
	 * messages after the first. */
	__u64 mmsg_vec;
	__u64 mmsg_total;
};

/* Scratch for building data events: too large for the 512-byte stack, and
 * with the doubled payload too large for a per-CPU map value (32 KiB), so
 * it is an array with one slot per possible CPU (sized from user space),
 * indexed by the current CPU. Safe because programs on one CPU do not nest
 * here (the kernel's bpf_prog_active guard skips a tracing program
 * re-entered on that CPU). */
struct data_scratch {
	struct chunk_loop loop;
	struct data_event hdr;
	/* Twice the largest chunk, so that the verifier can bound a copy at
	 * offset < MAX_CHUNK_SIZE of at most MAX_CHUNK_SIZE bytes by those
	 * two checks alone; events use at most MAX_CHUNK_SIZE of it. */
	__u8 payload[2 * MAX_CHUNK_SIZE];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* possible CPUs, set at load */
	__type(key, __u32);
	__type(value, struct data_scratch);
} scratch SEC(".maps");

/* This CPU's data scratch. */
static __always_inline struct data_scratch *cpu_scratch(void)
{
	__u32 cpu = bpf_get_smp_processor_id();

	return bpf_map_lookup_elem(&scratch, &cpu);
}

/* All records. Size set from user space (power of two, default 8 MiB). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

/* Never instantiated: makes clang emit BTF for the records and enums that
 * only appear inside inlined code, so bpf2go can generate their Go mirrors. */
struct btf_anchor {
	struct conn_event conn;
	struct data_event data;
	struct process_event process;
	struct retransmit_event retransmit;
	enum event_type a;
	enum conn_role b;
	enum direction c;
	enum syscall_id d;
	enum drop_reason e;
	enum metric_bit f;
	struct dev_key g;
	struct dev_counters h;
	struct pod_drop_key i;
	enum skip_reason j;
	struct h1_hint k;
};
const struct btf_anchor *unused_btf_anchor __attribute__((unused));

/* ---- helpers ------------------------------------------------------------ */

static __always_inline __u64 min64(__u64 a, __u64 b)
{
	return a < b ? a : b;
}

static __always_inline __u64 conn_key(__u64 pid_tgid, __s32 fd)
{
	return (pid_tgid & 0xffffffff00000000ULL) | (__u32)fd;
}

/* The conns key of a connection's TLS plaintext (tls.bpf.c): its TCP
 * connection's key with the top bit set, which neither a socket cookie (a
 * 64-bit counter) nor tgid << 32 | fd (tgid < 2^22) ever has. */
#define TLS_KEY_BIT (1ULL << 63)

static __always_inline __u64 new_conn_id(void)
{
	return __sync_fetch_and_add(&next_conn_id, 1) + 1;
}

/* The pod of task t, if its network namespace is enrolled: the filter. */
static __always_inline bool task_pod(struct task_struct *t, __u32 *pod, __u64 *netns)
{
	/* t is a BTF pointer: plain loads, which the JIT turns into guarded
	 * loads, cost far less than three bpf_probe_read_kernel calls on a
	 * path every syscall of every thread takes. */
	__u64 ino = t->nsproxy->net_ns->ns.inum;
	__u32 *p;

	if (!ino)
		return false; /* exiting task: nsproxy already gone */
	p = enrolled_pod(ino);
	if (!p)
		return false;
	*pod = *p;
	*netns = ino;
	return true;
}

static __always_inline bool current_pod(__u32 *pod, __u64 *netns)
{
	return task_pod(bpf_get_current_task_btf(), pod, netns);
}

/*
 * fd -> struct file -> struct socket -> struct sock, for the current task,
 * or 0 unless fd is an IPv4/IPv6 TCP socket. A file is a socket when its
 * inode is S_IFSOCK (sockfs); private_data then holds the struct socket.
 * MPTCP sockets count as TCP: the application reads and writes one byte
 * stream all the same, and Go (1.24+) listens with MPTCP by default, so a
 * Go server's listener is MPTCP even when every accepted socket is TCP.
 */
static __always_inline __u64 tcp_sock_of_fd(__s32 fd)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct fdtable *fdt;
	struct file **fds;
	struct file *f = NULL;
	struct socket *sock;
	struct sock *sk;
	__u16 family, protocol;

	if (fd < 0)
		return 0;
	/* Plain loads through the task's BTF pointer (see task_pod); the
	 * file is found by index, which only a probe read may do, and from
	 * there on pointers are untyped to the verifier. */
	fdt = t->files->fdt;
	if (!fdt || (__u32)fd >= fdt->max_fds)
		return 0;
	fds = fdt->fd;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return 0;
	if ((BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	sock = BPF_CORE_READ(f, private_data);
	sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return 0;
	protocol = BPF_CORE_READ(sk, sk_protocol);
	if (protocol != IPPROTO_TCP && protocol != IPPROTO_MPTCP)
		return 0;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	return (__u64)sk;
}

/* Identity of the current thread. Plain loads through current's BTF
 * pointer read what bpf_get_current_{pid_tgid,cgroup_id,comm} would (the
 * cgroup v2 id, global ids, the padded comm) without three helper calls:
 * perf put those at about a tenth of a socket op. */
static __always_inline void fill_proc(struct proc_info *p, __u32 pod, __u64 netns)
{
	struct task_struct *t = bpf_get_current_task_btf();

	p->netns = netns;
	p->cgroup_id = t->cgroups->dfl_cgrp->kn->id;
	p->tgid = t->tgid;
	p->tid = t->pid;
	p->pod_id = pod;
	__builtin_memcpy(p->comm, t->comm, sizeof(p->comm));
}

/* Puts *a in flight on the current thread (a->syscall is set). */
static __always_inline bool save_args(const struct syscall_args *a)
{
	struct syscall_args *p = bpf_task_storage_get(&inflight, bpf_get_current_task_btf(), 0,
						      BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (!p) {
		count(DROP_ARGS_MAP_FULL);
		return false;
	}
	*p = *a;
	return true;
}

/* Moves the current thread's in-flight syscall into *a and ends it. */
static __always_inline bool take_args(struct syscall_args *a)
{
	struct syscall_args *p = current_args();

	if (!p)
		return false;
	*a = *p;
	p->syscall = SYS_UNKNOWN;
	p->cur_skb = 0;
	return true;
}

/* Adds count packets dropped for reason to the first free or matching of n
 * slots; a reason that finds no slot is counted as lost. */
static __always_inline void add_drop(struct drop_slot *slots, int n, __u32 reason, __u32 count_)
{
	for (int i = 0; i < n; i++) {
		if (slots[i].reason == reason || !slots[i].count) {
			slots[i].reason = reason;
			slots[i].count += count_;
			return;
		}
	}
	count(DROP_DROP_SLOTS_FULL);
}

/*
 * Socket state at close: RTT estimate and total retransmits from struct
 * tcp_sock (the values tcp_info reports), drops from the socket's entry in
 * socks. An MPTCP socket is not a tcp_sock: its subflows are, and they are
 * not followed, so only drops are measured for it.
 */
static __always_inline void fill_sock_stats(struct sock_stats *st, struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct sock_conn *sc = bpf_map_lookup_elem(&socks, &key);

	if (sc) {
		__builtin_memcpy(st->drops, sc->drops, sizeof(st->drops));
		st->measured |= METRIC_DROPS;
	}
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return;
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	st->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3; /* stored << 3 */
	st->mdev_us = BPF_CORE_READ(tp, mdev_us) >> 2; /* stored << 2 */
	st->total_retrans = BPF_CORE_READ(tp, total_retrans);
	st->measured |= METRIC_RTT | METRIC_RETRANSMITS;
}

/*
 * Emits a connection event. Addresses come from the socket; for connect the
 * remote side comes from the sockaddr the caller passed, because a failed
 * connect has already cleared it from the socket by the time it returns.
 */
static __always_inline void fill_conn(struct conn_event *e, __u8 type, const struct conn_state *cs,
				      const struct syscall_args *a, __u8 syscall, __s32 fd, __u64 sk_ptr,
				      __u64 end_ns, long ret)
{
	struct sock *sk = (struct sock *)sk_ptr;

	__builtin_memset(e, 0, sizeof(*e));
	e->type = type;
	e->role = cs->role;
	e->syscall = syscall;
	e->fd = fd;
	e->conn_id = cs->conn_id;
	e->start_ns = a->start_ns;
	e->end_ns = end_ns;
	e->success = ret >= 0 || ret == -EINPROGRESS;
	e->in_progress = ret == -EINPROGRESS;
	e->err = ret < 0 && ret != -EINPROGRESS ? -ret : 0;
	e->bytes_sent = cs->bytes[DIR_EGRESS];
	e->bytes_recv = cs->bytes[DIR_INGRESS];
	e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (e->family == AF_INET) {
		bpf_core_read(e->laddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(e->raddr, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(e->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(e->raddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	if (syscall == SYS_CONNECT) {
		const struct sockaddr_in *in4 = (const void *)a->addr;
		const struct sockaddr_in6 *in6 = (const void *)a->addr;

		if (in4->sin_family == AF_INET && e->family == AF_INET) {
			__builtin_memset(e->raddr, 0, sizeof(e->raddr));
			__builtin_memcpy(e->raddr, &in4->sin_addr, 4);
			e->rport = bpf_ntohs(in4->sin_port);
		} else if (in6->sin6_family == AF_INET6 && e->family == AF_INET6) {
			__builtin_memcpy(e->raddr, &in6->sin6_addr, 16);
			e->rport = bpf_ntohs(in6->sin6_port);
		}
	}
	fill_proc(&e->proc, a->pod_id, a->netns);
	if (type == EVENT_CONN_CLOSE)
		fill_sock_stats(&e->stats, sk);
}

/*
 * Ring buffer writes use the kernel's adaptive wakeup: a record wakes the
 * reader's wait queue only when it is the first in an empty ring (the
 * consumer has caught up to it). A wakeup is an irq_work raised on the
 * writing CPU, a self-IPI, which under a hypervisor is a trapped APIC
 * write: waking for every record took a sixth of both CPUs at tens of
 * thousands of syscalls a second. The reader drains a busy ring every
 * poll interval (Config.PollInterval) and does not catch up between, so
 * a busy ring raises about one wakeup per interval; an idle one raises
 * one when it stops being idle, which is what lets the reader park
 * without a timer.
 */
#define RB_FLAGS 0

static __always_inline void emit_conn(__u8 type, const struct conn_state *cs, const struct syscall_args *a,
				      __u8 syscall, __s32 fd, __u64 sk_ptr, __u64 end_ns, long ret)
{
	struct conn_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count(DROP_RINGBUF_FULL);
		return;
	}
	fill_conn(e, type, cs, a, syscall, fd, sk_ptr, end_ns, ret);
	bpf_ringbuf_submit(e, RB_FLAGS);
}

/* Stores fresh state for a connection on key and returns it. */
static __always_inline struct conn_state *open_conn(__u64 key, __u64 conn_id, __u64 sk, __u8 role)
{
	struct conn_state fresh = {
		.conn_id = conn_id,
		.sk = sk,
		.role = role,
	};

	if (bpf_map_update_elem(&conns, &key, &fresh, BPF_ANY)) {
		count(DROP_CONN_MAP_FULL);
		return NULL;
	}
	return bpf_map_lookup_elem(&conns, &key);
}

/* Records which connection socket sk carries, for the socket-context hooks. */
static __always_inline void track_sock(__u64 sk, const struct conn_state *cs, const struct syscall_args *a,
				       __s32 fd, bool connecting)
{
	struct sock_conn sc = {
		.conn_id = cs->conn_id,
		.start_ns = a->start_ns,
		.fd = fd,
		.role = cs->role,
		.connecting = connecting,
	};

	fill_proc(&sc.proc, a->pod_id, a->netns);
	if (bpf_map_update_elem(&socks, &sk, &sc, BPF_ANY))
		count(DROP_SOCK_MAP_FULL);
}

/* Packets and bytes are always measured for a read; the queue split only
 * when every skb it copied from carried both stamps; L3/L4/netfilter when a
 * richer tier timed every skb it copied from (tier.bpf.c). */
static __always_inline void finish_recv_metrics(struct recv_metrics *out, const struct recv_metrics *r)
{
	*out = *r;
	out->last_skb = 0;
	/* r->measured holds what a richer tier's programs claimed. */
	out->measured = r->measured | METRIC_PACKETS;
	if (r->packets && !r->unstamped)
		out->measured |= METRIC_RECV_QUEUE;
}

/* Measured bits of a send syscall's metrics. Packets, retransmits and
 * drops are always counted; the device-layer split only when every packet
 * the thread queued also went through the driver on this thread (a device
 * without a qdisc: veth, loopback). Packets a qdisc (netem, fq) held back
 * leave from softirq context later, so their L2 times stay unmeasured
 * rather than partial. */
static __always_inline void finish_send_metrics(struct send_metrics *out, const struct send_metrics *m)
{
	*out = *m;
	/* m->measured holds what a richer tier's programs claimed. */
	out->measured = m->measured | METRIC_PACKETS | METRIC_RETRANSMITS | METRIC_DROPS;
	if (m->packets && m->xmit_seen == m->packets)
		out->measured |= METRIC_L2_DURATION | METRIC_L2_QUEUE;
}

/* The programs, by concern. Each file is a part of this translation unit (it uses the maps and
 * helpers above and what the files before it define), included once, in this order. */
#include "data.bpf.h"
#include "syscall_tier.bpf.h"
#include "socket_tier.bpf.h"
#include "kmetrics.bpf.h"
#include "lifecycle.bpf.h"
#include "pod_tc.bpf.h"
