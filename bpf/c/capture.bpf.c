// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
/*
 * Weir's capture core, base tier: what every kernel with BTF and tracepoints
 * can run, including kernels in lockdown with neither kprobes nor fentry.
 *
 * Who is monitored: a thread is monitored when its network namespace is
 * enrolled, i.e. task->nsproxy->net_ns->ns.inum is a key of enrolled_netns.
 * The check runs on every syscall enter, against the calling thread. That is
 * exact across fork, setns (ip netns exec), unshare and threads, needs no
 * user-space round trip, and so covers a process from its first instruction.
 * The sched_process_{fork,exec,exit} programs do not filter anything; they
 * report process lifecycle (so user space can name processes and close the
 * connections of a process that exited holding them) and keep a small
 * tid -> pod map that still answers at exit, when namespaces are being torn
 * down.
 *
 * What is captured: TCP sockets only (IPv4 and IPv6). Syscall enter
 * tracepoints store the arguments per thread; exit tracepoints, which know
 * the result, emit connection events and data chunks to one ring buffer.
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

/* enrolled_netns (netns inode -> pod id) and the drop counters are in
 * shared.h: the richer tier reuses them. */
#include "shared.h"

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
static __always_inline bool netns_maybe_enrolled(__u64 ino)
{
	__u32 k = (ino >> 6) & (NETNS_BITS_WORDS - 1);
	__u64 *w = bpf_map_lookup_elem(&netns_bits, &k);

	return w && ((*w >> (ino & 63)) & 1);
}

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
 * Every ring buffer write is made without waking the reader. By default the
 * kernel wakes a waiting reader for each record, through an irq_work raised
 * on the writing CPU: a self-IPI, which under a hypervisor is a trapped APIC
 * write. At tens of thousands of syscalls a second that trap alone took a
 * sixth of both CPUs. The reader polls instead (Config.PollInterval): it
 * drains the ring, and sleeps only when the ring is empty.
 */
#define RB_FLAGS BPF_RB_NO_WAKEUP

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

/* ---- data chunking and the HTTP/2 walker ---------------------------------- */

/* Emits the event gathered in the scratch (cover bytes, the first fill of
 * them in s->payload) and starts the next one. The header's fixed fields
 * are already set by report_data. */
static __always_inline void emit_event(struct data_scratch *s, bool last)
{
	struct chunk_loop *l = &s->loop;
	__u32 n;

	/* Read the length back from the map value so the verifier bounds it
	 * by the clamp below alone, not by where it came from. */
	n = *(volatile __u32 *)&l->fill;
	if (n > MAX_CHUNK_SIZE)
		n = MAX_CHUNK_SIZE;
	s->hdr.seq = l->seq++;
	s->hdr.offset = l->offset;
	s->hdr.size = l->cover;
	s->hdr.captured = n;
	s->hdr.truncated = n < l->cover;
	/* A suffix always has a reason; SKIP_READ_FAILED if none was set
	 * (a copy that failed part way). */
	s->hdr.skip = n < l->cover ? (l->skip ? l->skip : SKIP_READ_FAILED) : SKIP_NONE;
	s->hdr.last = last;
	l->offset += l->cover;
	l->captured += n;
	l->events++;
	l->cover = 0;
	l->fill = 0;
	l->skip = SKIP_NONE;
	if (bpf_ringbuf_output(&events, &s->hdr, sizeof(s->hdr) + n, RB_FLAGS))
		count(DROP_RINGBUF_FULL);
}

/* The walker stops following HTTP/2 in this direction. */
static __always_inline void walk_desync(struct walk_state *w)
{
	if (w->mode == W_H2)
		count(DROP_H2_DESYNC);
	w->mode = W_OPAQUE;
	w->copy_left = 0;
	w->skip_left = 0;
	w->hdr_have = 0;
}

/* Whether a frame header is one a peer could send (RFC 9113 section 6):
 * checks that catch a walker out of step, never frames it must follow. */
static __always_inline bool frame_plausible(__u32 len, __u8 type, __u32 sid)
{
	switch (type) {
	case 0x0: /* DATA */
	case 0x1: /* HEADERS */
	case 0x9: /* CONTINUATION */
		return sid != 0;
	case 0x2: /* PRIORITY */
		return sid != 0 && len == 5;
	case 0x3: /* RST_STREAM */
		return sid != 0 && len == 4;
	case 0x4: /* SETTINGS */
		return sid == 0 && len % 6 == 0;
	case 0x5: /* PUSH_PROMISE */
		return sid != 0 && len >= 4;
	case 0x6: /* PING */
		return sid == 0 && len == 8;
	case 0x7: /* GOAWAY */
		return sid == 0 && len >= 8;
	case 0x8: /* WINDOW_UPDATE */
		return len == 4;
	}
	return true; /* extension frame: followed by its length, copied */
}

/* A frame header is complete in w->hdr: decide what of its payload to copy.
 * Every non-DATA payload is copied up to max_frame_copy; a DATA payload is
 * copied while the budget lasts or when small, else skipped (keeping the
 * pad length byte of a PADDED frame, which the parser needs for the body
 * size). */
static __always_inline void frame_begin(struct chunk_loop *l)
{
	struct walk_state *w = &l->w;
	__u32 len = (__u32)w->hdr[0] << 16 | (__u32)w->hdr[1] << 8 | w->hdr[2];
	__u8 type = w->hdr[3], flags = w->hdr[4];
	__u32 sid = ((__u32)w->hdr[5] << 24 | (__u32)w->hdr[6] << 16 | (__u32)w->hdr[7] << 8 | w->hdr[8]) &
		    0x7fffffff;

	if (!frame_plausible(len, type, sid)) {
		walk_desync(w);
		return;
	}
	w->skip_left = 0;
	w->skip_reason = SKIP_NONE;
	if (type == 0x0 && len > H2_SMALL_DATA && len > l->budget) {
		w->copy_left = (flags & 0x8) ? 1 : 0; /* PADDED: the pad length */
		w->skip_left = len - w->copy_left;
		w->skip_reason = SKIP_H2_DATA;
	} else if (type != 0x0 && len > max_frame_copy) {
		w->copy_left = 0;
		w->skip_left = len;
		w->skip_reason = SKIP_FRAME_LIMIT;
		count(DROP_H2_FRAME_LIMIT);
	} else {
		w->copy_left = len;
	}
	l->budget -= min64(l->budget, w->copy_left);
	w->hdr_have = len ? 9 : 0;
}

/*
 * One bpf_loop iteration: walks one run of the syscall's bytes, copied into
 * the event being gathered or added to its skipped suffix. Returns 1 when
 * the syscall is done or the walk cannot go on (l->stop says why).
 */
static long walk_step(__u32 i, void *ctx)
{
	struct data_scratch *s = cpu_scratch();
	struct chunk_loop *l;
	struct walk_state *w;
	__u64 avail, n;
	__u8 skip = SKIP_NONE;
	bool hdr = false, copied;
	__u32 pos = 0, hh;

	if (!s)
		return 1;
	l = &s->loop;
	w = &l->w;
	if (!l->left)
		return 1;
	if (!l->seg_left) {
		struct iovec v;

		if (!l->iov || l->iov_idx >= l->iov_cnt) {
			l->stop = SKIP_IOV_LIMIT;
			return 1;
		}
		if (bpf_probe_read_user(&v, sizeof(v),
					(const void *)(l->iov + (__u64)l->iov_idx * sizeof(v)))) {
			l->stop = SKIP_READ_FAILED;
			return 1;
		}
		l->iov_idx++;
		l->base = (__u64)v.iov_base;
		l->seg_left = min64(v.iov_len, l->left);
		return 0; /* a zero-length segment uses up a step */
	}
	avail = min64(l->seg_left, l->left);

	/* What the next run is, by protocol. */
	if (w->mode == W_H2) {
		if (w->hdr_have < 9) {
			n = min64(avail, 9 - w->hdr_have);
			hdr = true;
		} else if (w->copy_left) {
			n = min64(avail, w->copy_left);
		} else {
			n = min64(avail, w->skip_left);
			skip = w->skip_reason;
		}
	} else if (l->h1) {
		if (l->pos >= l->body_from && l->pos < l->body_to) {
			n = min64(avail, l->body_to - l->pos);
			skip = SKIP_BODY;
		} else if (l->pos < l->body_from) {
			n = min64(avail, l->body_from - l->pos);
		} else {
			n = avail;
		}
	} else if (l->budget) {
		n = min64(avail, l->budget);
	} else {
		n = avail;
		skip = SKIP_BUDGET;
	}
	if (l->tail)
		skip = SKIP_CHUNK_LIMIT;

	copied = false;
	if (skip == SKIP_NONE) {
		/* A copy after a skipped suffix, or into a full event, starts
		 * a new event; the last event a syscall may have instead
		 * turns the rest of the walk into its suffix. */
		if (l->skip || l->fill >= chunk_size) {
			if (l->events + 1 >= MAX_CHUNKS) {
				l->tail = 1;
				return 0;
			}
			emit_event(s, false);
		}
		n = min64(n, chunk_size - l->fill);
		pos = *(volatile __u32 *)&l->fill;
		if (pos >= MAX_CHUNK_SIZE || n > MAX_CHUNK_SIZE)
			return 1;
		if (bpf_probe_read_user(s->payload + pos, n, (const void *)l->base)) {
			l->stop = SKIP_READ_FAILED;
			return 1;
		}
		l->fill += n;
		copied = true;
		if (w->mode != W_H2)
			l->budget -= min64(l->budget, n);
	} else if (l->skip != skip && l->skip) {
		/* One reason per suffix. */
		if (l->events + 1 >= MAX_CHUNKS) {
			l->tail = 1;
			skip = SKIP_CHUNK_LIMIT;
		} else {
			emit_event(s, false);
		}
	}
	if (skip)
		l->skip = skip;
	if (skip == SKIP_BUDGET)
		l->budget_hit = 1;

	/* The walker reads every header byte, copied or not, to keep its
	 * place when the event has run out of room. */
	if (hdr) {
		hh = *(volatile __u8 *)&w->hdr_have;
		if (hh > 8 || n > 9)
			return 1;
		if (copied) {
			/* Just copied into the event: taken from there rather
			 * than read from user memory a second time. */
			for (int j = 0; j < 9; j++) {
				if (j >= n)
					break;
				w->hdr[hh + j] = s->payload[(pos + j) & (2 * MAX_CHUNK_SIZE - 1)];
			}
		} else if (bpf_probe_read_user(w->hdr + hh, n, (const void *)l->base)) {
			l->stop = SKIP_READ_FAILED;
			return 1;
		}
	}
	l->cover += n;
	l->pos += n;
	l->base += n;
	l->seg_left -= n;
	l->left -= n;

	if (w->mode == W_H2) {
		if (hdr) {
			w->hdr_have += n;
			if (w->hdr_have == 9)
				frame_begin(l);
		} else if (w->copy_left) {
			w->copy_left -= n;
		} else {
			w->skip_left -= n;
		}
		if (w->hdr_have == 9 && !w->copy_left && !w->skip_left)
			w->hdr_have = 0;
	}
	/* Done: stop here rather than in one more step. Each step is a call
	 * and a return, and with the kernel's SRSO mitigation (Safe RET) a
	 * return costs more than the few loads the step would do. */
	return !l->left;
}

