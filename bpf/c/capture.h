/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * Records shared between Weir's eBPF programs and the Go loader.
 *
 * Everything user space decodes is defined here once; bpf2go generates the Go
 * mirror of each type named with -type in ../gen.go, and a Go test checks the
 * enums against package bpf/event so the two sides cannot drift apart.
 * Layouts carry explicit padding so C and Go agree byte for byte.
 */
#ifndef WEIR_CAPTURE_H
#define WEIR_CAPTURE_H

/* Compile-time ceilings. The load-time knobs (chunk_size, capture_limit) are
 * validated against these in Go and clamped again in C. */
#define MAX_CHUNK_SIZE 16384 /* bytes of payload in one data event */
#define MAX_CHUNKS 32        /* data events with payload per syscall */
#define MAX_IOVECS 16        /* iovec segments walked per syscall */
#define MAX_MMSGS 1024       /* messages summed per sendmmsg/recvmmsg (UIO_MAXIOV) */
#define MAX_WALK_STEPS 4096  /* walker runs (frame header, payload, body range...) per syscall */
#define COMM_LEN 16
#define FILENAME_LEN 128

/* Record kinds; the first byte of every ring buffer record. */
enum event_type {
	EVENT_CONN_OPEN = 1,
	EVENT_CONN_CLOSE = 2,
	EVENT_DATA = 3,
	EVENT_PROC_FORK = 4,
	EVENT_PROC_EXEC = 5,
	EVENT_PROC_EXIT = 6,
	EVENT_RETRANSMIT = 7,
};

/* Mirrors event.Role. */
enum conn_role {
	ROLE_UNKNOWN = 0,
	ROLE_CLIENT = 1,
	ROLE_SERVER = 2,
};

/* Mirrors event.Direction. */
enum direction {
	DIR_EGRESS = 0,
	DIR_INGRESS = 1,
};

/* Mirrors event.Syscall. */
enum syscall_id {
	SYS_UNKNOWN = 0,
	SYS_CONNECT,
	SYS_ACCEPT,
	SYS_ACCEPT4,
	SYS_CLOSE,
	SYS_READ,
	SYS_WRITE,
	SYS_READV,
	SYS_WRITEV,
	SYS_SENDTO,
	SYS_RECVFROM,
	SYS_SENDMSG,
	SYS_RECVMSG,
	SYS_SENDMMSG,
	SYS_RECVMMSG,
	SYS_SENDFILE,
	SYS_SPLICE,          /* socket tier: splice/vmsplice into or out of a socket */
	SYS_IO_URING,        /* socket tier: an io_uring operation */
	SYS_SSL_WRITE,       /* TLS set: plaintext of SSL_write/SSL_write_ex (tls.bpf.c) */
	SYS_SSL_READ,        /* TLS set: plaintext of SSL_read/SSL_read_ex */
	SYS_GO_TLS_WRITE,    /* TLS set: plaintext of Go crypto/tls (*Conn).Write */
	SYS_GO_TLS_READ,     /* TLS set: plaintext of Go crypto/tls (*Conn).Read */
	SYS_BORINGSSL_WRITE, /* TLS set: plaintext of BoringSSL's SSL_write */
	SYS_BORINGSSL_READ,  /* TLS set: plaintext of BoringSSL's SSL_read */
};

/*
 * Indices of the per-CPU counters map: every place the kernel side loses or
 * withholds something increments one. User space names them by stripping
 * "DROP_" and lowercasing (DROP_RINGBUF_FULL -> "ringbuf_full").
 */
