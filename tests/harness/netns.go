package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` keeps named namespaces; containerd puts its
// pod namespaces there too, so tests see the same layout runtimes produce.
const netnsDir = "/run/netns"

// NetNS is a named network namespace created with `ip netns add`.
type NetNS struct {
	Name  string
	Path  string // /run/netns/<name>, the CNI_NETNS value
	Inode uint64 // inode of Path: the kernel's identity of the namespace
}

// NewNetNS creates a named network namespace, brings its loopback up, and
// registers its deletion with t.Cleanup. Deleting the namespace also destroys
// the pod end of every veth inside it, and with it the host end.
func NewNetNS(t testing.TB, name string) *NetNS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := run(ctx, "ip", "netns", "add", name); err != nil {
		t.Fatalf("create netns: %v", err)
	}
	n := &NetNS{Name: name, Path: filepath.Join(netnsDir, name)}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := run(ctx, "ip", "netns", "delete", name); err != nil && fileExists(n.Path) {
			t.Errorf("delete netns: %v", err)
		}
	})
	ino, err := Inode(n.Path)
	if err != nil {
		t.Fatal(err)
	}
	n.Inode = ino
	if _, err := run(ctx, "ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		t.Fatalf("bring up lo in %s: %v", name, err)
	}
	return n
}

// Do runs fn with the calling goroutine's thread switched into the namespace.
func (n *NetNS) Do(fn func() error) error {
	h, err := ns.GetNS(n.Path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", n.Path, err)
	}
	defer h.Close()
	return h.Do(func(ns.NetNS) error { return fn() })
}

// Inode returns the inode number of a namespace file (what stat(2) reports,
// and what the kernel exposes as the namespace's id).
func Inode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return st.Ino, nil
}

// NetNSExists reports whether a namespace file exists.
func NetNSExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