/* Adds msg_len of message i+1 of a mmsghdr vector (UAPI layout) to the
 * walk's mmsg_total. Like the chunk walk, the sum lives in the scratch map
 * value: on the stack the verifier tracks it through every iteration and
 * exit_recvmmsg grew past the million-instruction limit. */
static long mmsg_step(__u32 i, void *ctx)
{
	struct data_scratch *s = cpu_scratch();
	__u32 len = 0;
	__u64 at;

	if (!s)
		return 1;
	at = s->loop.mmsg_vec + (__u64)(i + 1) * sizeof(struct mmsghdr) +
	     __builtin_offsetof(struct mmsghdr, msg_len);
	if (bpf_probe_read_user(&len, sizeof(len), (const void *)at))
		return 1;
	s->loop.mmsg_total += len;
	return 0;
}

static const char h2_preface[24] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/*
 * Decides the walker mode of a direction at its first syscall (stream
 * offset 0), from the first bytes of its first segment: the HTTP/2 client
 * preface (or at least its first 4 bytes), or a SETTINGS frame header (what a server sends first). Either
 * side may be the client: a connection first seen through data has no
 * role. A preface also makes the other direction HTTP/2 from its offset 0
 * if nothing moved there yet.
 */
static __always_inline void walk_detect(struct conn_state *cs, struct chunk_loop *l, __u8 dir)
{
	struct walk_state *w = &l->w;
	__u8 b[24];
	__u64 at = l->base, len = l->seg_left;
	__u32 n;

	w->mode = W_OPAQUE;
	if (l->iov) {
		struct iovec v;

		if (!l->iov_cnt || bpf_probe_read_user(&v, sizeof(v), (const void *)l->iov))
			return;
		at = (__u64)v.iov_base;
		len = v.iov_len;
	}
	len = min64(len, l->left);
	n = len > sizeof(b) ? sizeof(b) : len;
	/* Bounded where the helper's argument is: 6.1's verifier loses the
	 * bound of a min() computed in 64 bits by the time of the call. */
	asm volatile("" : "+r"(n));
	if (n < 4 || n > sizeof(b) || bpf_probe_read_user(b, n, (const void *)at))
		return;
	/* SETTINGS, no flags, stream 0, a whole number of settings. */
	if (n >= 9 && b[3] == 0x4 && b[4] == 0 && !b[5] && !b[6] && !b[7] && !b[8] &&
	    ((__u32)b[0] << 16 | (__u32)b[1] << 8 | b[2]) % 6 == 0) {
		w->mode = W_H2;
		return;
	}
	/* The preface, or a prefix of it of at least "PRI " (a reader may
	 * take it in pieces): nothing else starts that way. */
	for (int i = 0; i < sizeof(b); i++)
		if (i < n && b[i] != h2_preface[i])
			return;
	/* The preface is walked as a payload without a header. */
	w->mode = W_H2;
	w->hdr_have = 9;
	w->copy_left = sizeof(b);
	if (cs->walk[dir ^ 1].mode == W_UNDECIDED && !cs->bytes[dir ^ 1])
		cs->walk[dir ^ 1].mode = W_H2;
}

/* Adds n bytes skipped for why to the event being gathered: a suffix of
 * another reason ends that event first, unless the syscall is out of
 * events (the merged suffix is then a chunk-limit loss). */
static __always_inline void add_suffix(struct data_scratch *s, __u8 why, __u64 n)
{
	struct chunk_loop *l = &s->loop;

	if (l->skip && l->skip != why) {
		if (l->events + 1 < MAX_CHUNKS)
			emit_event(s, false);
		else
			why = SKIP_CHUNK_LIMIT;
	}
	l->skip = why;
	l->cover += n;
	l->pos += n;
}

/* The drop counter of the walk's early stop. */
static __always_inline __u8 stop_drop(__u32 skip)
{
	switch (skip) {
	case SKIP_IOV_LIMIT:
		return DROP_IOV_LIMIT;
	case SKIP_READ_FAILED:
		return DROP_READ_USER_FAILED;
	}
	return DROP_CHUNK_TRUNCATED;
}

/*
 * Reports ret bytes moved by a data syscall on a TCP socket as events with
 * consecutive Seq and increasing offset, each a copied prefix and a typed
 * skipped suffix (see struct chunk_loop), at most MAX_CHUNKS of them.
 *
 * What is copied: an HTTP/2 direction, every frame header and non-DATA
 * payload, and DATA payloads while capture_limit lasts; a connection user
 * space hinted as HTTP/1, everything but the hinted body range; anything
 * else, capture_limit bytes, then the first chunk of each syscall.
 * key is the connection's key in conns: (tgid, fd) in the syscall tier,
 * the socket cookie in the socket tier; cs its state there if the caller
 * looked it up already (else NULL), now the operation's end.
 */
