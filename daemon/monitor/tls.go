package monitor

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/weirnet/weir/bpf"
	"github.com/weirnet/weir/daemon/api/wire"
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

	mu     sync.Mutex
	failed map[string]error // library path -> why it could not be probed
}

func newTLSGate(t *bpf.TLS, log *slog.Logger) *tlsGate {
	return &tlsGate{tls: t, log: log, nodeRoot: "/proc/1/root", failed: make(map[string]error)}
}

func tlsOwner(netns uint64) string { return "netns:" + strconv.FormatUint(netns, 10) }

// enrolled probes the libraries the pod of netns can load.
func (g *tlsGate) enrolled(netns uint64) {
	// The daemon's own root stands in for the node's where /proc/1/root
	// cannot be read (no host PID namespace, or ptrace restrictions);
	// Acquire probes a file reached through two roots once.
	roots := append([]string{g.nodeRoot, "/"}, processRoots(netns)...)
	for _, root := range roots {
		for _, lib := range bpf.FindOpenSSL(root) {
			attached, err := g.tls.Acquire(tlsOwner(netns), lib)
			g.mu.Lock()
			if err != nil {
				g.failed[lib] = err
			} else {
				delete(g.failed, lib)
			}
			g.mu.Unlock()
			if err != nil {
				g.log.Warn("TLS library not probed: its plaintext is not captured", "path", lib, "error", err)
				continue
			}
			if attached {
				g.log.Info("TLS library probed at enrollment", "path", lib, "netns", netns)
			}
		}
	}
}

// unenrolled releases the pod's libraries.
func (g *tlsGate) unenrolled(netns uint64) { g.tls.Release(tlsOwner(netns)) }

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

// processRoots lists the distinct roots (/proc/PID/root) of the processes
// whose network namespace is netns.
func processRoots(netns uint64) []string {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	seen := make(map[[2]uint64]bool)
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", e.Name(), "ns", "net"), &st) != nil || st.Ino != netns {
			continue
		}
		root := fmt.Sprintf("/proc/%s/root", e.Name())
		if syscall.Stat(root, &st) != nil || seen[[2]uint64{st.Dev, st.Ino}] {
			continue
		}
		seen[[2]uint64{st.Dev, st.Ino}] = true
		out = append(out, root)
	}
	return out
}
