// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
/*
 * TLS plaintext: uprobes on OpenSSL's SSL_write/SSL_write_ex and
 * SSL_read/SSL_read_ex (1.1 and 3.x share these signatures; BoringSSL's
 * libssl has SSL_write/SSL_read with the same ones), and on Go
 * crypto/tls's (*Conn).Write and (*Conn).Read in Go binaries, for
 * processes whose network namespace is enrolled.
 *
 * Why this file includes capture.bpf.c: the plaintext must be copied with
 * exactly the walker, typed skips, budget and HTTP/1 hints of socket data
 * (report_data). Including the capture core compiles that code into this
 * object; user space loads only the programs defined here and hands them
 * the capture collection's maps (conns, events, scratch, h1_hints,
 * counters, enrolled_netns...) in place of this object's copies, so both
 * sets share one state. No code of the capture core is duplicated.
 *
 * How plaintext joins its TCP connection: while a thread is inside an SSL
 * call (ssl_calls, keyed by pid_tgid) or a goroutine inside a crypto/tls
 * call (go_calls), the socket I/O the thread does names the connection
 * (tls_link), which is remembered for the SSL object too (ssl_socks): an
 * SSL_read served from OpenSSL's buffer does no socket I/O of its own.
 * Each capture tier names it with its own key of conns:
 *  - socket tier: this set's tp_btf on sock_send_length and
 *    sock_recv_length, by the socket's cookie;
 *  - syscall tier (no socket tracepoints, e.g. 6.1): this set's program
 *    on the sys_enter tracepoints of the read/write syscalls, by the
 *    thread's in-flight syscall slot the capture core filled for the same
 *    syscall (tgid << 32 | fd, and the socket).
 * At the call's return, the plaintext is reported under the TCP
 * connection's conn id, with its own sequence numbers and stream offsets
 * (a conn_state keyed by the connection's key | TLS_KEY_BIT) and the
 * syscall id SYS_SSL_WRITE/SYS_SSL_READ, by which user space tells
 * plaintext from the ciphertext the capture core reports for the same
 * connection.
 *
 * Cost: the uprobes are attached per library file (inode), so every
 * process mapping that file traps; a process outside an enrolled namespace
 * pays the trap and one map lookup (task_pod) and nothing else.
 */
#include "capture.bpf.c"

enum call_kind {
	CALL_IO,        /* OpenSSL call or Go Read: ends at its return */
	CALL_HANDSHAKE, /* Go handshake: only learns the *Conn's socket */
	CALL_GO_WRITE,  /* Go Write: no return probe, reported at its first send */
};

/* An SSL call in flight on a thread, from entry to return. */
struct ssl_call {
	__u64 ssl;     /* SSL * */
	__u64 buf;     /* plaintext buffer */
	__u64 out_len; /* _ex: size_t * receiving the bytes moved; else 0 */
	__u64 conn;    /* conns key of the connection the call moved bytes on, 0 until seen */
	__u64 sk;
	__u64 start_ns;
	__u64 netns;
	__u32 pod_id;
	__u8 dir;      /* enum direction */
	__u8 kind;     /* enum call_kind */
	__u8 reported; /* Go write: reported at its first socket send */
	__u8 _pad[1];
	__u64 len; /* Go write: bytes asked to be written */
};

/* pid_tgid -> the thread's SSL call. LRU: a thread killed inside a call
 * never returns from it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct ssl_call);
} ssl_calls SEC(".maps");

struct ssl_key {
	__u64 tgid;
	__u64 ssl;
};

struct ssl_sock {
	__u64 conn; /* conns key: socket cookie, or tgid << 32 | fd */
	__u64 sk;
};

/* (tgid, SSL *) -> the socket under it, learned from the calls that did
 * socket I/O. LRU: OpenSSL frees SSL objects without telling us. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ssl_key);
	__type(value, struct ssl_sock);
} ssl_socks SEC(".maps");

/* The arguments report_data takes, off the stack; one slot per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct syscall_args);
} tls_args SEC(".maps");

/* Entry of any of the four calls: the filter (the calling thread's network
 * namespace is enrolled), then the call is put in flight. */