static __always_inline void report_data_of(struct syscall_args *a, long ret, __u8 dir, __u8 syscall,
					   __u8 label, __u64 key, struct conn_state *cs, __u64 now)
{
	struct data_scratch *s;
	struct chunk_loop *l;
	struct h1_hint *hint;
	__u8 rest_reason = SKIP_NONE;
	__u64 rest = 0;

	dir &= 1;
	if (!cs || cs->sk != a->sk) {
		/* First sight of this socket on this fd (inherited, scanned,
		 * or fd reused): a connection of unknown role. */
		cs = open_conn(key, new_conn_id(), a->sk, ROLE_UNKNOWN);
		if (!cs)
			return;
		emit_conn(EVENT_CONN_OPEN, cs, a, syscall, a->fd, a->sk, a->start_ns, 0);
		track_sock(a->sk, cs, a, a->fd, false);
	}

	s = cpu_scratch();
	if (!s)
		return;
	s->hdr.type = EVENT_DATA;
	s->hdr.direction = dir;
	/* The socket tier walks a sendmmsg message as the sendmsg it is
	 * (syscall) but reports the syscall that ran (label). */
	s->hdr.syscall = label;
	s->hdr.fd = a->fd;
	s->hdr.conn_id = cs->conn_id;
	s->hdr.start_ns = a->start_ns;
	s->hdr.end_ns = now;
	fill_proc(&s->hdr.proc, a->pod_id, a->netns);
	__builtin_memset(&s->hdr.send, 0, sizeof(s->hdr.send));
	__builtin_memset(&s->hdr.recv, 0, sizeof(s->hdr.recv));
	/* The socket tier's events claim per-operation metrics only when the
	 * op had a window for the per-packet hooks to add to (op_window). */
	if (socket_tier && !a->window)
		;
	else if (dir == DIR_EGRESS)
		finish_send_metrics(&s->hdr.send, &a->m);
	else
		finish_recv_metrics(&s->hdr.recv, &a->r);

	l = &s->loop;
	__builtin_memset(l, 0, sizeof(*l));
	l->seq = cs->seq[dir];
	l->offset = cs->bytes[dir];
	l->pos = l->offset;
	l->captured = cs->captured[dir];
	l->w = cs->walk[dir];
	l->budget = ~0ULL;
	if (capture_limit)
		l->budget = capture_limit > l->captured ? capture_limit - l->captured : 0;
	/* An HTTP/2 direction is walked by frames, whatever user space
	 * hinted: its hint is not looked up (a lookup is a helper call). */
	hint = l->w.mode == W_H2 ? NULL : bpf_map_lookup_elem(&h1_hints, &cs->conn_id);
	if (hint) {
		l->h1 = 1;
		l->body_from = hint->body_from[dir];
		l->body_to = hint->body_to[dir];
	} else if (capture_limit && l->w.mode != W_H2 && l->budget < chunk_size) {
		/* An unknown protocol past its budget still has the first
		 * chunk of every syscall captured. Message heads start
		 * syscalls (a server writes a response's head first, a
		 * client its request), so a long-lived connection of a
		 * protocol user space has not classified (yet) keeps yielding
		 * records while the bytes copied stay bounded per syscall. */
		l->budget = chunk_size;
	}
	l->left = ret;

	switch (syscall) {
	case SYS_READV:
	case SYS_WRITEV:
		l->iov = a->buf;
		l->iov_cnt = a->count;
		break;
	case SYS_SENDMSG:
	case SYS_RECVMSG: {
		struct user_msghdr m;

		if (bpf_probe_read_user(&m, sizeof(m), (const void *)a->buf)) {
			l->stop = SKIP_READ_FAILED;
			break;
		}
		l->iov = (__u64)m.msg_iov;
		l->iov_cnt = m.msg_iovlen;
		break;
	}
	case SYS_SENDMMSG:
	case SYS_RECVMMSG: {
		/* ret counts messages. The first message is walked; the
		 * others are summed (bounded by MAX_MMSGS) and reported
		 * size-only, so offsets stay exact. */
		struct mmsghdr m0;
		__u64 n = ret;

		if (bpf_probe_read_user(&m0, sizeof(m0), (const void *)a->buf)) {
			count(DROP_READ_USER_FAILED);
			return;
		}
		if (n > MAX_MMSGS) {
			count(DROP_MMSG_LIMIT);
			n = MAX_MMSGS;
		}
		l->mmsg_vec = a->buf;
		if (n > 1)
			bpf_loop(n - 1, mmsg_step, NULL, 0);
		l->iov = (__u64)m0.msg_hdr.msg_iov;
		l->iov_cnt = m0.msg_hdr.msg_iovlen;
		l->left = m0.msg_len;
		rest = l->mmsg_total;
		if (rest) {
			rest_reason = SKIP_MMSG;
			if (capture_payload)
				count(DROP_MMSG_PAYLOAD);
		}
		break;
	}
	case SYS_SENDFILE:
		/* The bytes came from a file, not a user buffer: size only. */
		rest = l->left;
		rest_reason = SKIP_SENDFILE;
		l->left = 0;
		break;
	case WALK_MMSG_SIZE_ONLY:
		/* Socket tier: a sendmmsg/recvmmsg message whose place in the
		 * vector could not be trusted. */
		rest = l->left;
		rest_reason = SKIP_MMSG;
		l->left = 0;
		break;
	case SYS_UNKNOWN:
	case SYS_SPLICE:
	case SYS_IO_URING:
		/* Socket tier: registers that name no user buffer of this
		 * operation are never read as one. */
		rest = l->left;
		rest_reason = SKIP_NOT_USER;
		l->left = 0;
		break;
	default: /* read, write, sendto, recvfrom: one buffer */
		l->base = a->buf;
		l->seg_left = ret;
		break;
	}
	if (l->iov_cnt > MAX_IOVECS)
		l->iov_cnt = MAX_IOVECS;

	if (!capture_payload) {
		/* Kernel metrics only: every syscall is one size-only event
		 * carrying its metrics, by design. */
		rest += l->left;
		l->left = 0;
		rest_reason = SKIP_NO_PAYLOAD;
	}
	if (l->w.mode == W_UNDECIDED && !l->stop && l->left) {
		if (l->offset == 0 && !hint)
			walk_detect(cs, l, dir);
		else
			l->w.mode = W_OPAQUE;
	}
	if (!l->stop && l->left)
		bpf_loop(MAX_WALK_STEPS, walk_step, NULL, 0);
	if (l->left) {
		/* The walk stopped early: the rest is size-only, and the
		 * walker no longer knows where frames start. */
		__u8 why = l->stop ? l->stop : SKIP_CHUNK_LIMIT;

		count(stop_drop(why));
		walk_desync(&l->w);
		add_suffix(s, why, l->left);
		l->left = 0;
	}
	if (l->tail)
		count(DROP_CHUNK_TRUNCATED);
	if (l->budget_hit)
		count(DROP_CAPTURE_LIMIT);
	if (rest) {
		if (l->w.mode == W_H2)
			walk_desync(&l->w);
		add_suffix(s, rest_reason, rest);
	}
	if (l->cover)
		emit_event(s, true);

	cs->seq[dir] = l->seq;
	cs->bytes[dir] = l->offset;
	cs->captured[dir] = l->captured;
	cs->walk[dir] = l->w;
}

/* report_data_of for a caller that has neither the connection's state
 * (looked up on key) nor the time. */
static __always_inline void report_data(struct syscall_args *a, long ret, __u8 dir, __u8 syscall, __u8 label,
					__u64 key)
{
	__u64 now = bpf_ktime_get_ns();

	report_data_of(a, ret, dir, syscall, label, key, bpf_map_lookup_elem(&conns, &key), now);
}

/* ---- syscall enter: filter, resolve the socket, save the arguments ------- */

static __always_inline int data_enter(__u8 syscall, __s32 fd, __u64 buf, __u32 cnt)
{
	struct syscall_args a = {};

	if (!current_pod(&a.pod_id, &a.netns))
		return 0;
	a.sk = tcp_sock_of_fd(fd);
	if (!a.sk)
		return 0; /* files, pipes, UDP, unix sockets: not ours */
	a.start_ns = bpf_ktime_get_ns();
	a.buf = buf;
	a.count = cnt;
	a.fd = fd;
	a.syscall = syscall;
	save_args(&a);
	return 0;
}

/* syscall is a constant per program, so each keeps only its own case. */
static __always_inline int data_exit(long ret, __u8 dir, __u8 syscall)
{
	struct syscall_args a;

	if (!take_args(&a) || ret <= 0)
		return 0;
	report_data(&a, ret, dir, syscall, syscall, conn_key(bpf_get_current_pid_tgid(), a.fd));
	return 0;
}

/* read/write family: args are (fd, buf or iovec or msghdr, count or vlen). */
#define DATA_HOOKS(name, id, dir)                                                \
	SEC("tracepoint/syscalls/sys_enter_" #name)                              \
	int enter_##name(struct trace_event_raw_sys_enter *ctx)                  \
	{                                                                        \
		return data_enter(id, ctx->args[0], ctx->args[1], ctx->args[2]); \
	}                                                                        \
	SEC("tracepoint/syscalls/sys_exit_" #name)                               \
	int exit_##name(struct trace_event_raw_sys_exit *ctx)                    \
	{                                                                        \
		return data_exit(ctx->ret, dir, id);                             \
	}

DATA_HOOKS(read, SYS_READ, DIR_INGRESS)
DATA_HOOKS(write, SYS_WRITE, DIR_EGRESS)
DATA_HOOKS(readv, SYS_READV, DIR_INGRESS)
DATA_HOOKS(writev, SYS_WRITEV, DIR_EGRESS)
DATA_HOOKS(recvfrom, SYS_RECVFROM, DIR_INGRESS)
DATA_HOOKS(sendto, SYS_SENDTO, DIR_EGRESS)
DATA_HOOKS(recvmsg, SYS_RECVMSG, DIR_INGRESS)
DATA_HOOKS(sendmsg, SYS_SENDMSG, DIR_EGRESS)
DATA_HOOKS(recvmmsg, SYS_RECVMMSG, DIR_INGRESS)
DATA_HOOKS(sendmmsg, SYS_SENDMMSG, DIR_EGRESS)

/* sendfile(out_fd, in_fd, offset, count): x86-64 names it sendfile64. The
 * socket is out_fd; the payload is file content, reported size-only. */
SEC("tracepoint/syscalls/sys_enter_sendfile64")
int enter_sendfile(struct trace_event_raw_sys_enter *ctx)
{
	return data_enter(SYS_SENDFILE, ctx->args[0], 0, 0);
}

SEC("tracepoint/syscalls/sys_exit_sendfile64")
int exit_sendfile(struct trace_event_raw_sys_exit *ctx)
{
	return data_exit(ctx->ret, DIR_EGRESS, SYS_SENDFILE);
}

/* connect(fd, addr, addrlen): client role. The sockaddr is copied at enter,
 * while the caller's memory is certainly what it asked for. */
SEC("tracepoint/syscalls/sys_enter_connect")
int enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	struct syscall_args a = {};
	__u64 len = ctx->args[2];

	if (!current_pod(&a.pod_id, &a.netns))
		return 0;
	a.fd = ctx->args[0];
	a.sk = tcp_sock_of_fd(a.fd);
	if (!a.sk)
		return 0;
	/* Fixed-size reads: sockaddr_in first, the rest for sockaddr_in6. */
	if (len >= sizeof(struct sockaddr_in) &&
	    !bpf_probe_read_user(a.addr, sizeof(struct sockaddr_in), (const void *)ctx->args[1]) &&
	    ((struct sockaddr *)a.addr)->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6))
		bpf_probe_read_user(a.addr, sizeof(struct sockaddr_in6), (const void *)ctx->args[1]);
	a.start_ns = bpf_ktime_get_ns();
	a.syscall = SYS_CONNECT;
	save_args(&a);
	return 0;
}

static __always_inline void emit_connect_failed(const struct sock *sk, struct sock_conn *sc, int err);

/* The handshake of a non-blocking connect can end before the syscall
 * returns EINPROGRESS: over loopback the SYN, and the RST that answers it,
 * are processed in softirq on the caller's own thread during the syscall,
 * before the socket was tracked. The socket is then already closed with
 * sk_err set (it stays set until the caller reads SO_ERROR). */