enum drop_reason {
	DROP_RINGBUF_FULL = 0,   /* ring buffer full: record dropped, Seq gap */
	DROP_CHUNK_TRUNCATED,    /* syscall moved more than MAX_CHUNKS chunks: rest size-only */
	DROP_CAPTURE_LIMIT,      /* per-connection capture limit reached: size-only */
	DROP_IOV_LIMIT,          /* more iovecs than MAX_IOVECS: rest size-only */
	DROP_MMSG_PAYLOAD,       /* send/recvmmsg message size-only: after the first (syscall tier),
				   * or its place in the vector not trusted (socket tier) */
	DROP_MMSG_LIMIT,         /* more than MAX_MMSGS messages: bytes not counted */
	DROP_READ_USER_FAILED,   /* user memory not readable: size-only */
	DROP_CONN_MAP_FULL,      /* connection state could not be stored */
	DROP_ARGS_MAP_FULL,      /* syscall arguments could not be stored (task storage
				   * not allocated, or busy in a nested program): syscall missed */
	DROP_PROC_MAP_FULL,      /* process could not be stored */
	DROP_SOCK_MAP_FULL,      /* socket -> connection entry could not be stored:
				   * no connect-failure or drop attribution for it */
	DROP_DROP_SLOTS_FULL,    /* more distinct drop reasons than slots: count lost */
	DROP_POD_DROPS_MAP_FULL, /* per-pod drop counter could not be created */
	DROP_RX_STAMP_MAP_FULL,  /* received skb could not be stamped */
	DROP_RX_UNSTAMPED,       /* a read copied from an skb without both base stamps */
	DROP_RX_TIMES_MAP_FULL,  /* richer tier: received skb's L3/L4 times could not be stored */
	DROP_RX_UNTIMED,         /* richer tier: a read copied from an skb without complete
				   * L3/L4 times (see tier.bpf.c): its read claims no L3/L4 */
	DROP_H2_FRAME_LIMIT,     /* HTTP/2 non-DATA frame larger than max_frame_copy: size-only */
	DROP_H2_DESYNC,          /* HTTP/2 walker lost the frame boundaries: the direction
				   * falls back to the capture budget for good */
	DROP_UNCAPTURED_OP,      /* socket tier: socket I/O not through a user buffer syscall
				   * (sendfile, splice, io_uring, kernel thread, MSG_TRUNC): size-only */
	DROP_TLS_UNLINKED,       /* TLS set: an SSL call's plaintext whose TCP connection was
				   * not found (no socket I/O seen for its SSL object): lost */
	DROP_MAX,
};

/*
 * Mirrors event.SkipReason: why the part of a data event past its captured
 * prefix (size - captured) was not copied. Benign skips are bytes the
 * parsers do not need (a DATA payload, an HTTP/1 body user space skips by
 * length); the others are losses the parsers must treat as gaps.
 */
enum skip_reason {
	SKIP_NONE = 0,
	SKIP_H2_DATA,     /* HTTP/2 DATA payload the walker skipped: benign */
	SKIP_BODY,        /* HTTP/1 body range user space hinted: benign */
	SKIP_BUDGET,      /* unclassified connection past its capture budget */
	SKIP_FRAME_LIMIT, /* HTTP/2 non-DATA frame larger than max_frame_copy */
	SKIP_CHUNK_LIMIT, /* syscall needed more than MAX_CHUNKS events or walker steps */
	SKIP_IOV_LIMIT,   /* more iovec segments than MAX_IOVECS */
	SKIP_MMSG,        /* sendmmsg/recvmmsg message not walked (see DROP_MMSG_PAYLOAD) */
	SKIP_READ_FAILED, /* user memory not readable */
	SKIP_SENDFILE,    /* sendfile: the bytes came from a file */
	SKIP_NO_PAYLOAD,  /* payload capture is off (bpf.payload=false) */
	SKIP_NOT_USER,    /* socket tier: the op's registers name no user buffer of it
			    * (splice, io_uring, kernel thread, MSG_TRUNC) */
	SKIP_MAX,
};

/*
 * Per-connection hint from user space (map h1_hints, keyed by conn id): the
 * connection was parsed as HTTP/1, so it is copied whole, not under the
 * capture budget, except stream offsets [body_from, body_to) of each
 * direction: a body the parser skips by length. Bytes the kernel passed
 * before a hint arrived were simply copied.
 */
