package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/weirnet/weir/bpf/event"
)

// Enroll starts monitoring every thread whose network namespace has inode
// netnsInode, reporting it as pod podID. From the moment the map entry is
// written, the kernel side captures any thread in that namespace, including
// processes started later. Processes already running there are found by a
// one-time scan of /proc: they are recorded in the kernel's process map and
// reported to Run's event.ProcessSink as event.ProcessExisting; their already-open
// connections appear on their first data syscall, with RoleUnknown.
func (c *Collector) Enroll(netnsInode uint64, podID uint32) error {
	if netnsInode == 0 {
		return errors.New("enroll: network namespace inode 0 is not valid")
	}
	if err := c.enrollNetns(netnsInode, podID); err != nil {
		return err
	}
	found, err := scanNetns("/proc", netnsInode)
	if err != nil {
		// Capture is already on; only the existing processes are unknown.
		c.log.Warn("scan for processes of enrolled netns failed", "netns", netnsInode, "error", err)
	}
	for _, p := range found {
		for _, tid := range p.tids {
			if err := c.procs.Put(tid, podID); err != nil {
				c.log.Warn("record existing thread", "tid", tid, "error", err)
			}
		}
		ev := event.ProcessEvent{Kind: event.ProcessExisting, PPID: p.ppid, Proc: event.Process{
			TGID: p.tgid, TID: p.tgid, Comm: p.comm, PodID: podID, NetnsIno: netnsInode,
		}}
		select {
		case c.processes <- ev:
		default:
			c.stats.scanDropped.Add(1)
		}
	}
	if len(found) > 0 {
		select { // wake Run to deliver them
		case c.wake <- struct{}{}:
		default: // a wake is already pending
		}
		if c.parker != nil {
			c.parker.interrupt()
		}
	}
	c.log.Info("netns enrolled", "netns", netnsInode, "pod", podID, "existing_processes", len(found))
	return nil
}

// enrollNetns adds the namespace to enrolled_netns and makes sure the
// per-packet hooks are attached; on failure the namespace is not enrolled.
func (c *Collector) enrollNetns(netnsInode uint64, podID uint32) error {
	c.packet.mu.Lock()
	defer c.packet.mu.Unlock()
	// The filter bit first: the kernel side looks a namespace up in
	// enrolled_netns only when its bit is set.
	if err := c.setNetnsBitLocked(netnsInode); err != nil {
		return fmt.Errorf("enroll netns %d as pod %d: %w", netnsInode, podID, err)
	}
	if err := c.netns.Put(netnsInode, podID); err != nil {
		return fmt.Errorf("enroll netns %d as pod %d (at most %d namespaces): %w",
			netnsInode, podID, c.netns.MaxEntries(), err)
	}
	if err := c.packet.attachLocked(); err != nil {
		if derr := c.netns.Delete(netnsInode); derr != nil {
			err = errors.Join(err, fmt.Errorf("undo enrollment: %w", derr))
		}
		if derr := c.syncNetnsBitsLocked(); derr != nil {
			err = errors.Join(err, derr)
		}
		return fmt.Errorf("enroll netns %d as pod %d: %w", netnsInode, podID, err)
	}
	return nil
}

// netnsBitsWords is NETNS_BITS_WORDS of capture.bpf.c: netns_bits holds
// one bit per inode modulo 64*64.
const netnsBitsWords = 64

// netnsBit is the word of netns_bits and the bit in it of a namespace.
func netnsBit(netnsInode uint64) (word uint32, bit uint64) {
	return uint32(netnsInode>>6) % netnsBitsWords, 1 << (netnsInode & 63)
}

// setNetnsBitLocked sets the namespace's filter bit (c.packet.mu held:
// the read-modify-write of a word must not race another enrollment).
func (c *Collector) setNetnsBitLocked(netnsInode uint64) error {
	k, bit := netnsBit(netnsInode)
	var w uint64
	if err := c.netnsBit.Lookup(k, &w); err != nil {
		return fmt.Errorf("read netns filter word %d: %w", k, err)
	}
	if w&bit != 0 {
		return nil
	}
	if err := c.netnsBit.Put(k, w|bit); err != nil {
		return fmt.Errorf("set netns filter bit: %w", err)
	}
	return nil
}

// syncNetnsBitsLocked rewrites the filter words that differ from what the
// enrolled namespaces need (c.packet.mu held), clearing the bits no
// enrolled namespace maps to any more. A bit left set costs the kernel
// side a hash lookup; a bit missing would hide an enrolled namespace, so
// bits are set before entries are added and cleared only after they are
// gone.
func (c *Collector) syncNetnsBitsLocked() error {
	var want [netnsBitsWords]uint64
	var ino uint64
	var pod uint32
	it := c.netns.Iterate()
	for it.Next(&ino, &pod) {
		k, bit := netnsBit(ino)
		want[k] |= bit
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("list enrolled namespaces: %w", err)
	}
	for k := range uint32(netnsBitsWords) {
		var have uint64
		if err := c.netnsBit.Lookup(k, &have); err != nil {
			return fmt.Errorf("read netns filter word %d: %w", k, err)
		}
		if have == want[k] {
			continue
		}
		if err := c.netnsBit.Put(k, want[k]); err != nil {
			return fmt.Errorf("write netns filter word %d: %w", k, err)
		}
	}
	return nil
}