static __always_inline void connect_failed_early(__u64 skp)
{
	const struct sock *sk = (const struct sock *)skp;
	struct sock_conn *sc;
	int err;

	if (BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_CLOSE)
		return;
	err = BPF_CORE_READ(sk, sk_err);
	sc = bpf_map_lookup_elem(&socks, &skp);
	if (sc && err)
		emit_connect_failed(sk, sc, err);
}

SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	struct conn_state *cs, failed = {.role = ROLE_CLIENT};
	struct syscall_args a;
	long ret = ctx->ret;
	bool same;
	__u64 key;

	if (!take_args(&a))
		return 0;
	key = conn_key(bpf_get_current_pid_tgid(), a.fd);
	cs = bpf_map_lookup_elem(&conns, &key);
	same = cs && cs->sk == a.sk && cs->role == ROLE_CLIENT;

	if (ret == 0 || ret == -EINPROGRESS) {
		if (same)
			return 0; /* a retried connect completing an attempt already reported */
		cs = open_conn(key, new_conn_id(), a.sk, ROLE_CLIENT);
		if (cs) {
			emit_conn(EVENT_CONN_OPEN, cs, &a, SYS_CONNECT, a.fd, a.sk, now, ret);
			track_sock(a.sk, cs, &a, a.fd, ret == -EINPROGRESS);
			if (ret == -EINPROGRESS)
				connect_failed_early(a.sk);
		}
		return 0;
	}
	if (ret == -EALREADY || ret == -EISCONN)
		return 0; /* polling an attempt already reported */

	/* Failed. If this socket's earlier non-blocking attempt was reported
	 * in progress, the failure reuses its conn id. */
	failed.conn_id = same ? cs->conn_id : new_conn_id();
	if (same) {
		bpf_map_delete_elem(&conns, &key);
		bpf_map_delete_elem(&socks, &a.sk);
	}
	emit_conn(EVENT_CONN_OPEN, &failed, &a, SYS_CONNECT, a.fd, a.sk, now, ret);
	return 0;
}

/* accept/accept4(fd, addr, addrlen[, flags]): server role; the new
 * connection's fd is the return value. */
static __always_inline int accept_enter(struct trace_event_raw_sys_enter *ctx, __u8 syscall)
{
	struct syscall_args a = {};

	if (!current_pod(&a.pod_id, &a.netns))
		return 0;
	a.fd = ctx->args[0];
	if (!tcp_sock_of_fd(a.fd))
		return 0; /* listening socket is not TCP */
	a.start_ns = bpf_ktime_get_ns();
	a.syscall = syscall;
	save_args(&a);
	return 0;
}

static __always_inline int accept_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	struct conn_state *cs;
	struct syscall_args a;
	long ret = ctx->ret;
	__u64 key, sk;

	if (!take_args(&a) || ret < 0)
		return 0;
	sk = tcp_sock_of_fd(ret);
	if (!sk)
		return 0;
	key = conn_key(bpf_get_current_pid_tgid(), ret);
	cs = open_conn(key, new_conn_id(), sk, ROLE_SERVER);
	if (cs) {
		emit_conn(EVENT_CONN_OPEN, cs, &a, a.syscall, ret, sk, now, 0);
		track_sock(sk, cs, &a, ret, false);
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_accept")
int enter_accept(struct trace_event_raw_sys_enter *ctx)
{
	return accept_enter(ctx, SYS_ACCEPT);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	return accept_exit(ctx);
}

SEC("tracepoint/syscalls/sys_enter_accept4")
int enter_accept4(struct trace_event_raw_sys_enter *ctx)
{
	return accept_enter(ctx, SYS_ACCEPT4);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return accept_exit(ctx);
}

/*
 * close(fd): ends a tracked connection.
 *
 * The connection is taken out of conns and socks at sys_enter_close, while
 * the fd and the socket are still alive, and reported at sys_exit_close
 * from a per-thread copy. Between the two the kernel releases the fd and
 * possibly the socket, and another thread of the process may already have
 * the same fd number from socket() -- even a new struct sock at the same
 * address -- and connect on it (Go's runtime does exactly this). Had the
 * entry stayed until the exit, that connect would look like a retry of the
 * old one and the late exit would end the new connection. So the exit
 * touches no shared state, and the close event's addresses and socket
 * statistics are read at enter from the live socket.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid of the closing thread */
	__type(value, struct conn_event);
} closing SEC(".maps");

/* Builds close events without using the 512-byte stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct conn_event);
} close_scratch SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct trace_event_raw_sys_enter *ctx)
{
	struct syscall_args a = {};
	struct conn_event *e;
	struct conn_state *cs;
	__u64 key, tid = bpf_get_current_pid_tgid();
	__u32 zero = 0;

	if (!current_pod(&a.pod_id, &a.netns))
		return 0;
	a.fd = ctx->args[0];
	key = conn_key(tid, a.fd);
	cs = bpf_map_lookup_elem(&conns, &key);
	if (!cs)
		return 0;
	a.sk = tcp_sock_of_fd(a.fd);
	if (a.sk != cs->sk) {
		bpf_map_delete_elem(&conns, &key); /* stale: the fd moved on */
		return 0;
	}
	e = bpf_map_lookup_elem(&close_scratch, &zero);
	if (!e)
		return 0;
	a.start_ns = bpf_ktime_get_ns();
	fill_conn(e, EVENT_CONN_CLOSE, cs, &a, SYS_CLOSE, a.fd, a.sk, a.start_ns, 0);
	/* The stash is per-thread in-flight state, like the syscall args. */
	if (bpf_map_update_elem(&closing, &tid, e, BPF_ANY))
		count(DROP_ARGS_MAP_FULL);
	bpf_map_delete_elem(&h1_hints, &cs->conn_id);
	bpf_map_delete_elem(&conns, &key);
	bpf_map_delete_elem(&socks, &a.sk);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_close")
int exit_close(struct trace_event_raw_sys_exit *ctx)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct conn_event *e = bpf_map_lookup_elem(&closing, &tid);
	long ret = ctx->ret;

	if (!e)
		return 0;
	/* close releases the fd even when it reports an error. */
	e->end_ns = bpf_ktime_get_ns();
	e->success = ret >= 0;
	e->err = ret < 0 ? -ret : 0;
	if (bpf_ringbuf_output(&events, e, sizeof(*e), RB_FLAGS))
		count(DROP_RINGBUF_FULL);
	bpf_map_delete_elem(&closing, &tid);
	return 0;
}

/* ---- socket state: the outcome of a non-blocking connect ------------------ */

/*
 * A non-blocking connect returns EINPROGRESS and the handshake ends later,
 * in softirq (RST: ECONNREFUSED) or in the retransmit timer (ETIMEDOUT),
 * long after the syscall was reported. tcp_done moves the socket from
 * SYN_SENT to CLOSE with sk_err already set, so that transition is where the
 * failure is known. It is reported as a second ConnOpen of the same
 * connection with Success false, ending at the state change; the process
 * identity is the one stored at connect, since this runs on no particular
 * thread. A close by the application while connecting (sk_err 0) is not a
 * failure of the connect and is left to the close event.
 */
/* Reports the failed handshake of sk, whose connection sc was reported in
 * progress, with sk_err as the errno. */
static __always_inline void emit_connect_failed(const struct sock *sk, struct sock_conn *sc, int err)
{
	struct conn_event *e;

	sc->connecting = 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(DROP_RINGBUF_FULL);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->type = EVENT_CONN_OPEN;
	e->role = sc->role;
	e->syscall = SYS_CONNECT;
	e->fd = sc->fd;
	e->conn_id = sc->conn_id;
	e->start_ns = sc->start_ns;
	e->end_ns = bpf_ktime_get_ns();
	e->err = err;
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
	e->proc = sc->proc;
	bpf_ringbuf_submit(e, RB_FLAGS);
}

static __always_inline void socket_tier_state(const struct sock *sk, int oldstate, int newstate);

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_sock_state, const struct sock *sk, const int oldstate, const int newstate)
{
	__u64 key = (__u64)sk;
	struct sock_conn *sc;
	int err;

	if (socket_tier) {
		socket_tier_state(sk, oldstate, newstate);
		return 0;
	}
	if (oldstate != TCP_SYN_SENT)
		return 0;
	sc = bpf_map_lookup_elem(&socks, &key);
	if (!sc || !sc->connecting)
		return 0;
	if (newstate != TCP_CLOSE) {
		sc->connecting = 0; /* established: the in-progress report stands */
		return 0;
	}
	err = BPF_CORE_READ(sk, sk_err);
	if (err)
		emit_connect_failed(sk, sc, err);
	return 0;
}

/* ---- socket tier: capture at the socket, not at the syscall ---------------
 *
 * sock:sock_send_length and sock:sock_recv_length fire in
 * sock_sendmsg_nosec/sock_recvmsg_nosec: only for socket I/O, after the
 * protocol moved the bytes, with the socket and the result. Attaching
 * there instead of the syscall tracepoints is what makes the cost follow
 * enrollment: a syscall tracepoint puts every task of the node on the
 * kernel's slow syscall path and runs for every read and write of every
 * file and pipe, while these run for socket I/O only, and return after one
 * map lookup unless the socket's network namespace is enrolled. The
 * filter is the socket's namespace (sk->__sk_common.skc_net), not the
 * thread's: it is the pod's socket whoever uses it.
 *
 * The payload is still in user memory: the syscall has not returned. Its
 * address comes from the syscall's saved registers (bpf_task_pt_regs):
 * orig_ax is the syscall number, di/si/dx/r10 its arguments (x86-64).
 * Operations whose registers name no user buffer of this socket op --
 * sendfile, splice, io_uring, kernel threads -- are reported size-only and
 * counted (uncaptured_op); their registers are never read as a buffer.
 *
 * Connections are keyed by socket cookie (unique for the boot, never
 * reused), so an fd reused or passed between processes cannot be
 * mistaken for another connection. Their lifecycle comes from
 * sock:inet_sock_set_state (socket_tier_state), the process from the
 * first I/O on them.
 */

