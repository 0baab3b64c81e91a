// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
/*
 * Part of capture.bpf.c, included by it once (not a standalone header).
 *
 * The syscall capture tier (the fallback where the socket tracepoints are missing): syscall
 * enter/exit tracepoints, and the outcome of a non-blocking connect.
 */

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
	/* Its TLS plaintext's state, if the TLS set made one: the fd number
	 * is reused, and a new connection must not continue its offsets. */
	key |= TLS_KEY_BIT;
	bpf_map_delete_elem(&conns, &key);
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