struct h1_hint {
	__u64 body_from[2]; /* indexed by enum direction */
	__u64 body_to[2];
};

/* Distinct drop reasons kept per syscall and per connection. */
#define SYSCALL_DROP_SLOTS 2
#define CONN_DROP_SLOTS 4

/* Mirrors event.Metric: bits of the measured masks. */
enum metric_bit {
	METRIC_L4_DURATION = 1 << 0,
	METRIC_PACKETS = 1 << 1,
	METRIC_RETRANSMITS = 1 << 2,
	METRIC_DROPS = 1 << 3,
	METRIC_L3_DURATION = 1 << 4,
	METRIC_L3_SPLIT = 1 << 5,
	METRIC_NETFILTER = 1 << 6,
	METRIC_RESOLVE_MAC = 1 << 7,
	METRIC_L2_DURATION = 1 << 8,
	METRIC_L2_QUEUE = 1 << 9,
	METRIC_RECV_QUEUE = 1 << 10,
	METRIC_RTT = 1 << 11,
};

/* Packets of one socket freed with a drop reason (enum skb_drop_reason of
 * the running kernel: user space names it from the kernel's BTF). */
struct drop_slot {
	__u32 reason;
	__u32 count;
};

/* Kernel measurements of one send syscall, accumulated while it runs by
 * the net/tcp/skb tracepoints that fire on the syscall's own thread for
 * skbs of its socket. */
struct send_metrics {
	__u32 measured; /* METRIC_* bits */
	__u32 packets;  /* skbs queued to a device (net_dev_queue) */
	__u64 packet_bytes;
	__u32 retrans;   /* tcp_retransmit_skb on this socket, this thread */
	__u32 ifindex;   /* device of the last packet */
	__u64 l2_ns;     /* sum over packets of net_dev_queue -> net_dev_xmit */
	__u64 ready_ns;  /* ... net_dev_queue -> net_dev_start_xmit */
	__u64 device_ns; /* ... net_dev_start_xmit -> net_dev_xmit */
	__u32 xmit_seen; /* packets whose whole device path ran on this thread */
	__u32 nf_count;  /* fentry/kprobe tier: nf_hook_slow calls */
	__u64 nf_ns;     /* ... and their time */
	__u64 l4_ns;     /* ... time in tcp_sendmsg */
	__u64 l3_ns;     /* ... time in __ip_queue_xmit */
	__u64 arp_ns;    /* ... time in neigh_resolve_output */
	__u32 arp_count; /* ... its calls */
	__u32 _pad;
	struct drop_slot drops[SYSCALL_DROP_SLOTS];
};

/* Kernel measurements of one receive syscall: the skbs it copied from,
 * stamped when the device received them (netif_receive_skb) and when TCP
 * took them into the socket (tcp_probe, at tcp_rcv_established). The
 * richer tier adds each skb's L3/L4 receive times (tier.bpf.c), summed over
 * the skbs the read copied from, once per skb. */
struct recv_metrics {
	__u32 measured;
	__u32 packets;       /* distinct skbs copied from */
	__u64 packet_bytes;  /* bytes copied */
	__u32 ifindex;       /* receiving device of the last stamped skb */
	__u32 unstamped;     /* skbs without both stamps (e.g. arrived in the handshake) */
	__u64 to_queue_ns;   /* sum: device receive -> TCP receive */
	__u64 from_queue_ns; /* sum: TCP receive -> copied to the reader */
	__u64 last_skb;      /* last skb counted, so partial copies count once */
	/* fentry/kprobe tier, IPv6 through ipv6_rcv, ip6_input, tcp_v6_rcv: */
	__u64 l3_ns;       /* l3_recv_ns + l3_local_ns */
	__u64 l3_recv_ns;  /* ip_rcv -> ip_local_deliver (routing, PRE_ROUTING hooks) */
	__u64 l3_local_ns; /* ip_local_deliver -> tcp_v4_rcv (LOCAL_IN hooks) */
	__u64 l4_ns;       /* time in tcp_v4_rcv */
	__u64 nf_ns;       /* time in nf_hook_slow for the skbs on their way up */
	__u32 nf_count;    /* its calls */
	__u32 _pad;
};