// unenrollNetns removes the namespace from enrolled_netns and detaches the
// per-packet hooks when it was the last one.
func (c *Collector) unenrollNetns(netnsInode uint64) error {
	c.packet.mu.Lock()
	defer c.packet.mu.Unlock()
	if err := c.netns.Delete(netnsInode); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unenroll netns %d: %w", netnsInode, err)
	}
	if err := c.syncNetnsBitsLocked(); err != nil {
		// A stale bit only costs the kernel side a lookup.
		c.log.Warn("clear netns filter bit", "netns", netnsInode, "error", err)
	}
	var next uint64
	if err := c.netns.NextKey(nil, &next); errors.Is(err, ebpf.ErrKeyNotExist) {
		// The last one: no packet of the node needs the per-packet hooks.
		if err := c.packet.detachLocked(); err != nil {
			c.log.Warn("detach per-packet hooks", "error", err)
		}
	}
	return nil
}

// Unenroll stops monitoring the namespace and forgets its processes.
// Connection state of its processes ages out of the kernel's LRU map.
func (c *Collector) Unenroll(netnsInode uint64) error {
	var podID uint32
	if err := c.netns.Lookup(netnsInode, &podID); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("unenroll netns %d: not enrolled", netnsInode)
		}
		return fmt.Errorf("unenroll netns %d: %w", netnsInode, err)
	}
	if err := c.unenrollNetns(netnsInode); err != nil {
		return err
	}
	c.pods.mu.Lock()
	c.detachLocked(netnsInode) // per-pod TC programs, if EnrollPod attached them
	c.pods.mu.Unlock()
	var (
		tid, pod uint32
		stale    []uint32
	)
	it := c.procs.Iterate()
	for it.Next(&tid, &pod) {
		if pod == podID {
			stale = append(stale, tid)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("unenroll netns %d: list processes: %w", netnsInode, err)
	}
	for _, t := range stale {
		if err := c.procs.Delete(t); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("unenroll netns %d: forget thread %d: %w", netnsInode, t, err)
		}
	}
	c.log.Info("netns unenrolled", "netns", netnsInode, "pod", podID, "threads_forgotten", len(stale))
	return nil
}

// scannedProcess is a process with at least one thread in the namespace.
type scannedProcess struct {
	tgid, ppid uint32
	comm       string
	tids       []uint32 // the threads in the namespace
}

// scanNetns lists the processes under procRoot with threads in the network
// namespace netnsInode. Threads, not just thread-group leaders, are checked:
// a thread may have entered a namespace on its own (setns). Processes that
// vanish during the scan are skipped.
func scanNetns(procRoot string, netnsInode uint64) ([]scannedProcess, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", procRoot, err)
	}
	var out []scannedProcess
	for _, e := range entries {
		tgid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		dir := filepath.Join(procRoot, e.Name())
		tasks, err := os.ReadDir(filepath.Join(dir, "task"))
		if err != nil {
			continue
		}
		p := scannedProcess{tgid: uint32(tgid)}
		for _, t := range tasks {
			tid, err := strconv.ParseUint(t.Name(), 10, 32)
			if err != nil {
				continue
			}
			if ino, err := netnsOf(filepath.Join(dir, "task", t.Name(), "ns", "net")); err == nil && ino == netnsInode {
				p.tids = append(p.tids, uint32(tid))
			}
		}
		if len(p.tids) == 0 {
			continue
		}
		if comm, err := os.ReadFile(filepath.Join(dir, "comm")); err == nil {
			p.comm = strings.TrimSpace(string(comm))
		}
		p.ppid = ppidOf(filepath.Join(dir, "stat"))
		out = append(out, p)
	}
	return out, nil
}

// netnsOf reads the inode from a "net:[4026531840]" namespace link.
func netnsOf(link string) (uint64, error) {
	target, err := os.Readlink(link)
	if err != nil {
		return 0, err
	}
	inner, ok := strings.CutPrefix(target, "net:[")
	if !ok || !strings.HasSuffix(inner, "]") {
		return 0, fmt.Errorf("%s: unexpected link target %q", link, target)
	}
	return strconv.ParseUint(strings.TrimSuffix(inner, "]"), 10, 64)
}

// ppidOf reads field 4 of /proc/<pid>/stat; 0 when unreadable.
func ppidOf(stat string) uint32 {
	b, err := os.ReadFile(stat)
	if err != nil {
		return 0
	}
	// comm (field 2) may contain spaces and parentheses: skip past the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.ParseUint(f[1], 10, 32)
	return uint32(ppid)
}
