// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
/*
 * Part of capture.bpf.c, included by it once (not a standalone header).
 *
 * Process lifecycle: fork, exec and exit, reported unfiltered so that user space can name processes.
 */

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