#define PF_IO_WORKER 0x00000010
#define PF_KTHREAD 0x00200000
#define MSG_PEEK 0x2
#define MSG_TRUNC 0x20
#define MSG_ERRQUEUE 0x2000
#define SHUTDOWN_MASK 3

/* x86-64 syscall numbers (the objects are built for x86-64 only). */
#define NR_READ 0
#define NR_WRITE 1
#define NR_READV 19
#define NR_WRITEV 20
#define NR_SENDFILE 40
#define NR_CONNECT 42
#define NR_SENDTO 44
#define NR_RECVFROM 45
#define NR_SENDMSG 46
#define NR_RECVMSG 47
#define NR_SPLICE 275
#define NR_VMSPLICE 278
#define NR_RECVMMSG 299
#define NR_SENDMMSG 307
#define NR_IO_URING_ENTER 426

/* Where the current thread is in a sendmmsg/recvmmsg vector. The socket
 * tracepoints fire once per message, with no event between two syscalls of
 * the thread, so the position is followed here: reset when the vector,
 * its length or the fd differ, or when it ran past the vector's end. A
 * call that stopped early (an error, MSG_WAITFORONE) and is followed by a
 * call on the same vector would be off by the messages it did not move:
 * each message's payload is therefore read only if its iovecs are long
 * enough for what the op moved, else reported size-only (SKIP_MMSG). */
struct mmsg_pos {
	__u64 vec;
	__u32 idx;
	__u32 vlen;
	__s32 fd;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct mmsg_pos);
} mmsg_at SEC(".maps");

/* What a socket-tier program builds, off the 512-byte stack: the op's
 * arguments in the shape report_data takes and a fresh socket entry. One
 * slot per CPU and per program kind: a state change can run in softirq on
 * top of a socket op of the same CPU, so the two never share a slot. */
struct sock_scratch {
	struct syscall_args a;
	struct sock_conn sc;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2); /* 0: socket ops, 1: state changes */
	__type(key, __u32);
	__type(value, struct sock_scratch);
} sock_scratch SEC(".maps");

static __always_inline struct sock_scratch *sock_scratch_of(__u32 slot)
{
	return bpf_map_lookup_elem(&sock_scratch, &slot);
}

/* The scratch's socket entry, zeroed: only the paths that store a new
 * entry pay for clearing it. */
static __always_inline struct sock_conn *fresh_sock_conn(struct sock_scratch *x)
{
	__builtin_memset(&x->sc, 0, sizeof(x->sc));
	return &x->sc;
}

/* The pod of socket sk, if its network namespace is enrolled: the filter,
 * first thing every socket-tier program does. Plain loads on BTF
 * pointers. */
static __always_inline bool sock_pod(const struct sock *sk, __u32 *pod, __u64 *netns)
{
	__u64 ino = sk->__sk_common.skc_net.net->ns.inum;
	__u32 *p = enrolled_pod(ino);

	if (!p)
		return false;
	*pod = *p;
	*netns = ino;
	return true;
}

/* sk's socket cookie: the kernel's value once one was handed out (a
 * plain load), else the helper, which hands one out. Same value as
 * bpf_get_socket_cookie, one helper call fewer per socket op. */
static __always_inline __u64 sock_cookie(const struct sock *sk)
{
	__u64 cookie = sk->__sk_common.skc_cookie.counter;

	return cookie ? cookie : bpf_get_socket_cookie((void *)sk);
}

/* The fd of the connect() the current thread is in, or -1. */
static __always_inline __s32 connect_fd(void)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct pt_regs *regs;

	if (t->flags & PF_KTHREAD)
		return -1;
	regs = (struct pt_regs *)bpf_task_pt_regs(t);
	if (!regs || BPF_CORE_READ(regs, orig_ax) != NR_CONNECT)
		return -1;
	return BPF_CORE_READ(regs, di);
}

/* Whether sk's file is non-blocking: connect() then returns EINPROGRESS.
 * Read at CLOSE -> SYN_SENT, inside the connect call. */
static __always_inline bool sock_nonblocking(const struct sock *sk)
{
	struct socket *so = BPF_CORE_READ(sk, sk_socket);
	struct file *f = so ? BPF_CORE_READ(so, file) : NULL;

	return f && (BPF_CORE_READ(f, f_flags) & 04000 /* O_NONBLOCK */);
}

/* TCP (or MPTCP, see tcp_sock_of_fd) over IPv4 or IPv6. */
static __always_inline bool sock_is_tcp(const struct sock *sk)
{
	__u16 protocol = sk->sk_protocol;
	__u16 family = sk->__sk_common.skc_family;

	return (protocol == IPPROTO_TCP || protocol == IPPROTO_MPTCP) &&
	       (family == AF_INET || family == AF_INET6);
}

static __always_inline void fill_addrs(struct conn_event *e, const struct sock *sk)
{
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
}

/* A connection event of the socket tier: the process is the one stored
 * for the socket (sc), since state changes run on no particular thread. */
static __always_inline void sock_emit(__u8 type, const struct sock *sk, const struct conn_state *cs,
				      const struct sock_conn *sc, __u8 syscall, __u64 end_ns, int err)
{
	struct conn_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count(DROP_RINGBUF_FULL);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->type = type;
	e->role = cs->role;
	e->syscall = syscall;
	e->fd = sc->fd;
	e->conn_id = cs->conn_id;
	e->start_ns = sc->start_ns;
	e->end_ns = end_ns;
	e->success = !err || err == EINPROGRESS;
	e->in_progress = err == EINPROGRESS;
	e->err = err == EINPROGRESS ? 0 : err;
	e->bytes_sent = cs->bytes[DIR_EGRESS];
	e->bytes_recv = cs->bytes[DIR_INGRESS];
	fill_addrs(e, sk);
	e->proc = sc->proc;
	if (type == EVENT_CONN_CLOSE)
		fill_sock_stats(&e->stats, (struct sock *)sk);
	bpf_ringbuf_submit(e, RB_FLAGS);
}

/* The process of the current thread when it runs in sk's namespace (a
 * process's own socket op), else only the pod: a state change in softirq
 * runs on whatever thread was interrupted. */
static __always_inline void sock_proc(struct proc_info *p, __u32 pod, __u64 netns)
{
	struct task_struct *t = bpf_get_current_task_btf();

	if (!(t->flags & PF_KTHREAD) && t->nsproxy && t->nsproxy->net_ns->ns.inum == netns) {
		fill_proc(p, pod, netns);
		return;
	}
	__builtin_memset(p, 0, sizeof(*p));
	p->pod_id = pod;
	p->netns = netns;
}

/*
 * Connection lifecycle of the socket tier.
 *   CLOSE -> SYN_SENT      connect() starts, on the connecting thread:
 *                          state stored, the process with it.
 *   SYN_SENT -> ESTABLISHED   the client connection opens (reported).
 *   SYN_SENT -> CLOSE      the connect failed (reported, sk_err).
 *   SYN_RECV -> ESTABLISHED   a server connection is ready to accept, in
 *                          softirq: stored; reported at its first I/O, with
 *                          the process that accepted it.
 *   -> FIN_WAIT1/LAST_ACK/CLOSE with both directions shut down: the
 *                          application closed the socket (close(), exit,
 *                          or a reset): the close is reported. A
 *                          shutdown(SHUT_WR) alone leaves it open for reads.
 *   -> CLOSE               the socket is gone: state removed (and the
 *                          close reported if it was not yet).
 */
