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
volatile const __u64 capture_limit = 1ULL << 20;  /* per conn and direction; 0 = unlimited */

/* Source of connection ids; 0 is never handed out. */
__u64 next_conn_id = 0;

/* netns inode -> pod id, written by user space at enrollment. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u32);
} enrolled_netns SEC(".maps");

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
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct conn_state);
} conns SEC(".maps");

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
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct syscall_args);
} inflight SEC(".maps");

/* tid -> pod id of monitored tasks, maintained by fork/exec/exit and seeded
 * by user space's scan of already-running processes at enrollment. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u32);
} procs SEC(".maps");

/* Drop counters, indexed by enum drop_reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/*
 * State of one syscall's walk over its bytes, for the bpf_loop callback.
 * It lives in the scratch map value, not on the stack, on purpose: the
 * verifier does not track map value contents, so every iteration of the
 * callback looks alike to it and verification converges at once. On the
 * stack, the changing lengths made each iteration a new verifier state
 * and the programs hit the million-instruction limit.
 */
struct chunk_loop {
	__u64 iov;      /* user iovec array, or 0 for a single buffer */
	__u64 base;     /* next byte of the current segment */
	__u64 seg_left; /* bytes left in the current segment */
	__u64 left;     /* bytes of the syscall not yet covered by an event */
	__u64 budget;   /* bytes this direction may still capture */
	__u64 seq;
	__u64 offset;
	__u64 captured;
	__u32 iov_idx;
	__u32 iov_cnt;
	__u32 stop; /* drop_reason + 1 that ended the walk early, or 0 */
	__u32 _pad;
};

/* Scratch for building data events: too large for the 512-byte stack. Per
 * CPU is safe because programs on one CPU do not nest here (the kernel's
 * bpf_prog_active guard skips a tracing program re-entered on that CPU). */
struct data_scratch {
	struct chunk_loop loop;
	struct data_event hdr;
	__u8 payload[MAX_CHUNK_SIZE];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct data_scratch);
} scratch SEC(".maps");

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
	enum event_type a;
	enum conn_role b;
	enum direction c;
	enum syscall_id d;
	enum drop_reason e;
};
const struct btf_anchor *unused_btf_anchor __attribute__((unused));

/* ---- helpers ------------------------------------------------------------ */

static __always_inline void count(__u32 reason)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &reason);

	if (v)
		*v += 1; /* per-CPU slot: no atomics needed */
}

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
	__u64 ino = BPF_CORE_READ(t, nsproxy, net_ns, ns.inum);
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
	fdt = BPF_CORE_READ(t, files, fdt);
	if (!fdt || (__u32)fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	fds = BPF_CORE_READ(fdt, fd);
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

static __always_inline bool save_args(struct syscall_args *a)
{
	__u64 id = bpf_get_current_pid_tgid();

	if (bpf_map_update_elem(&inflight, &id, a, BPF_ANY)) {
		count(DROP_ARGS_MAP_FULL);
		return false;
	}
	return true;
}

/* Moves the current thread's saved arguments into *a. */
static __always_inline bool take_args(struct syscall_args *a)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct syscall_args *p = bpf_map_lookup_elem(&inflight, &id);

	if (!p)
		return false;
	*a = *p;
	bpf_map_delete_elem(&inflight, &id);
	return true;
}

/*
 * Emits a connection event. Addresses come from the socket; for connect the
 * remote side comes from the sockaddr the caller passed, because a failed
 * connect has already cleared it from the socket by the time it returns.
 */
static __always_inline void emit_conn(__u8 type, const struct conn_state *cs,
				      const struct syscall_args *a, __u8 syscall, __s32 fd,
				      __u64 sk_ptr, __u64 end_ns, long ret)
{
	struct sock *sk = (struct sock *)sk_ptr;
	struct conn_event *e;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(DROP_RINGBUF_FULL);
		return;
	}
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
	bpf_ringbuf_submit(e, 0);
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

/* ---- data chunking -------------------------------------------------------- */

/* Emits one data event covering size stream bytes, the first want of them
 * copied from user address src. The header's fixed fields are already set
 * by report_data. */
