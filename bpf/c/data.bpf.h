// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
/*
 * Part of capture.bpf.c, included by it once (not a standalone header).
 *
 * Data events: chunking a socket operation's payload into ring buffer records, the per-connection
 * HTTP/2 frame walker and typed skips. Shared by both capture tiers and the TLS set.
 */

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
 * One step of the walk: one run of the syscall's bytes, copied into the
 * event being gathered or added to its skipped suffix. Returns 1 when the
 * syscall is done or the walk cannot go on (l->stop says why).
 */
static __always_inline long walk_run(struct data_scratch *s)
{
	struct chunk_loop *l;
	struct walk_state *w;
	__u64 avail, n;
	__u8 skip = SKIP_NONE;
	bool hdr = false, copied;
	__u32 pos = 0, hh, off, len;

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
		/* The segment's first run is walked in this same step: a step
		 * is a call and a return. A zero-length segment uses one up. */
		if (!l->seg_left)
			return 0;
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
		/* Bounded again next to the call, on the copies the call
		 * gets: where the compiler spills pos or n and reloads them
		 * for the call (it does in tls_sys_enter), 6.1's verifier has
		 * lost the bounds checked on another reload. */
		off = pos;
		len = n;
		asm volatile("" : "+r"(off), "+r"(len));
		if (off >= MAX_CHUNK_SIZE || len > MAX_CHUNK_SIZE)
			return 1;
		if (bpf_probe_read_user(s->payload + off, len, (const void *)l->base)) {
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
		} else {
			/* Bounded next to the call, as the copy above is. */
			off = hh;
			len = n;
			asm volatile("" : "+r"(off), "+r"(len));
			if (off > 8 || len > 9 ||
			    bpf_probe_read_user(w->hdr + off, len, (const void *)l->base)) {
				l->stop = SKIP_READ_FAILED;
				return 1;
			}
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

/* One bpf_loop iteration: walk_run on this CPU's scratch. */
static long walk_step(__u32 i, void *ctx)
{
	struct data_scratch *s = cpu_scratch();

	return s ? walk_run(s) : 1;
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
	__u32 n, cnt;

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
	 * bound of a min() computed in 64 bits by the time of the call, and
	 * does not follow the single range check the compiler can make of
	 * the two tests below: the length passed is checked on its own. */
	asm volatile("" : "+r"(n));
	if (n < 4 || n > sizeof(b))
		return;
	cnt = n;
	asm volatile("" : "+r"(cnt));
	if (cnt > sizeof(b) || bpf_probe_read_user(b, cnt, (const void *)at))
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
	/* The first run is walked here, the rest by bpf_loop: most socket
	 * ops of a request-response protocol are one buffer taken whole (a
	 * write, a read), done in one run without the loop helper, its
	 * callback and the callback's scratch lookup -- three calls and
	 * returns, each costly under the SRSO mitigation. */
	if (!l->stop && l->left && !walk_run(s))
		bpf_loop(MAX_WALK_STEPS - 1, walk_step, NULL, 0);
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
