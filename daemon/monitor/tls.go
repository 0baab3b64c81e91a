package monitor

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/weirnet/weir/bpf"
	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/bpf/gotls"
	"github.com/weirnet/weir/daemon/api/wire"
	"github.com/weirnet/weir/daemon/capture"
)

// tlsGate decides which TLS library files are probed, so that a process
// of an enrolled pod finds its library probed before its first TLS call.
//
// The gate: a uprobe is attached to a file (inode), not to a process, and
// covers every process that maps that file from then on. So the files are
// probed when the pod is enrolled — by the CNI ADD, before any process of
// the pod exists — from the roots the pod's processes will run in: the
// node's root (processes started in the pod's namespace from the node, such
// as ip netns exec or a runtime without a container rootfs of its own) and
// the roots of the processes already in the namespace (and the daemon's own
// root, which is the node's when it runs on the host). A process that
// starts later from one of these roots needs nothing more: its library is
// probed already, however fast it makes its first call. Probes are shared
// between pods (one attachment per inode, its users counted) and detached
// when the last pod using them leaves.
type tlsGate struct {
	tls *bpf.TLS
	log *slog.Logger
	// nodeRoot is where the node's own libraries are seen from.
	nodeRoot string

	mu sync.Mutex
	// failed maps a file that could not be probed (a Go binary's entry
	// names its process) to why; bounded by maxUnprobed, the rest counted
	// in unprobedOverflow.
	failed           map[string]error
	unprobedOverflow atomic.Uint64
	roots            map[rootKey]bool // roots scanned per enrolled namespace
	// exes are the executable files inspected for Go crypto/tls per
	// enrolled namespace (rootKey's dev and ino are the file's).
	exes map[rootKey]bool
	// late counts library files first probed at an exec rather than at
	// enrollment.
	late atomic.Uint64
}

func newTLSGate(t *bpf.TLS, log *slog.Logger) *tlsGate {
	return &tlsGate{tls: t, log: log, nodeRoot: "/proc/1/root", failed: make(map[string]error),
		roots: make(map[rootKey]bool), exes: make(map[rootKey]bool)}
}

func tlsOwner(netns uint64) string { return "netns:" + strconv.FormatUint(netns, 10) }

// Enrolled probes the libraries the pod of netns can load
// (podnetns.Watcher).
func (g *tlsGate) Enrolled(netns uint64) {
	// The daemon's own root stands in for the node's where /proc/1/root
	// cannot be read (no host PID namespace, or ptrace restrictions);
	// Acquire probes a file reached through two roots once.
	roots := append([]string{g.nodeRoot, "/"}, processRoots(netns)...)
	g.mu.Lock()
	g.roots[rootKey{netns: netns}] = true // the namespace is enrolled
	g.mu.Unlock()
	for _, root := range roots {
		var st syscall.Stat_t
		if syscall.Stat(root, &st) == nil {
			g.mu.Lock()
			g.roots[rootKey{netns: netns, dev: st.Dev, ino: st.Ino}] = true
			g.mu.Unlock()
		}
		g.probeRoot(netns, root, false)
	}
	// The roots of the pod's processes that are not the node's (nor the
	// daemon's) are container roots: their Go programs are probed now.
	var node [2]syscall.Stat_t
	_ = syscall.Stat(g.nodeRoot, &node[0])
	_ = syscall.Stat("/", &node[1])
	for _, root := range roots[2:] {
		var st syscall.Stat_t
		if syscall.Stat(root, &st) != nil || sameFile(st, node[0]) || sameFile(st, node[1]) {
			continue
		}
		g.scanGoBinaries(netns, root)
	}
	for _, pid := range processesIn(netns) {
		if !g.newExe(netns, pid) {
			continue
		}
		if exe, name, err := openExe(pid); err == nil {
			g.probeExe(netns, pid, exe, name, false)
		}
	}
}

// newExe reports whether the executable of pid is one not yet inspected
// for netns's pod, and marks it inspected.
func (g *tlsGate) newExe(netns uint64, pid uint32) bool {
	var st syscall.Stat_t
	if syscall.Stat(fmt.Sprintf("/proc/%d/exe", pid), &st) != nil {
		return false
	}
	key := rootKey{netns: netns, dev: st.Dev, ino: st.Ino}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.exes[key] || !g.roots[rootKey{netns: netns}] {
		return false
	}
	g.exes[key] = true
	return true
}

// openExe opens pid's executable, so the file can be inspected and probed
// after the process is gone (a one-shot client can exit within
// milliseconds of its exec), with the path it was executed from.
func openExe(pid uint32) (*os.File, string, error) {
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	f, err := os.Open(exe)
	if err != nil {
		return nil, "", err
	}
	name, err := os.Readlink(exe)
	if err != nil {
		name = exe
	}
	return f, name, nil
}