static __always_inline int ssl_enter(__u64 ssl, __u64 buf, __u64 out_len, __u8 dir)
{
	struct ssl_call c = {};
	__u64 id = bpf_get_current_pid_tgid();

	if (!current_pod(&c.pod_id, &c.netns))
		return 0;
	c.ssl = ssl;
	c.buf = buf;
	c.out_len = out_len;
	c.dir = dir;
	c.start_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&ssl_calls, &id, &c, BPF_ANY);
	return 0;
}

/* The end of a TLS call (OpenSSL or Go) that moved n plaintext bytes:
 * they are reported on the TCP connection of the socket the call moved
 * bytes on, or the socket remembered for its SSL * / *tls.Conn. */
static __always_inline void tls_report(struct ssl_call *c, __u64 tgid, __u64 n, __u8 label)
{
	struct conn_state *tcp, *cs;
	struct syscall_args *a;
	__u32 zero = 0;
	__u64 key;

	if (!c->conn) {
		/* No socket I/O in this call: the SSL object's socket. */
		struct ssl_key k = {.tgid = tgid, .ssl = c->ssl};
		struct ssl_sock *s = bpf_map_lookup_elem(&ssl_socks, &k);

		if (!s) {
			count(DROP_TLS_UNLINKED);
			return;
		}
		c->conn = s->conn;
		c->sk = s->sk;
	}
	key = c->conn | TLS_KEY_BIT;
	cs = bpf_map_lookup_elem(&conns, &key);
	if (!cs || cs->sk != c->sk) {
		/* First plaintext of this connection: it takes the TCP
		 * connection's id and role, and streams of its own. */
		tcp = bpf_map_lookup_elem(&conns, &c->conn);
		if (!tcp || tcp->closed || tcp->sk != c->sk) {
			count(DROP_TLS_UNLINKED);
			return;
		}
		if (!open_conn(key, tcp->conn_id, c->sk, tcp->role))
			return;
	}
	a = bpf_map_lookup_elem(&tls_args, &zero);
	if (!a)
		return;
	__builtin_memset(a, 0, sizeof(*a));
	a->start_ns = c->start_ns;
	a->sk = c->sk;
	a->buf = c->buf;
	a->netns = c->netns;
	a->pod_id = c->pod_id;
	a->fd = -1;
	a->syscall = label;
	/* One user buffer, walked as a read or write of it is. */
	report_data(a, n, c->dir, SYS_READ, label, key);
}

/* The attach cookie of the OpenSSL-API probes: which library the probed
 * file is, so its plaintext is labelled with that library's syscall ids. */
#define TLS_LIB_OPENSSL 0
#define TLS_LIB_BORINGSSL 1

/* Return of any of the four calls: n plaintext bytes moved (ret for
 * SSL_read/SSL_write, *out_len when the _ex call returned 1). label is
 * OpenSSL's; a file attached as BoringSSL reports BoringSSL's. */
static __always_inline int ssl_exit(struct pt_regs *ctx, long ret, __u8 label)
{
	__u64 id = bpf_get_current_pid_tgid(), n = 0;
	struct ssl_call *c = bpf_map_lookup_elem(&ssl_calls, &id);

	if (!c)
		return 0;
	if (c->out_len) {
		if (ret == 1 && bpf_probe_read_user(&n, sizeof(n), (const void *)c->out_len))
			n = 0;
	} else if (ret > 0) {
		n = ret;
	}
	if (bpf_get_attach_cookie(ctx) == TLS_LIB_BORINGSSL)
		label = label == SYS_SSL_WRITE ? SYS_BORINGSSL_WRITE : SYS_BORINGSSL_READ;
	if (n)
		tls_report(c, id >> 32, n, label);
	bpf_map_delete_elem(&ssl_calls, &id);
	return 0;
}

SEC("uprobe/SSL_write")
int BPF_KPROBE(ssl_write_enter, void *ssl, const void *buf, int num)
{
	return ssl_enter((__u64)ssl, (__u64)buf, 0, DIR_EGRESS);
}

SEC("uretprobe/SSL_write")
int BPF_KRETPROBE(ssl_write_exit, int ret)
{
	return ssl_exit(ctx, ret, SYS_SSL_WRITE);
}