static __always_inline void emit_chunk(struct data_scratch *s, __u64 src, __u32 size, __u32 want)
{
	struct chunk_loop *l = &s->loop;
	__u8 truncated = want < size;
	__u32 n;

	/* Read the length back from the map value so the verifier bounds it
	 * by the clamp below alone, not by where it came from. */
	*(volatile __u32 *)&s->hdr.captured = want;
	n = *(volatile __u32 *)&s->hdr.captured;
	if (n > MAX_CHUNK_SIZE)
		n = MAX_CHUNK_SIZE;
	if (n && bpf_probe_read_user(s->payload, n, (const void *)src)) {
		count(DROP_READ_USER_FAILED);
		n = 0;
		truncated = 1;
	}
	s->hdr.seq = l->seq++;
	s->hdr.offset = l->offset;
	s->hdr.size = size;
	s->hdr.captured = n;
	s->hdr.truncated = truncated;
	l->offset += size;
	l->captured += n;
	if (bpf_ringbuf_output(&events, &s->hdr, sizeof(s->hdr) + n, 0))
		count(DROP_RINGBUF_FULL);
}

/* One bpf_loop iteration: emit at most one chunk with payload. */
static long chunk_step(__u32 i, void *ctx)
{
	__u32 zero = 0;
	struct data_scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	struct chunk_loop *l;
	__u64 n;

	if (!s)
		return 1;
	l = &s->loop;
	if (!l->left)
		return 1;
	if (!l->seg_left) {
		struct iovec v;

		if (!l->iov || l->iov_idx >= l->iov_cnt) {
			l->stop = DROP_IOV_LIMIT + 1;
			return 1;
		}
		if (bpf_probe_read_user(&v, sizeof(v), (const void *)(l->iov + (__u64)l->iov_idx * sizeof(v)))) {
			l->stop = DROP_READ_USER_FAILED + 1;
			return 1;
		}
		l->iov_idx++;
		l->base = (__u64)v.iov_base;
		l->seg_left = min64(v.iov_len, l->left);
		if (!l->seg_left)
			return 0;
	}
	if (!l->budget) {
		l->stop = DROP_CAPTURE_LIMIT + 1;
		return 1;
	}
	n = min64(min64(l->seg_left, chunk_size), l->budget);
	emit_chunk(s, l->base, n, n);
	l->base += n;
	l->seg_left -= n;
	l->left -= n;
	l->budget -= n;
	return 0;
}

struct mmsg_sum {
	__u64 vec;
	__u64 total;
};

/* Adds msg_len of message i+1 of a mmsghdr vector (UAPI layout). */
static long mmsg_step(__u32 i, void *ctx)
{
	struct mmsg_sum *m = ctx;
	__u32 len = 0;
	__u64 at = m->vec + (__u64)(i + 1) * sizeof(struct mmsghdr) +
		   __builtin_offsetof(struct mmsghdr, msg_len);

	if (bpf_probe_read_user(&len, sizeof(len), (const void *)at))
		return 1;
	m->total += len;
	return 0;
}

/*
 * Reports ret bytes moved by a data syscall on a TCP socket: up to MAX_CHUNKS
 * events with payload (consecutive Seq, increasing offset), then, if bytes
 * remain, one size-only event so offsets and byte counts stay exact.
 */
