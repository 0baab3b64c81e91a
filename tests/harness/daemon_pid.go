package harness

// Pid returns the process ID of the running weir-daemon, or 0 when it is not
// running. Benchmarks read the daemon's CPU time and peak memory from
// /proc/<pid>; the daemon is started directly (not through a shell), so this
// is the daemon itself.
func (d *Daemon) Pid() int {
	if d.proc == nil {
		return 0
	}
	if exited, _ := d.proc.Exited(); exited {
		return 0
	}
	return d.proc.Pid()
}