static __always_inline void socket_tier_state(const struct sock *sk, int oldstate, int newstate)
{
	__u64 skp = (__u64)sk, netns, cookie, now;
	struct conn_state *cs;
	struct sock_conn *sc;
	__u32 pod;

	if (!sock_pod(sk, &pod, &netns) || !sock_is_tcp(sk))
		return;
	cookie = sock_cookie(sk);
	now = bpf_ktime_get_ns();

	if (newstate == TCP_SYN_SENT || (oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED)) {
		struct sock_scratch *x = sock_scratch_of(1);
		__u8 role = newstate == TCP_SYN_SENT ? ROLE_CLIENT : ROLE_SERVER;

		if (!x)
			return;
		fresh_sock_conn(x);
		x->sc.start_ns = now;
		x->sc.fd = role == ROLE_CLIENT ? connect_fd() : -1;
		sock_proc(&x->sc.proc, pod, netns);
		x->sc.role = role;
		/* connecting: 1 a blocking connect, 2 a non-blocking one
		 * (connect() returns EINPROGRESS). */
		x->sc.connecting = role != ROLE_CLIENT ? 0 : sock_nonblocking(sk) ? 2 : 1;
		cs = open_conn(cookie, new_conn_id(), skp, role);
		if (!cs)
			return;
		cs->pending = 1;
		/* The socket-context hooks (retransmits, drops) find the
		 * connection through socks, by socket pointer. */
		x->sc.conn_id = cs->conn_id;
		if (bpf_map_update_elem(&socks, &skp, &x->sc, BPF_ANY)) {
			count(DROP_SOCK_MAP_FULL);
			bpf_map_delete_elem(&conns, &cookie);
			return;
		}
		return;
	}

	cs = bpf_map_lookup_elem(&conns, &cookie);
	sc = bpf_map_lookup_elem(&socks, &skp);
	if (!cs || !sc)
		return; /* not a connection this tier saw */

	if (oldstate == TCP_SYN_SENT) {
		int err = newstate == TCP_CLOSE ? BPF_CORE_READ(sk, sk_err) : 0;

		/* Reported when the handshake ends: the local port is bound
		 * after CLOSE -> SYN_SENT. A non-blocking connect is reported
		 * in progress, as its connect() returned, and gets a second
		 * open only if it failed, as in the syscall tier. */
		if (cs->pending && sc->connecting == 2) {
			sock_emit(EVENT_CONN_OPEN, sk, cs, sc, SYS_CONNECT, sc->start_ns, EINPROGRESS);
			cs->pending = 0;
		}
		sc->connecting = 0;
		if ((newstate == TCP_ESTABLISHED && cs->pending) || err) {
			sock_emit(EVENT_CONN_OPEN, sk, cs, sc, SYS_CONNECT, now, err);
			cs->pending = 0;
			if (err)
				cs->closed = 1; /* the failure ends it: no close event */
		}
	}

	if (!cs->closed &&
	    (newstate == TCP_CLOSE || ((newstate == TCP_FIN_WAIT1 || newstate == TCP_LAST_ACK) &&
				       BPF_CORE_READ(sk, sk_shutdown) == SHUTDOWN_MASK))) {
		if (cs->pending) {
			/* Never used for I/O: reported now, with the
			 * closing process if this is its thread. */
			if (!sc->proc.tgid)
				sock_proc(&sc->proc, pod, netns);
			sock_emit(EVENT_CONN_OPEN, sk, cs, sc,
				  cs->role == ROLE_SERVER ? SYS_ACCEPT : SYS_CONNECT, sc->start_ns, 0);
			cs->pending = 0;
		}
		sc->start_ns = now;
		sock_emit(EVENT_CONN_CLOSE, sk, cs, sc, SYS_CLOSE, now, 0);
		cs->closed = 1;
		sc->closed = 1;
	}
	if (newstate == TCP_CLOSE) {
		bpf_map_delete_elem(&h1_hints, &cs->conn_id);
		bpf_map_delete_elem(&conns, &cookie);
		bpf_map_delete_elem(&socks, &skp);
	}
}

/* The syscall behind the current socket op: its id for events (label), the
 * layout report_data walks (walk), and the user pointer it walks (buf,
 * count); false for operations whose registers are no user buffer. */
struct sock_op {
	__u64 buf;
	__u32 count;
	__s32 fd;
	__u8 label;
	__u8 walk;
	__u8 mmsg_short; /* mmsg: the guessed message cannot hold what moved */
};

static __always_inline void sock_op_of(struct sock_op *op, int ret, __u8 dir)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct pt_regs *regs;
	__u64 nr, a0, a1, a2;

	__builtin_memset(op, 0, sizeof(*op));
	op->fd = -1;
	if (t->flags & (PF_KTHREAD | PF_IO_WORKER)) {
		op->label = t->flags & PF_IO_WORKER ? SYS_IO_URING : SYS_UNKNOWN;
		op->walk = op->label;
		return;
	}
	regs = (struct pt_regs *)bpf_task_pt_regs(t);
	if (!regs)
		return;
	/* A BTF pointer: plain (guarded) loads, no probe-read calls. */
	nr = regs->orig_ax;
	a0 = regs->di;
	a1 = regs->si;
	a2 = regs->dx;
	op->fd = a0;
	op->buf = a1;
	op->count = a2;
	switch (nr) {
	case NR_READ:
		op->label = SYS_READ;
		break;
	case NR_WRITE:
		op->label = SYS_WRITE;
		break;
	case NR_READV:
		op->label = SYS_READV;
		break;
	case NR_WRITEV:
		op->label = SYS_WRITEV;
		break;
	case NR_SENDTO:
		op->label = SYS_SENDTO;
		break;
	case NR_RECVFROM:
		op->label = SYS_RECVFROM;
		break;
	case NR_SENDMSG:
		op->label = SYS_SENDMSG;
		break;
	case NR_RECVMSG:
		op->label = SYS_RECVMSG;
		break;
	case NR_SENDFILE:
		op->label = op->walk = SYS_SENDFILE;
		op->buf = 0;
		return;
	case NR_SPLICE:
	case NR_VMSPLICE:
		op->label = op->walk = SYS_SPLICE;
		op->buf = 0;
		op->fd = -1;
		return;
	case NR_IO_URING_ENTER:
		op->label = op->walk = SYS_IO_URING;
		op->buf = 0;
		op->fd = -1;
		return;
	case NR_SENDMMSG:
	case NR_RECVMMSG: {
		struct mmsg_pos *p = bpf_task_storage_get(&mmsg_at, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		struct user_msghdr m;
		struct iovec v;
		__u64 have = 0;

		op->label = nr == NR_SENDMMSG ? SYS_SENDMMSG : SYS_RECVMMSG;
		op->walk = nr == NR_SENDMMSG ? SYS_SENDMSG : SYS_RECVMSG;
		if (!p) {
			count(DROP_ARGS_MAP_FULL);
			op->mmsg_short = 1;
			return;
		}
		if (p->vec != a1 || p->vlen != (__u32)a2 || p->fd != (__s32)a0 || p->idx >= p->vlen) {
			p->vec = a1;
			p->vlen = a2;
			p->fd = a0;
			p->idx = 0;
		}
		op->buf = a1 + (__u64)p->idx * sizeof(struct mmsghdr);
		p->idx++;
		/* A message must be able to hold what moved: a send moves
		 * its whole iovec (blocking) or a prefix, a receive fills a
		 * prefix. Checked on the first iovec and the message's
		 * iovec count, which catch a position that slipped without
		 * walking every segment twice. */
		if (bpf_probe_read_user(&m, sizeof(m), (const void *)op->buf) || !m.msg_iovlen ||
		    bpf_probe_read_user(&v, sizeof(v), m.msg_iov)) {
			op->mmsg_short = 1;
			return;
		}
		have = v.iov_len;
		if (m.msg_iovlen == 1 && have < (__u64)ret)
			op->mmsg_short = 1;
		return;
	}
	default:
		/* Another syscall reached the socket: no user buffer of ours. */
		op->label = op->walk = SYS_UNKNOWN;
		op->buf = 0;
		op->fd = -1;
		return;
	}
	op->walk = op->label;
}

/* Counts an operation reported size-only because it has no user buffer. */
static __always_inline bool op_uncaptured(__u8 walk)
{
	switch (walk) {
	case SYS_UNKNOWN:
	case SYS_SPLICE:
	case SYS_IO_URING:
	case SYS_SENDFILE:
		return true;
	}
	return false;
}

static __always_inline int sock_io(struct sock *sk, int ret, int flags, __u8 dir)
{
	struct sock_scratch *x;
	struct syscall_args *a, *w;
	bool window = false;
	struct sock_op op;
	struct conn_state *cs;
	struct sock_conn *sc;
	__u64 cookie, skp = (__u64)sk, netns, now;
	__u32 pod;

	if (!sock_pod(sk, &pod, &netns))
		return 0;
	/* The op is over: close its window (whatever comes next), keeping
	 * what the per-packet hooks added to it for the event below. */
	w = inflight_of(bpf_get_current_task_btf());
	if (w && w->syscall != SYS_UNKNOWN) {
		window = w->sk == skp && w->syscall == (dir == DIR_EGRESS ? SYS_SENDMSG : SYS_RECVMSG);
		w->syscall = SYS_UNKNOWN;
	}
	if (ret <= 0 || !sock_is_tcp(sk))
		return 0;
	if (dir == DIR_INGRESS && (flags & (MSG_PEEK | MSG_ERRQUEUE)))
		return 0; /* a peek moves nothing; the error queue is not the stream */
	x = sock_scratch_of(0);
	if (!x)
		return 0;
	/* Not zeroed as a whole (a socket op's hottest path): report_data
	 * reads these fields, and the metrics only with a window. */
	a = &x->a;
	a->pod_id = pod;
	a->netns = netns;
	/* One clock read per op: a read starts and ends here, a send
	 * started where its window opened. */
	now = bpf_ktime_get_ns();
	a->start_ns = now;
	a->window = window;
	if (window && w) {
		__builtin_memcpy(&a->m, &w->m, OP_METRICS_SIZE);
		/* A send's window opened where TCP began the send. */
		if (dir == DIR_EGRESS)
			a->start_ns = w->start_ns;
	}
	sock_op_of(&op, ret, dir);
	if (dir == DIR_INGRESS && (flags & MSG_TRUNC)) {
		/* TCP discards the bytes instead of copying them. */
		op.walk = SYS_UNKNOWN;
	}
	if (op_uncaptured(op.walk))
		count(DROP_UNCAPTURED_OP);
	if (op.mmsg_short) {
		count(DROP_MMSG_PAYLOAD);
		op.walk = WALK_MMSG_SIZE_ONLY;
	}
	cookie = sock_cookie(sk);
	cs = bpf_map_lookup_elem(&conns, &cookie);
	if (!cs) {
		/* First sight of a socket this tier did not see open (it
		 * predates the load or the enrollment): of unknown role. */
		struct sock_conn *fresh = fresh_sock_conn(x);

		cs = open_conn(cookie, new_conn_id(), skp, ROLE_UNKNOWN);
		if (!cs)
			return 0;
		fresh->conn_id = cs->conn_id;
		fresh->start_ns = a->start_ns;
		fresh->fd = op.fd;
		fill_proc(&fresh->proc, pod, netns);
		if (bpf_map_update_elem(&socks, &skp, fresh, BPF_ANY))
			count(DROP_SOCK_MAP_FULL);
		sock_emit(EVENT_CONN_OPEN, sk, cs, fresh, op.label, a->start_ns, 0);
	}
	if (cs->closed)
		return 0; /* reported closed (or failed): nothing more belongs to it */
	if (cs->pending) {
		/* First I/O on a connection this tier saw open: report the
		 * open now, with the process that does it. */
		sc = bpf_map_lookup_elem(&socks, &skp);
		if (sc) {
			sc->fd = op.fd;
			fill_proc(&sc->proc, pod, netns);
			sock_emit(EVENT_CONN_OPEN, sk, cs, sc,
				  cs->role == ROLE_SERVER ? SYS_ACCEPT : SYS_CONNECT, a->start_ns, 0);
		}
		cs->pending = 0;
	}
	a->sk = skp;
	a->fd = op.fd;
	a->buf = op.buf;
	a->count = op.count;
	a->syscall = op.label;
	report_data_of(a, ret, dir, op.walk, op.label, cookie, cs, now);
	return 0;
}

