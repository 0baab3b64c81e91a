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

/* Load-time knobs, set from Go through CollectionSpec.Variables. */
volatile const __u32 chunk_size = 4096;           /* 1..MAX_CHUNK_SIZE */
volatile const __u64 capture_limit = 1ULL << 20;  /* budget per conn and direction (see report_data); 0 = unlimited */
volatile const __u32 capture_payload = 1;         /* 0: events carry sizes and metrics, never payload */
volatile const __u32 max_frame_copy = 64 << 10;   /* HTTP/2 non-DATA frame payloads copied up to this */

/* HTTP/2 DATA payloads up to this many bytes are copied even past the
 * budget: a data event's header is about this large, so copying is cheaper
 * for the ring and the reader than splitting the event around the skip. */
#define H2_SMALL_DATA 256

/* Source of connection ids; 0 is never handed out. */
__u64 next_conn_id = 0;

/* enrolled_netns (netns inode -> pod id) and the drop counters are in
 * shared.h: the richer tier reuses them. */
#include "shared.h"

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
	__u8 hdr[24];    /* the frame header being collected (9 used; room for
			  * the verifier's bound on a read at hdr_have) */
};

/* Per-connection state, keyed by tgid << 32 | fd. LRU because a process can
 * exit without closing (no close syscall then): stale entries age out, and a
 * stale entry whose socket differs from the fd's current one is replaced. */