// probeExe probes crypto/tls in pid's executable (exe, opened by openExe,
// closed here) when it is a Go binary that has it. A Go binary that cannot
// be probed (stripped of every symbol table, another architecture, a Go
// before the register ABI) is reported as unprobed under its path and the
// process that revealed it.
func (g *tlsGate) probeExe(netns uint64, pid uint32, exe *os.File, name string, late bool) {
	defer exe.Close()
	attached, err := g.tls.AcquireGo(tlsOwner(netns), fmt.Sprintf("/proc/self/fd/%d", exe.Fd()), name)
	if errors.Is(err, gotls.ErrNotGoTLS) {
		return
	}
	key := fmt.Sprintf("%s (pid %d)", name, pid)
	g.mu.Lock()
	if err != nil {
		g.noteFailed(key, err)
	}
	g.mu.Unlock()
	switch {
	case err != nil:
		g.log.Warn("Go binary not probed: its TLS plaintext is not captured", "path", name, "pid", pid, "error", err)
	case attached && late:
		g.late.Add(1)
		g.log.Info("Go crypto/tls probed at the exec of its first process: that process's first calls may be missed",
			"path", name, "pid", pid, "netns", netns)
	case attached:
		g.log.Info("Go crypto/tls probed at enrollment", "path", name, "pid", pid, "netns", netns)
	}
}

// probeRoot probes the OpenSSL libraries under root for netns's pod. late
// says the root was found at an exec, after processes of it may have made
// TLS calls unseen: each file probed only then is counted.
func (g *tlsGate) probeRoot(netns uint64, root string, late bool) {
	for _, lib := range bpf.FindOpenSSL(root) {
		attached, err := g.tls.Acquire(tlsOwner(netns), lib)
		g.mu.Lock()
		if err != nil {
			g.noteFailed(lib, err)
		} else {
			delete(g.failed, lib)
		}
		g.mu.Unlock()
		if err != nil {
			g.log.Warn("TLS library not probed: its plaintext is not captured", "path", lib, "error", err)
			continue
		}
		if attached && late {
			g.late.Add(1)
			g.log.Warn("TLS library probed only at an exec: the calls of processes started before were not seen",
				"path", lib, "netns", netns)
		} else if attached {
			g.log.Info("TLS library probed at enrollment", "path", lib, "netns", netns)
		}
	}
}

// exec is the late path: a process of an enrolled namespace executed a
// program. When its root is one the namespace's pod was not scanned in (a
// container created after the pod was enrolled), that root's libraries are
// probed now. The process that revealed the root may make TLS calls before
// its library is probed (such files are counted, weir_tls_late_probes_total);
// later processes of that root are covered from their first call.
// Runs on the reader's goroutine: a root already seen costs one stat.
func (g *tlsGate) exec(netns uint64, pid uint32) {
	if g.newExe(netns, pid) {
		if exe, name, err := openExe(pid); err == nil {
			go g.probeExe(netns, pid, exe, name, true)
		}
	}
	root := fmt.Sprintf("/proc/%d/root", pid)
	var st syscall.Stat_t
	if syscall.Stat(root, &st) != nil {
		return
	}
	key := rootKey{netns: netns, dev: st.Dev, ino: st.Ino}
	g.mu.Lock()
	if g.roots[key] || !g.roots[rootKey{netns: netns}] {
		// Seen, or not a namespace the gate probed for (its pod is
		// gone or not enrolled): nothing would release what it holds.
		g.mu.Unlock()
		return
	}
	g.roots[key] = true
	g.mu.Unlock()
	go func() {
		g.probeRoot(netns, root, true)
		g.scanGoBinaries(netns, root)
	}()
}