SEC("uprobe/SSL_write_ex")
int BPF_KPROBE(ssl_write_ex_enter, void *ssl, const void *buf, __u64 num, __u64 *written)
{
	return ssl_enter((__u64)ssl, (__u64)buf, (__u64)written, DIR_EGRESS);
}

SEC("uretprobe/SSL_write_ex")
int BPF_KRETPROBE(ssl_write_ex_exit, int ret)
{
	return ssl_exit(ctx, ret, SYS_SSL_WRITE);
}

SEC("uprobe/SSL_read")
int BPF_KPROBE(ssl_read_enter, void *ssl, void *buf, int num)
{
	return ssl_enter((__u64)ssl, (__u64)buf, 0, DIR_INGRESS);
}

SEC("uretprobe/SSL_read")
int BPF_KRETPROBE(ssl_read_exit, int ret)
{
	return ssl_exit(ctx, ret, SYS_SSL_READ);
}

SEC("uprobe/SSL_read_ex")
int BPF_KPROBE(ssl_read_ex_enter, void *ssl, void *buf, __u64 num, __u64 *readbytes)
{
	return ssl_enter((__u64)ssl, (__u64)buf, (__u64)readbytes, DIR_INGRESS);
}

SEC("uretprobe/SSL_read_ex")
int BPF_KRETPROBE(ssl_read_ex_exit, int ret)
{
	return ssl_exit(ctx, ret, SYS_SSL_READ);
}

/*
 * Go crypto/tls: (*Conn).Write(b []byte) (int, error) and
 * (*Conn).Read(b []byte) (int, error) in a Go binary (register ABI, Go
 * 1.17+, amd64). Arguments arrive in registers: AX = *Conn, BX = b's data,
 * CX = b's length; at a RET, AX = n. No uretprobes: they replace the
 * return address on the goroutine's stack, which Go moves and unwinds.
 * User space finds Read's RET instructions by disassembly and attaches
 * go_tls_read_exit at each (Write needs none, see go_tls_write_enter).
 *
 * A goroutine can move between threads inside a call (a Read that parks
 * in the netpoller resumes on any thread), so a call in flight is keyed
 * by (tgid, g): the register ABI keeps the running goroutine's g in R14,
 * at entry, at every RET, and at the syscall the call makes (read from
 * the task's saved user registers in tls_sock_op). No goid offset, no
 * version table.
 */
struct go_key {
	__u64 tgid;
	__u64 g;
};

/* (tgid, g) -> the goroutine's crypto/tls call. LRU: a goroutine whose
 * process dies inside a call never returns from it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct go_key);
	__type(value, struct ssl_call);
} go_calls SEC(".maps");

static __always_inline int go_tls_enter(struct pt_regs *ctx, __u8 dir, __u8 kind)
{
	struct go_key k = {.tgid = bpf_get_current_pid_tgid() >> 32, .g = ctx->r14};
	struct ssl_call c = {};

	if (!current_pod(&c.pod_id, &c.netns))
		return 0;
	c.ssl = ctx->ax; /* *tls.Conn: remembers the socket for buffered reads */
	c.buf = ctx->bx;
	c.len = ctx->cx;
	c.dir = dir;
	c.kind = kind;
	c.start_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&go_calls, &k, &c, BPF_ANY);
	return 0;
}

static __always_inline int go_tls_exit(struct pt_regs *ctx, __u8 label)
{
	struct go_key k = {.tgid = bpf_get_current_pid_tgid() >> 32, .g = ctx->r14};
	struct ssl_call *c = bpf_map_lookup_elem(&go_calls, &k);
	long n = (long)ctx->ax;

	if (!c)
		return 0;
	if (n > 0)
		tls_report(c, k.tgid, n, label);
	bpf_map_delete_elem(&go_calls, &k);
	return 0;
}

/* (*Conn).Write has an entry probe only: a RET is single-stepped, not
 * emulated (~13 us a hit here, against <1 us for the entry), and every
 * process running the file would pay it on every write. The write is
 * reported at its first socket send (tls_sock_op), with b's length:
 * (*Conn).Write sends all of b or fails on a broken connection, and its
 * entry is removed then. A write that fails before sending leaves its
 * entry behind: the goroutine's next entry replaces it, and tls_sock_op
 * ignores it on any socket but its *Conn's. */
