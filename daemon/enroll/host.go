package enroll

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Host checks what a pod record claims against the node, so that a caller
// (any root process may reach the socket) cannot make the daemon watch the
// host's own namespace or a made-up interface. Tests substitute their own.
type Host interface {
	// CheckNetns verifies that path is a network namespace whose inode is
	// inode and that it is not the daemon's own network namespace. An error
	// wrapping ErrNetnsGone means path no longer exists.
	CheckNetns(path string, inode uint64) error
	// CheckHostLink verifies that index is an interface of the daemon's
	// network namespace, named name when name is not empty.
	CheckHostLink(index int32, name string) error
}

// ErrNetnsGone says a pod's network namespace no longer exists. A spooled
// enrollment of such a pod is dropped, not kept as a bad record.
var ErrNetnsGone = errors.New("network namespace no longer exists")

// NodeHost is the Host of the node the daemon runs on.
type NodeHost struct{}

// nsGetNSType is NS_GET_NSTYPE, _IO(0xb7, 0x3): the type of a namespace fd.
const nsGetNSType = 0xb703

// CheckNetns implements Host.
func (NodeHost) CheckNetns(path string, inode uint64) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pod.netns %q: %w", path, ErrNetnsGone)
	}
	if err != nil {
		return fmt.Errorf("pod.netns %q: open: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("pod.netns %q: stat: %w", path, err)
	}
	typ, err := unix.IoctlRetInt(fd, nsGetNSType)
	if err != nil || typ != unix.CLONE_NEWNET {
		return fmt.Errorf("pod.netns %q is not a network namespace", path)
	}
	if st.Ino != inode {
		return fmt.Errorf("pod.netns_inode %d: the namespace at %q has inode %d", inode, path, st.Ino)
	}
	var own unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &own); err != nil {
		return fmt.Errorf("stat the daemon's own network namespace: %w", err)
	}
	if own.Ino == st.Ino && own.Dev == st.Dev {
		return fmt.Errorf("pod.netns %q is the daemon's own (host) network namespace, not a pod's", path)
	}
	return nil
}

// CheckHostLink implements Host.
func (NodeHost) CheckHostLink(index int32, name string) error {
	// One RTM_GETLINK for this index (net.InterfaceByIndex dumps every
	// link, and a node has a veth per pod).
	l, err := netlink.LinkByIndex(int(index))
	if err != nil {
		return fmt.Errorf("pod.host_veth_index %d: no such interface on the node: %v", index, err)
	}
	if got := l.Attrs().Name; name != "" && got != name {
		return fmt.Errorf("pod.host_veth_index %d is interface %q, not pod.host_veth %q", index, got, name)
	}
	return nil
}