/*
 * Per-operation kernel metrics under the socket tier. The per-packet hooks
 * below add to the current thread's in-flight op (inflight), which the
 * syscall tier opens at syscall entry. The socket tier has no entry, so it
 * opens an op window where the kernel starts the work on an enrolled
 * socket -- tcp_sendmsg_locked for a send, the first skb copied for a
 * receive -- and sock_io closes it and puts its metrics on the op's event.
 * A thread that never used an enrolled socket has no inflight storage: for
 * its packets each per-packet hook returns after one task-storage lookup.
 */
static __always_inline struct syscall_args *op_window(const struct sock *sk, __u8 label, bool *opened)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct syscall_args *a = inflight_of(t);

	if (!sk)
		return NULL;
	if (a && a->syscall == label && a->sk == (__u64)sk)
		return a; /* the op's window is open: TCP's send loop, a later skb */
	/* The filter bits alone, no enrolled_netns lookup: a window only
	 * collects numbers for the op's event, and sock_io's exact filter
	 * decides whether there is one. A namespace that shares a bit with an
	 * enrolled one gets windows nobody reads, nothing else. */
	if (!netns_maybe_enrolled(sk->__sk_common.skc_net.net->ns.inum))
		return NULL;
	if (!a) {
		a = bpf_task_storage_get(&inflight, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (!a) {
			count(DROP_ARGS_MAP_FULL);
			return NULL;
		}
	}
	*opened = true;
	a->sk = (__u64)sk;
	a->syscall = label;
	a->start_ns = bpf_ktime_get_ns();
	a->cur_skb = a->queue_ts = a->start_ts = 0;
	__builtin_memset(&a->m, 0, OP_METRICS_SIZE);
	return a;
}

/* TCP begins (and, once per segment it fills, continues) a send on sk: the
 * send's window opens, so the device hooks count its packets. */
SEC("tp_btf/tcp_sendmsg_locked")
int BPF_PROG(on_tcp_sendmsg, const struct sock *sk)
{
	bool opened = false;

	op_window(sk, SYS_SENDMSG, &opened);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(on_sock_send, struct sock *sk, int ret, int flags)
{
	return sock_io(sk, ret, flags, DIR_EGRESS);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(on_sock_recv, struct sock *sk, int ret, int flags)
{
	return sock_io(sk, ret, flags, DIR_INGRESS);
}

/* ---- per-syscall kernel metrics (base tier) -------------------------------
 *
 * A send syscall on TCP pushes its segments down the stack on its own
 * thread: tcp_sendmsg -> ip_queue_xmit -> dev_queue_xmit -> driver, all
 * before the syscall returns (unless the congestion window holds them back).
 * So a tracepoint that fires for an skb of socket S, on a thread that is
 * inside a send syscall on S, is work of that syscall: the thread's
 * inflight entry accumulates it and the syscall's last data event carries
 * it. Skbs that leave later from softirq are not attributed to a syscall.
 */

/* The current thread's send syscall whose packet skb is in the device path.
 * Matched by skb, not skb->sk: drivers such as loopback orphan the skb
 * before net_dev_xmit fires. */
static __always_inline struct syscall_args *send_of_skb(const void *skb)
{
	struct syscall_args *a = current_args();

	if (!a || a->cur_skb != (__u64)skb || !a->queue_ts)
		return NULL;
	return a;
}

/* The packet of a send (syscall or op window) now in this CPU's device
 * path, and when the driver got it: net_dev_start_xmit and net_dev_xmit
 * compare the skb here (an array lookup the verifier inlines) instead of
 * looking up the thread's task storage for every packet, and net_dev_xmit
 * looks it up only for the packet that matches. A transmit runs its
 * three tracepoints on one CPU with bottom halves off, so no other packet
 * of this CPU is transmitted in between (a packet a qdisc held back leaves
 * later, and the thread's cur_skb check still decides). */
struct xmit_slot {
	__u64 skb;
	__u64 start_ts;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xmit_slot);
} xmit_at SEC(".maps");

static __always_inline struct xmit_slot *cpu_xmit_slot(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&xmit_at, &zero);
}

/* A packet enters the device layer (__dev_queue_xmit). */
SEC("tp_btf/net_dev_queue")
int BPF_PROG(on_dev_queue, struct sk_buff *skb)
{
	/* tp_btf arguments are BTF pointers: plain loads, no probe reads,
	 * in the hooks that run for every packet on the node. */
	struct syscall_args *a = send_of((__u64)skb->sk);
	struct xmit_slot *x;

	if (!a)
		return 0;
	a->m.packets++;
	a->m.packet_bytes += skb->len;
	a->m.ifindex = skb->dev->ifindex;
	a->cur_skb = (__u64)skb;
	a->queue_ts = bpf_ktime_get_ns();
	a->start_ts = 0;
	x = cpu_xmit_slot();
	if (x) {
		x->skb = (__u64)skb;
		x->start_ts = 0;
	}
	return 0;
}

/* The packet is handed to the driver (after the qdisc, if any). */
SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(on_dev_start_xmit, const struct sk_buff *skb, const struct net_device *dev)
{
	struct xmit_slot *x = cpu_xmit_slot();

	if (x && x->skb == (__u64)skb)
		x->start_ts = bpf_ktime_get_ns();
	return 0;
}

/* The driver took the packet. */
SEC("tp_btf/net_dev_xmit")
int BPF_PROG(on_dev_xmit, struct sk_buff *skb, int rc, struct net_device *dev, unsigned int len)
{
	struct xmit_slot *x = cpu_xmit_slot();
	struct syscall_args *a;
	__u64 now, start;

	if (!x || x->skb != (__u64)skb || !x->start_ts)
		return 0;
	start = x->start_ts;
	x->skb = x->start_ts = 0;
	a = send_of_skb(skb);
	if (!a)
		return 0;
	now = bpf_ktime_get_ns();
	a->m.l2_ns += now - a->queue_ts;
	a->m.ready_ns += start - a->queue_ts;
	a->m.device_ns += now - start;
	a->m.xmit_seen++;
	a->queue_ts = a->cur_skb = 0;
	return 0;
}

/* TCP retransmits a segment. From the send path it is counted to the send
 * syscall in flight. Most retransmits come from elsewhere: the retransmit
 * timer, a tail loss probe, or fast retransmit on an incoming ACK, none of
 * them in a syscall of the connection. Those become one small record each,
 * so a lossy keep-alive connection shows its retransmits while it lives
 * (the tcp_sock total read at close is not added again). A retransmit is
 * rare next to the data records, so the ring has room for them. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(on_retransmit, const struct sock *sk, const struct sk_buff *skb)
{
	__u64 key = (__u64)sk;
	struct syscall_args *a;
	struct retransmit_event *e;
	struct sock_conn *sc;

	/* Since Linux 6.17 the tracepoint also fires for attempts that failed
	 * (its third argument is the error), e.g. -EBUSY while the original
	 * is still queued in the host (a qdisc, a device backlog). The kernel counts only sent
	 * retransmits in total_retrans, and so do we. Before 6.17 it fired for
	 * sent ones only and has two arguments; the CO-RE check makes the read
	 * of the third dead code the verifier skips there. */
	if (bpf_core_field_exists(struct trace_event_raw_tcp_retransmit_skb, err) && (int)ctx[2] != 0)
		return 0;
	a = send_of(key);

	/* Segments, as the socket's total_retrans counts them: a retransmitted
	 * skb still holding several MSS of a GSO send counts for each. The
	 * count lives in the skb's TCP control block; one read per retransmit. */
	__u16 segs = BPF_CORE_READ((struct tcp_skb_cb *)&skb->cb[0], tcp_gso_segs);

	if (!segs)
		segs = 1;
	if (a) {
		a->m.retrans += segs;
		return 0;
	}
	sc = bpf_map_lookup_elem(&socks, &key);
	if (!sc)
		return 0; /* not an enrolled pod's connection */
	/* The close event carried the socket's total_retrans: a retransmit
	 * after it (FIN_WAIT1 on, data still queued) would be counted twice
	 * against that total. The syscall tier removes the entry at close. */
	if (sc->closed)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(DROP_RINGBUF_FULL);
		return 0;
	}
	e->type = EVENT_RETRANSMIT;
	e->state = sk->__sk_common.skc_state;
	e->segs = segs;
	__builtin_memset(e->_pad, 0, sizeof(e->_pad));
	e->conn_id = sc->conn_id;
	e->ts = bpf_ktime_get_ns();
	bpf_ringbuf_submit(e, RB_FLAGS);
	return 0;
}

