// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
/*
 * Part of capture.bpf.c, included by it once (not a standalone header).
 *
 * The socket capture tier (the default): payload and lifecycle at the socket, not the syscall.
 */

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
 * The richer tier (tier.bpf.c), when loaded, opens a send's window earlier,
 * at tcp_sendmsg's entry (so its L4 time lies inside the op), and may open
 * a receive's window at the first copy if its program runs before this
 * one: both through window_open (inflight.h), so the window is the same.
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
	window_open(a, (__u64)sk, label, bpf_ktime_get_ns());
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