static __always_inline void report_data(struct syscall_args *a, long ret, __u8 dir, __u8 syscall)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 now = bpf_ktime_get_ns();
	__u64 key = conn_key(id, a->fd);
	struct conn_state *cs = bpf_map_lookup_elem(&conns, &key);
	struct data_scratch *s;
	struct chunk_loop *l;
	__u32 rest_reason = 0;
	__u64 rest = 0;
	__u32 zero = 0;

	dir &= 1;
	if (!cs || cs->sk != a->sk) {
		/* First sight of this socket on this fd (inherited, scanned,
		 * or fd reused): a connection of unknown role. */
		cs = open_conn(key, new_conn_id(), a->sk, ROLE_UNKNOWN);
		if (!cs)
			return;
		emit_conn(EVENT_CONN_OPEN, cs, a, syscall, a->fd, a->sk, a->start_ns, 0);
	}

	s = bpf_map_lookup_elem(&scratch, &zero);
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

	l = &s->loop;
	__builtin_memset(l, 0, sizeof(*l));
	l->seq = cs->seq[dir];
	l->offset = cs->bytes[dir];
	l->captured = cs->captured[dir];
	l->budget = ~0ULL;
	if (capture_limit)
		l->budget = capture_limit > l->captured ? capture_limit - l->captured : 0;
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
			l->stop = DROP_READ_USER_FAILED + 1;
			break;
		}
		l->iov = (__u64)m.msg_iov;
		l->iov_cnt = m.msg_iovlen;
		break;
	}
	case SYS_SENDMMSG:
	case SYS_RECVMMSG: {
		/* ret counts messages. The first message is captured; the
		 * others are summed (bounded by MAX_MMSGS) and reported
		 * size-only, so offsets stay exact. */
		struct mmsghdr m0;
		struct mmsg_sum sum = { .vec = a->buf };
		__u64 n = ret;

		if (bpf_probe_read_user(&m0, sizeof(m0), (const void *)a->buf)) {
			count(DROP_READ_USER_FAILED);
			return;
		}
		if (n > MAX_MMSGS) {
			count(DROP_MMSG_LIMIT);
			n = MAX_MMSGS;
		}
		if (n > 1)
			bpf_loop(n - 1, mmsg_step, &sum, 0);
		l->iov = (__u64)m0.msg_hdr.msg_iov;
		l->iov_cnt = m0.msg_hdr.msg_iovlen;
		l->left = m0.msg_len;
		rest = sum.total;
		rest_reason = DROP_MMSG_PAYLOAD + 1;
		break;
	}
	case SYS_SENDFILE:
		/* The bytes came from a file, not a user buffer: size only. */
		rest = l->left;
		l->left = 0;
		break;
	default: /* read, write, sendto, recvfrom: one buffer */
		l->base = a->buf;
		l->seg_left = ret;
		break;
	}
	if (l->iov_cnt > MAX_IOVECS)
		l->iov_cnt = MAX_IOVECS;

	/* Each iteration emits at most one chunk (zero-length iovecs use one
	 * up without emitting); bytes left when the loop ends go size-only. */
	if (!l->stop && l->left)
		bpf_loop(MAX_CHUNKS, chunk_step, NULL, 0);
	if (l->left) {
		count(l->stop ? l->stop - 1 : DROP_CHUNK_TRUNCATED);
		rest += l->left;
	}
	if (rest) {
		if (rest_reason)
			count(rest_reason - 1);
		emit_chunk(s, 0, rest, 0);
	}

	cs->seq[dir] = l->seq;
	cs->bytes[dir] = l->offset;
	cs->captured[dir] = l->captured;
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
		if (cs)
			emit_conn(EVENT_CONN_OPEN, cs, &a, SYS_CONNECT, a.fd, a.sk, now, ret);
		return 0;
	}
	if (ret == -EALREADY || ret == -EISCONN)
		return 0; /* polling an attempt already reported */

	/* Failed. If this socket's earlier non-blocking attempt was reported
	 * in progress, the failure reuses its conn id. */
	failed.conn_id = same ? cs->conn_id : new_conn_id();
	if (same)
		bpf_map_delete_elem(&conns, &key);
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
	if (cs)
		emit_conn(EVENT_CONN_OPEN, cs, &a, a.syscall, ret, sk, now, 0);
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

/* close(fd): ends a tracked connection and drops its state. Only fds with
 * state for the very socket they hold are considered. */
SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct trace_event_raw_sys_enter *ctx)
{
	struct syscall_args a = {};
	struct conn_state *cs;
	__u64 key;

	if (!current_pod(&a.pod_id, &a.netns))
		return 0;
	a.fd = ctx->args[0];
	key = conn_key(bpf_get_current_pid_tgid(), a.fd);
	cs = bpf_map_lookup_elem(&conns, &key);
	if (!cs)
		return 0;
	a.sk = tcp_sock_of_fd(a.fd);
	if (a.sk != cs->sk) {
		bpf_map_delete_elem(&conns, &key); /* stale: the fd moved on */
		return 0;
	}
	a.start_ns = bpf_ktime_get_ns();
	a.syscall = SYS_CLOSE;
	save_args(&a);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_close")
int exit_close(struct trace_event_raw_sys_exit *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	struct conn_state *cs;
	struct syscall_args a;
	__u64 key;

	if (!take_args(&a))
		return 0;
	key = conn_key(bpf_get_current_pid_tgid(), a.fd);
	cs = bpf_map_lookup_elem(&conns, &key);
	if (!cs || cs->sk != a.sk)
		return 0;
	/* close releases the fd even when it reports an error. */
	emit_conn(EVENT_CONN_CLOSE, cs, &a, SYS_CLOSE, a.fd, a.sk, now, ctx->ret);
	bpf_map_delete_elem(&conns, &key);
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
	bpf_ringbuf_submit(e, 0);
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