SEC("uprobe/go_tls_write")
int go_tls_write_enter(struct pt_regs *ctx)
{
	return go_tls_enter(ctx, DIR_EGRESS, CALL_GO_WRITE);
}

SEC("uprobe/go_tls_read")
int go_tls_read_enter(struct pt_regs *ctx)
{
	return go_tls_enter(ctx, DIR_INGRESS, CALL_IO);
}

/* At each RET of (*Conn).Read. */
SEC("uprobe/go_tls_read_ret")
int go_tls_read_exit(struct pt_regs *ctx)
{
	return go_tls_exit(ctx, SYS_GO_TLS_READ);
}

/*
 * (*Conn).handshakeContext: the handshake moves no plaintext, but it is
 * where a *Conn first does socket I/O when the handshake is explicit
 * (net/http's server does it before its first Read). The application
 * record that arrives with the peer's Finished is then served by a Read
 * with no socket I/O of its own: the socket must already be known for the
 * *Conn. A handshake run inside a Read or a Write not yet reported leaves
 * that call's entry alone and the call learns the socket itself; a write
 * already reported is a leftover (writes have no return probe).
 */
SEC("uprobe/go_tls_handshake")
int go_tls_handshake_enter(struct pt_regs *ctx)
{
	struct go_key k = {.tgid = bpf_get_current_pid_tgid() >> 32, .g = ctx->r14};
	struct ssl_call c = {}, *cur;

	if (!current_pod(&c.pod_id, &c.netns))
		return 0;
	cur = bpf_map_lookup_elem(&go_calls, &k);
	if (cur && !(cur->kind == CALL_GO_WRITE && cur->reported))
		return 0;
	c.ssl = ctx->ax;
	c.kind = CALL_HANDSHAKE;
	bpf_map_update_elem(&go_calls, &k, &c, BPF_ANY);
	return 0;
}

/* At each RET of (*Conn).handshakeContext. */
SEC("uprobe/go_tls_handshake_ret")
int go_tls_handshake_exit(struct pt_regs *ctx)
{
	struct go_key k = {.tgid = bpf_get_current_pid_tgid() >> 32, .g = ctx->r14};
	struct ssl_call *c = bpf_map_lookup_elem(&go_calls, &k);

	if (c && c->kind == CALL_HANDSHAKE)
		bpf_map_delete_elem(&go_calls, &k);
	return 0;
}

/* The TLS call the current thread is inside of, if any: an OpenSSL call
 * (by thread) or a Go crypto/tls call of the goroutine the thread runs
 * (by the R14 the syscall was made with). */
static __always_inline struct ssl_call *current_tls_call(__u64 id, struct go_key *k)
{
	struct ssl_call *c = bpf_map_lookup_elem(&ssl_calls, &id);
	struct pt_regs *regs;

	if (c)
		return c;
	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (!regs)
		return NULL;
	k->tgid = id >> 32;
	k->g = BPF_CORE_READ(regs, r14);
	return bpf_map_lookup_elem(&go_calls, k);
}

/* Socket I/O on connection conn (a conns key) and socket sk by the
 * current thread: if the thread is inside an SSL call or a Go crypto/tls
 * call, this is the call's connection. Recorded whatever the op moved (a
 * read that found nothing still names the socket). Two hash lookups when
 * no TLS call is in flight. */