/*
 * An skb is freed as dropped. skb->sk is set for packets a local socket
 * sent (netfilter OUTPUT, qdisc, device drops) and for received packets
 * already matched to a socket; drops before the socket lookup (e.g. a
 * netfilter INPUT rule) have no socket and are not attributed to a
 * connection. Reasons are the kernel's enum skb_drop_reason values; 0 and
 * SKB_CONSUMED are normal frees, not drops.
 */
static __always_inline void count_pod_drop(__u32 pod, __u32 reason)
{
	struct pod_drop_key k = {.pod_id = pod, .reason = reason};
	__u64 one = 1, *v = bpf_map_lookup_elem(&pod_drops, &k);

	if (v) {
		*v += 1;
		return;
	}
	if (bpf_map_update_elem(&pod_drops, &k, &one, BPF_NOEXIST))
		count(DROP_POD_DROPS_MAP_FULL);
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(on_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	__u64 sk = (__u64)skb->sk;
	struct syscall_args *a;
	struct sock_conn *sc;

	if (!sk || reason == SKB_NOT_DROPPED_YET)
		return 0;
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_CONSUMED) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_CONSUMED))
		return 0;
	sc = bpf_map_lookup_elem(&socks, &sk);
	if (!sc)
		return 0;
	add_drop(sc->drops, CONN_DROP_SLOTS, reason, 1);
	count_pod_drop(sc->proc.pod_id, reason);
	a = send_of(sk);
	if (a)
		add_drop(a->m.drops, SYSCALL_DROP_SLOTS, reason, 1);
	return 0;
}

/* ---- process lifecycle (tp_btf: typed task pointers, no tracefs) ---------- */

static __always_inline void emit_proc(__u8 type, struct task_struct *t, __u32 pod, __u64 netns,
				      __s32 exit_code, struct linux_binprm *bprm)
{
	struct process_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count(DROP_RINGBUF_FULL);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->type = type;
	e->ts = bpf_ktime_get_ns();
	e->ppid = BPF_CORE_READ(t, real_parent, tgid);
	e->exit_code = exit_code;
	e->proc.netns = netns;
	e->proc.pod_id = pod;
	/* t is not current for fork: the child inherited the parent's cgroup. */
	e->proc.cgroup_id = bpf_get_current_cgroup_id();
	e->proc.tgid = BPF_CORE_READ(t, tgid);
	e->proc.tid = BPF_CORE_READ(t, pid);
	bpf_probe_read_kernel_str(e->proc.comm, sizeof(e->proc.comm), t->comm);
	if (bprm)
		bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(bprm, filename));
	bpf_ringbuf_submit(e, RB_FLAGS);
}

/* Fires for new processes and new threads alike. Records every monitored
 * task; reports new processes (a forked worker that never execs is still
 * named to user space). */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 pod, tid = BPF_CORE_READ(child, pid);
	__u64 netns;

	if (!task_pod(child, &pod, &netns))
		return 0;
	if (bpf_map_update_elem(&procs, &tid, &pod, BPF_ANY))
		count(DROP_PROC_MAP_FULL);
	if (tid == BPF_CORE_READ(child, tgid))
		emit_proc(EVENT_PROC_FORK, child, pod, netns, 0, NULL);
	return 0;
}

/* A monitored process replaced its image: report the new name and path. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 pod, tid = BPF_CORE_READ(p, pid);
	__u64 netns;

	if (!task_pod(p, &pod, &netns))
		return 0;
	if (bpf_map_update_elem(&procs, &tid, &pod, BPF_ANY))
		count(DROP_PROC_MAP_FULL);
	emit_proc(EVENT_PROC_EXEC, p, pod, netns, 0, bprm);
	return 0;
}

/* A task exits. Its procs entry goes; when it was the last thread of its
 * group (signal->live already dropped to zero at this point of do_exit),
 * the process is reported gone so user space can close its connections —
 * its fds are released without close syscalls, and the matching conns
 * entries age out of the LRU. The procs entry answers even if the task
 * setns'd out of the pod's namespace. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
	__u32 pod, tid = BPF_CORE_READ(p, pid);
	__u32 *known = bpf_map_lookup_elem(&procs, &tid);
	__u64 netns = BPF_CORE_READ(p, nsproxy, net_ns, ns.inum);

	if (known) {
		pod = *known;
		bpf_map_delete_elem(&procs, &tid);
	} else if (!task_pod(p, &pod, &netns)) {
		return 0;
	}
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0; /* other threads of the process live on */
	emit_proc(EVENT_PROC_EXIT, p, pod, netns, BPF_CORE_READ(p, exit_code), NULL);
	return 0;
}

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

/* ---- receive path: stamps on skbs, read by the copying syscall ------------
 *
 * A received skb is stamped when its device hands it to the stack (only in
 * enrolled namespaces, so the map sees pod traffic, not the node's) and
 * again when TCP takes it into an established socket. The reading thread's
 * skb_copy_datagram_iovec then turns the stamps into the read's
 * to-queue and from-queue times. Keyed by skb pointer in an LRU map: a
 * reused skb is stamped afresh on its next receive.
 */
struct rx_stamp {
	__u64 rx_ns;
	__u64 queue_ns;
	__u32 ifindex;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct rx_stamp);
} rx_stamps SEC(".maps");

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(on_netif_receive, struct sk_buff *skb)
{
	__u64 ino = skb->dev->nd_net.net->ns.inum;
	struct rx_stamp fresh = {}, *st;
	__u64 key = (__u64)skb;

	/* The filter bits alone, as in op_window: a stamp only serves the
	 * reads of enrolled sockets, and a namespace sharing a bit with an
	 * enrolled one costs stamps nobody reads, nothing else. */
	if (!netns_maybe_enrolled(ino))
		return 0;
	/* skb heads come back from a per-CPU cache, so the stamp of an
	 * earlier skb at this address is usually still here: overwritten in
	 * place. An LRU update would take a free node from the LRU list and
	 * push the replaced one back on every packet, which perf showed as
	 * two thirds of this program's time. Only one skb lives at an address
	 * at a time, so no reader of the old stamp remains. */
	st = bpf_map_lookup_elem(&rx_stamps, &key);
	if (st) {
		st->rx_ns = bpf_ktime_get_ns();
		st->queue_ns = 0;
		st->ifindex = skb->dev->ifindex;
		return 0;
	}
	fresh.rx_ns = bpf_ktime_get_ns();
	fresh.ifindex = skb->dev->ifindex;
	if (bpf_map_update_elem(&rx_stamps, &key, &fresh, BPF_ANY))
		count(DROP_RX_STAMP_MAP_FULL);
	return 0;
}

/* tcp_rcv_established begins: the segment is about to be queued. */
SEC("tp_btf/tcp_probe")
int BPF_PROG(on_tcp_probe, struct sock *sk, const struct sk_buff *skb)
{
	__u64 key = (__u64)skb;
	struct rx_stamp *st;

	/* Only skbs of enrolled namespaces were stamped: the others' sockets
	 * are turned away by the filter bits before the stamp lookup. */
	if (!netns_maybe_enrolled(sk->__sk_common.skc_net.net->ns.inum))
		return 0;
	st = bpf_map_lookup_elem(&rx_stamps, &key);

	if (st && !st->queue_ns)
		st->queue_ns = bpf_ktime_get_ns();
	return 0;
}

/* The reader copies from skb: attribute it to the thread's receive syscall. */
SEC("tp_btf/skb_copy_datagram_iovec")
int BPF_PROG(on_skb_copy, const struct sk_buff *skb, int len)
{
	__u64 key = (__u64)skb;
	struct syscall_args *a;
	struct rx_stamp *st;
	bool opened = false;
	__u64 now;

	if (socket_tier) {
		/* The first copy of an enrolled socket's op opens its window. */
		a = op_window(skb->sk, SYS_RECVMSG, &opened);
		if (!a)
			return 0;
	} else {
		a = current_args();
		if (!a || a->sk != (__u64)skb->sk)
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
	}
	if (len > 0)
		a->r.packet_bytes += len;
	if (a->r.last_skb == key)
		return 0;
	a->r.last_skb = key;
	a->r.packets++;
	st = bpf_map_lookup_elem(&rx_stamps, &key);
	if (!st || !st->queue_ns || st->queue_ns < st->rx_ns) {
		a->r.unstamped++;
		count(DROP_RX_UNSTAMPED);
		return 0;
	}
	/* A window opened by this copy was stamped a moment ago. */
	now = opened ? a->start_ns : bpf_ktime_get_ns();
	a->r.ifindex = st->ifindex;
	a->r.to_queue_ns += st->queue_ns - st->rx_ns;
	a->r.from_queue_ns += now - st->queue_ns;
	return 0;
}