/* Socket state reported at close. */
struct sock_stats {
	__u32 measured; /* METRIC_RTT | METRIC_RETRANSMITS | METRIC_DROPS */
	__u32 srtt_us;
	__u32 mdev_us;
	__u32 total_retrans;
	struct drop_slot drops[CONN_DROP_SLOTS];
};

/* Key of the per-pod device counters: the pod's host-side veth and the
 * direction seen from the host (ingress on the host veth = sent by the pod). */
struct dev_key {
	__u32 ifindex;
	__u32 ingress;
};

struct dev_counters {
	__u64 packets;
	__u64 bytes;
};

/* Key of the per-pod drop counters. */
struct pod_drop_key {
	__u32 pod_id;
	__u32 reason; /* kernel enum skb_drop_reason */
};

/* Who made the syscall. */
struct proc_info {
	__u64 netns;     /* network namespace inode */
	__u64 cgroup_id; /* cgroup v2 id */
	__u32 tgid;
	__u32 tid;
	__u32 pod_id;
	char comm[COMM_LEN];
	__u32 _pad;
};

/* EVENT_CONN_OPEN and EVENT_CONN_CLOSE. Addresses are in network order,
 * IPv4 in the first four bytes; ports in host order. */
struct conn_event {
	__u8 type;
	__u8 role;
	__u8 syscall;
	__u8 success;
	__u8 in_progress;
	__u8 _pad0;
	__u16 family;
	__u16 lport;
	__u16 rport;
	__s32 fd;
	__s32 err; /* positive errno of a failed connect */
	__u32 _pad1;
	__u64 conn_id;
	__u64 start_ns;
	__u64 end_ns;
	__u64 bytes_sent; /* close only: totals the kernel side counted */
	__u64 bytes_recv;
	__u8 laddr[16];
	__u8 raddr[16];
	struct proc_info proc;
	struct sock_stats stats; /* close only */
};

/* EVENT_DATA: this header, then `captured` payload bytes. */
struct data_event {
	__u8 type;
	__u8 direction;
	__u8 syscall;
	__u8 truncated;
	__s32 fd;
	__u8 last; /* last event of its syscall: carries the metrics */
	__u8 skip; /* enum skip_reason of the uncaptured suffix (size - captured) */
	__u8 _pad0[6];
	__u64 conn_id;
	__u64 seq;    /* per connection and direction, from 0 */
	__u64 offset; /* stream offset of the first byte covered */
	__u32 size;   /* bytes of the stream this event covers */
	__u32 captured;
	__u64 start_ns;
	__u64 end_ns;
	struct proc_info proc;
	struct send_metrics send; /* egress, on the last event only */
	struct recv_metrics recv; /* ingress, on the last event only */
};

/* EVENT_PROC_FORK, EVENT_PROC_EXEC and EVENT_PROC_EXIT. */
struct process_event {
	__u8 type;
	__u8 _pad0[3];
	__u32 ppid;      /* parent's tgid (fork, exec) */
	__s32 exit_code; /* raw wait status (exit) */
	__u32 _pad1;
	__u64 ts;
	struct proc_info proc;
	char filename[FILENAME_LEN]; /* exec only */
};

/* EVENT_RETRANSMIT: TCP retransmitted a segment of an enrolled connection
 * while none of its send syscalls was in flight (retransmit timer, tail
 * loss probe, or an incoming ACK). Retransmits during a send syscall are
 * counted in that syscall's send_metrics instead, so each is reported once. */
struct retransmit_event {
	__u8 type;
	__u8 state; /* TCP state of the socket (TCP_ESTABLISHED, ...) */
	__u16 segs; /* segments the retransmitted skb carried */
	__u8 _pad[4];
	__u64 conn_id;
	__u64 ts;
};

#endif /* WEIR_CAPTURE_H */
