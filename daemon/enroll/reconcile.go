package enroll

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"syscall"

	"github.com/weirnet/weir/daemon/registry"
)

// Reconcile drops every pod whose network namespace no longer exists: its
// netns path is gone, or now names a different namespace (another inode).
// This catches pods whose CNI DEL the daemon never saw — deleted while the
// daemon was down with the plugin's spool full, or torn down by a runtime
// that skipped DEL — so the eBPF side stops watching a namespace id the
// kernel may hand out again.
//
// The daemon must see the host's netns paths (for containerd, /var/run/netns
// mounted into its container, and the host PID namespace for /proc paths);
// otherwise every pod looks gone. A path that cannot be inspected for another
// reason (permissions) keeps its pod and is logged.
func Reconcile(reg *registry.Registry, log *slog.Logger) ([]*registry.Pod, error) {
	// Inspect the filesystem without the registry's lock, then remove only
	// records that are still exactly the ones found stale, so a concurrent
	// re-enrollment into a new namespace is not lost.
	type seen struct {
		netns string
		inode uint64
	}
	stale := map[registry.Key]seen{}
	for _, p := range reg.List() {
		gone, why, err := netnsGone(p.Netns, p.NetnsInode)
		if err != nil {
			log.Warn("reconcile: cannot inspect pod netns; keeping the pod", append(podAttrs(p), "error", err)...)
			continue
		}
		if gone {
			log.Info("reconcile: pod netns is gone; removing the pod", append(podAttrs(p), "netns", p.Netns, "reason", why)...)
			stale[registry.KeyOf(p)] = seen{p.Netns, p.NetnsInode}
		}
	}
	if len(stale) == 0 {
		return nil, nil
	}
	removed, err := reg.RemoveIf(func(p *registry.Pod) bool {
		s, ok := stale[registry.KeyOf(p)]
		return ok && s.netns == p.Netns && s.inode == p.NetnsInode
	})
	if err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	return removed, nil
}

// netnsGone reports whether the namespace file at path no longer is the
// namespace with the given inode, and why.
func netnsGone(path string, inode uint64) (bool, string, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return true, "netns path does not exist", nil
	}
	if err != nil {
		return false, "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false, "", fmt.Errorf("stat %s: no inode information", path)
	}
	if st.Ino != inode {
		return true, fmt.Sprintf("netns path now has inode %d, enrolled with %d", st.Ino, inode), nil
	}
	return false, "", nil
}