struct conn_state {
	__u64 conn_id;
	__u64 sk;
	__u64 seq[2];      /* next Seq per direction */
	__u64 bytes[2];    /* stream offset per direction (= bytes moved) */
	__u64 captured[2]; /* payload bytes emitted per direction */
	__u8 role;
	__u8 _pad[7];
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
	__u8 _pad[2];
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
	__u64 offset;   /* stream offset of the event being gathered */
	__u64 captured;
	__u64 pos;      /* stream offset of the next byte walked */
	__u64 body_from, body_to; /* HTTP/1 hint: skipped body range */
	__u32 iov_idx;
	__u32 iov_cnt;
	__u32 stop;     /* skip_reason that ended the walk early, or 0 */
	__u32 events;   /* events emitted */
	/* The event being gathered: cover stream bytes, the first fill copied. */
	__u32 cover;
	__u32 fill;
	__u8 skip;      /* skip_reason of the gathered event's suffix */
	__u8 h1;        /* user space hinted HTTP/1 */
	__u8 tail;      /* out of events: the rest is skipped, still walked */
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
	p = bpf_map_lookup_elem(&enrolled_netns, &ino);
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

/* Identity of the current thread. */
static __always_inline void fill_proc(struct proc_info *p, __u32 pod, __u64 netns)
{
	__u64 id = bpf_get_current_pid_tgid();

	p->netns = netns;
	p->cgroup_id = bpf_get_current_cgroup_id();
	p->tgid = id >> 32;
	p->tid = (__u32)id;
	p->pod_id = pod;
	bpf_get_current_comm(p->comm, sizeof(p->comm));
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
	st->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;  /* stored << 3 */
	st->mdev_us = BPF_CORE_READ(tp, mdev_us) >> 2;  /* stored << 2 */
	st->total_retrans = BPF_CORE_READ(tp, total_retrans);
	st->measured |= METRIC_RTT | METRIC_RETRANSMITS;
}

/*
 * Emits a connection event. Addresses come from the socket; for connect the
 * remote side comes from the sockaddr the caller passed, because a failed
 * connect has already cleared it from the socket by the time it returns.
 */
static __always_inline void fill_conn(struct conn_event *e, __u8 type, const struct conn_state *cs,
				      const struct syscall_args *a, __u8 syscall, __s32 fd,
				      __u64 sk_ptr, __u64 end_ns, long ret)
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

static __always_inline void emit_conn(__u8 type, const struct conn_state *cs,
				      const struct syscall_args *a, __u8 syscall, __s32 fd,
				      __u64 sk_ptr, __u64 end_ns, long ret)
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
static __always_inline void track_sock(__u64 sk, const struct conn_state *cs,
				       const struct syscall_args *a, __s32 fd, bool connecting)
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
	bool hdr = false;
	__u32 pos, hh;

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
		if (bpf_probe_read_user(&v, sizeof(v), (const void *)(l->iov + (__u64)l->iov_idx * sizeof(v)))) {
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
		if (bpf_probe_read_user(w->hdr + hh, n, (const void *)l->base)) {
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
	return 0;
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
 */
static __always_inline void report_data(struct syscall_args *a, long ret, __u8 dir, __u8 syscall)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 now = bpf_ktime_get_ns();
	__u64 key = conn_key(id, a->fd);
	struct conn_state *cs = bpf_map_lookup_elem(&conns, &key);
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
	s->hdr.syscall = syscall;
	s->hdr.fd = a->fd;
	s->hdr.conn_id = cs->conn_id;
	s->hdr.start_ns = a->start_ns;
	s->hdr.end_ns = now;
	fill_proc(&s->hdr.proc, a->pod_id, a->netns);
	__builtin_memset(&s->hdr.send, 0, sizeof(s->hdr.send));
	__builtin_memset(&s->hdr.recv, 0, sizeof(s->hdr.recv));
	if (dir == DIR_EGRESS)
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
	hint = bpf_map_lookup_elem(&h1_hints, &cs->conn_id);
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
	report_data(&a, ret, dir, syscall);
	return 0;
}

/* read/write family: args are (fd, buf or iovec or msghdr, count or vlen). */
#define DATA_HOOKS(name, id, dir)                                                    \
	SEC("tracepoint/syscalls/sys_enter_" #name)                                  \
	int enter_##name(struct trace_event_raw_sys_enter *ctx)                      \
	{                                                                            \
		return data_enter(id, ctx->args[0], ctx->args[1], ctx->args[2]);     \
	}                                                                            \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                   \
	int exit_##name(struct trace_event_raw_sys_exit *ctx)                        \
	{                                                                            \
		return data_exit(ctx->ret, dir, id);                                 \
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
	struct conn_state *cs, failed = { .role = ROLE_CLIENT };
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

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_sock_state, const struct sock *sk, const int oldstate, const int newstate)
{
	__u64 key = (__u64)sk;
	struct sock_conn *sc;
	int err;

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

/* A packet enters the device layer (__dev_queue_xmit). */
SEC("tp_btf/net_dev_queue")
int BPF_PROG(on_dev_queue, struct sk_buff *skb)
{
	/* tp_btf arguments are BTF pointers: plain loads, no probe reads,
	 * in the hooks that run for every packet on the node. */
	struct syscall_args *a = send_of((__u64)skb->sk);

	if (!a)
		return 0;
	a->m.packets++;
	a->m.packet_bytes += skb->len;
	a->m.ifindex = skb->dev->ifindex;
	a->cur_skb = (__u64)skb;
	a->queue_ts = bpf_ktime_get_ns();
	a->start_ts = 0;
	return 0;
}

/* The packet is handed to the driver (after the qdisc, if any). */
SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(on_dev_start_xmit, const struct sk_buff *skb, const struct net_device *dev)
{
	struct syscall_args *a = send_of_skb(skb);

	if (a)
		a->start_ts = bpf_ktime_get_ns();
	return 0;
}

/* The driver took the packet. */
SEC("tp_btf/net_dev_xmit")
int BPF_PROG(on_dev_xmit, struct sk_buff *skb, int rc, struct net_device *dev, unsigned int len)
{
	struct syscall_args *a = send_of_skb(skb);
	__u64 now = bpf_ktime_get_ns();

	if (!a || !a->start_ts)
		return 0;
	a->m.l2_ns += now - a->queue_ts;
	a->m.ready_ns += a->start_ts - a->queue_ts;
	a->m.device_ns += now - a->start_ts;
	a->m.xmit_seen++;
	a->queue_ts = a->start_ts = a->cur_skb = 0;
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
	struct pod_drop_key k = { .pod_id = pod, .reason = reason };
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
	struct dev_key k = { .ifindex = skb->ifindex, .ingress = ingress };
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
	struct rx_stamp st = {};
	__u64 key = (__u64)skb;

	if (!bpf_map_lookup_elem(&enrolled_netns, &ino))
		return 0;
	st.rx_ns = bpf_ktime_get_ns();
	st.ifindex = skb->dev->ifindex;
	if (bpf_map_update_elem(&rx_stamps, &key, &st, BPF_ANY))
		count(DROP_RX_STAMP_MAP_FULL);
	return 0;
}

/* tcp_rcv_established begins: the segment is about to be queued. */
SEC("tp_btf/tcp_probe")
int BPF_PROG(on_tcp_probe, struct sock *sk, const struct sk_buff *skb)
{
	__u64 key = (__u64)skb;
	struct rx_stamp *st = bpf_map_lookup_elem(&rx_stamps, &key);

	if (st && !st->queue_ns)
		st->queue_ns = bpf_ktime_get_ns();
	return 0;
}

/* The reader copies from skb: attribute it to the thread's receive syscall. */
SEC("tp_btf/skb_copy_datagram_iovec")
int BPF_PROG(on_skb_copy, const struct sk_buff *skb, int len)
{
	__u64 key = (__u64)skb;
	struct syscall_args *a = current_args();
	struct rx_stamp *st;
	__u64 now;

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
	now = bpf_ktime_get_ns();
	a->r.ifindex = st->ifindex;
	a->r.to_queue_ns += st->queue_ns - st->rx_ns;
	a->r.from_queue_ns += now - st->queue_ns;
	return 0;
}