// goBinDirs are where container images keep their programs.
var goBinDirs = []string{"bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "app", "ko-app"}

// maxUnprobed bounds the files listed as not probeable: a Go binary is
// listed per process (a stripped one run every minute would grow the list
// without end). Files past the bound are logged and counted
// (weir_tls_unprobed_unlisted_total).
const maxUnprobed = 1024

// noteFailed records that key could not be probed. g.mu must be held.
func (g *tlsGate) noteFailed(key string, err error) {
	if _, ok := g.failed[key]; !ok && len(g.failed) >= maxUnprobed {
		g.unprobedOverflow.Add(1)
		return
	}
	g.failed[key] = err
}

// maxGoScan bounds the files looked at per root.
const maxGoScan = 4096

// scanGoBinaries probes the Go binaries with crypto/tls in a container
// root's program directories, so that processes started from them later
// (an exec into the container, a restart, a one-shot client) are covered
// from their first call; only the process that revealed the root raced its
// probes. Never the node's root: its Go programs (the container runtime,
// the kubelet) are not the pod's, and would pay the probes on every call.
// Files are inspected once per pod (by inode); those not Go or without
// crypto/tls cost a stat from then on.
func (g *tlsGate) scanGoBinaries(netns uint64, root string) {
	seen := 0
	for _, d := range goBinDirs {
		ents, err := os.ReadDir(filepath.Join(root, d))
		if err != nil {
			continue
		}
		for _, e := range ents {
			if seen++; seen > maxGoScan {
				g.log.Warn("TLS gate: too many programs in a container root; the rest are probed at their exec",
					"root", root, "limit", maxGoScan)
				return
			}
			path := filepath.Join(root, d, e.Name())
			var st syscall.Stat_t
			if syscall.Stat(path, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG || st.Mode&0o111 == 0 {
				continue
			}
			key := rootKey{netns: netns, dev: st.Dev, ino: st.Ino}
			g.mu.Lock()
			fresh := !g.exes[key] && g.roots[rootKey{netns: netns}]
			g.exes[key] = true
			g.mu.Unlock()
			if !fresh {
				continue
			}
			attached, err := g.tls.AcquireGo(tlsOwner(netns), path, path)
			switch {
			case errors.Is(err, gotls.ErrNotGoTLS):
			case err != nil:
				g.mu.Lock()
				g.noteFailed(path, err)
				g.mu.Unlock()
				g.log.Warn("Go binary not probed: its TLS plaintext is not captured", "path", path, "error", err)
			case attached:
				g.log.Info("Go crypto/tls probed in a container root before it ran", "path", path, "netns", netns)
			}
		}
	}
}

func sameFile(a, b syscall.Stat_t) bool { return a.Dev == b.Dev && a.Ino == b.Ino }

// rootKey is a root directory scanned for a pod's namespace.
type rootKey struct{ netns, dev, ino uint64 }

// Unenrolled releases the pod's libraries (podnetns.Watcher).
func (g *tlsGate) Unenrolled(netns uint64) {
	g.tls.Release(tlsOwner(netns))
	g.mu.Lock()
	defer g.mu.Unlock()
	for k := range g.roots {
		if k.netns == netns {
			delete(g.roots, k)
		}
	}
	for k := range g.exes {
		if k.netns == netns {
			delete(g.exes, k)
		}
	}
}

// status lists the probed libraries and those that could not be probed.
func (g *tlsGate) status() *wire.TLSFeatures {
	st := &wire.TLSFeatures{Libraries: []wire.TLSLibrary{}}
	for _, l := range g.tls.Libraries() {
		st.Libraries = append(st.Libraries, wire.TLSLibrary{Path: l.Path, Library: l.Library, Inode: l.Inode,
			Symbols: l.Symbols, Users: l.Users})
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for p, err := range g.failed {
		st.Unprobed = append(st.Unprobed, wire.TLSUnprobed{Path: p, Reason: err.Error()})
	}
	slices.SortFunc(st.Unprobed, func(a, b wire.TLSUnprobed) int { return strings.Compare(a.Path, b.Path) })
	return st
}

// processesIn lists the processes whose network namespace is netns.
func processesIn(netns uint64) []uint32 {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []uint32
	for _, e := range ents {
		pid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", e.Name(), "ns", "net"), &st) != nil || st.Ino != netns {
			continue
		}
		out = append(out, uint32(pid))
	}
	return out
}

// processRoots lists the distinct roots (/proc/PID/root) of the processes
// whose network namespace is netns.
func processRoots(netns uint64) []string {
	seen := make(map[[2]uint64]bool)
	var out []string
	for _, pid := range processesIn(netns) {
		var st syscall.Stat_t
		root := fmt.Sprintf("/proc/%d/root", pid)
		if syscall.Stat(root, &st) != nil || seen[[2]uint64{st.Dev, st.Ino}] {
			continue
		}
		seen[[2]uint64{st.Dev, st.Ino}] = true
		out = append(out, root)
	}
	return out
}

// tlsExecSink is the table as the collector's sink, with exec events also
// shown to the TLS gate (its late path).
type tlsExecSink struct {
	*capture.Table
	gate *tlsGate
}

// Process implements event.ProcessSink.
func (s tlsExecSink) Process(e event.ProcessEvent) {
	s.Table.Process(e)
	if e.Kind == event.ProcessExec && e.Proc.NetnsIno != 0 {
		s.gate.exec(e.Proc.NetnsIno, e.Proc.TGID)
	}
}