static __always_inline int tls_link(__u64 conn, __u64 sk, bool send)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct go_key gk = {};
	struct ssl_call *c;
	struct ssl_sock *known;

	c = current_tls_call(id, &gk);
	if (!c)
		return 0;
	struct ssl_key k = {.tgid = id >> 32, .ssl = c->ssl};
	struct ssl_sock s = {.conn = conn, .sk = sk};

	if (c->kind == CALL_GO_WRITE) {
		/* Reported already, or a leftover of a write that never
		 * sent (it failed first): this op is not the write's. A
		 * *Conn's socket, once known, is the only one its write
		 * can move bytes on. */
		if (c->reported)
			return 0;
		known = bpf_map_lookup_elem(&ssl_socks, &k);
		if (known && (known->conn != conn || known->sk != sk))
			return 0;
		c->conn = conn;
		c->sk = sk;
		if (!known)
			bpf_map_update_elem(&ssl_socks, &k, &s, BPF_ANY);
		if (send && c->len) {
			/* Reported at its first send, not at its return: the
			 * peer's answer can be read by another goroutine
			 * (net/http's readLoop) before the writer would
			 * return, and the plaintext must keep the order in
			 * which the connection carried it. */
			c->reported = 1;
			tls_report(c, id >> 32, c->len, SYS_GO_TLS_WRITE);
			/* Done: the write's later sends are nothing more,
			 * and the entry must not linger (no return probe
			 * would remove it; in-flight reads share the map). */
			bpf_map_delete_elem(&go_calls, &gk);
		}
		return 0;
	}
	c->conn = conn;
	c->sk = sk;
	/* A read's bytes are timed by the socket read that brought them, not
	 * by the call's entry: Go's readLoop enters (*Conn).Read before its
	 * request is even written and parks until the response arrives. */
	if (c->dir == DIR_INGRESS)
		c->start_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&ssl_socks, &k, &s, BPF_ANY);
	return 0;
}

/* ---- socket tier: the socket op names the connection by cookie ---------- */

/* A socket op of an enrolled TCP socket. */
static __always_inline int tls_sock_op(struct sock *sk, bool send)
{
	__u64 netns;
	__u32 pod;

	if (!sock_pod(sk, &pod, &netns) || !sock_is_tcp(sk))
		return 0;
	return tls_link(bpf_get_socket_cookie(sk), (__u64)sk, send);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(tls_sock_send, struct sock *sk, int ret, int flags)
{
	return tls_sock_op(sk, true);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(tls_sock_recv, struct sock *sk, int ret, int flags)
{
	return tls_sock_op(sk, false);
}

/* The socket is gone: its plaintext state goes with it (the capture core
 * removes the ciphertext state on the same change). */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tls_sock_state, const struct sock *sk, int oldstate, int newstate)
{
	__u64 key, netns;
	__u32 pod;

	if (newstate != TCP_CLOSE || !sock_pod(sk, &pod, &netns))
		return 0;
	key = bpf_get_socket_cookie((void *)sk) | TLS_KEY_BIT;
	bpf_map_delete_elem(&conns, &key);
	return 0;
}

/* ---- syscall tier: the in-flight syscall names the connection ----------- */

/*
 * tls_sys_enter is attached to the sys_enter tracepoints of read, write,
 * readv, writev, recvfrom, sendto, recvmsg and sendmsg: the syscalls
 * OpenSSL's socket BIO and Go's net package move TLS records with (mmsg
 * and sendfile carry none of a user-space library's). One program for all
 * of them: the syscall is told from the slot.
 *
 * The thread's in-flight syscall slot (inflight) is what the capture
 * core's sys_enter program of the same tracepoint saved: a thread makes
 * one syscall at a time, so a slot in flight here is this syscall's,
 * there exactly when that program accepted it (an enrolled thread's I/O
 * on a TCP socket), with the fd and the socket. The core's program runs
 * first: it was attached when the collector loaded, this one later, and a
 * tracepoint runs its programs in the order they were attached. (Were the
 * order reversed, the slot would hold the previous syscall, ended, and
 * the call would go unlinked: counted, never misjoined.)
 *
 * The plaintext's state is removed with the connection's, at close, by
 * the capture core (enter_close). Cost to a thread whose syscall is not
 * an enrolled TCP socket's: a program run, a load (most threads have no
 * task storage) and at most a task-storage lookup.
 */
SEC("tracepoint/syscalls/sys_enter_read")
int tls_sys_enter(struct trace_event_raw_sys_enter *ctx)
{
	struct syscall_args *a = current_args();
	bool send;

	if (!a)
		return 0;
	switch (a->syscall) {
	case SYS_READ:
	case SYS_READV:
	case SYS_RECVFROM:
	case SYS_RECVMSG:
		send = false;
		break;
	case SYS_WRITE:
	case SYS_WRITEV:
	case SYS_SENDTO:
	case SYS_SENDMSG:
		send = true;
		break;
	default:
		return 0;
	}
	return tls_link(conn_key(bpf_get_current_pid_tgid(), a->fd), a->sk, send);
}
