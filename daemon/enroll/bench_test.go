package enroll

import (
	"context"
	"log/slog"
	"testing"

	"github.com/weirnet/weir/daemon/registry"
	"github.com/weirnet/weir/enrollapi/enrollpb"
	"github.com/weirnet/weir/internal/testenv"
)

// BenchmarkEnroll measures one Enroll (validation, node checks, persisted
// registry) of a real pod netns, with and without the node checks, so the
// cost of checking a record against the kernel reads as a same-run ratio.
// Privileged: it creates a network namespace and a veth.
func BenchmarkEnroll(b *testing.B) {
	testenv.Privileged(b, "creates a network namespace and a veth")
	netns := podNetns(b, "bench")
	ino := inodeOf(b, netns)
	for _, tc := range []struct {
		name string
		host Host
	}{{"node-checks", NodeHost{}}, {"no-checks", openHost{}}} {
		b.Run(tc.name, func(b *testing.B) {
			reg, err := registry.Open(registry.Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			s := NewServer(reg, slog.New(slog.DiscardHandler), ServerOptions{Host: tc.host})
			p := testPod("bench")
			p.Netns, p.NetnsInode, p.HostVethIndex, p.HostVeth = netns, ino, 1, "lo"
			req := &enrollpb.EnrollRequest{Pod: p}
			for b.Loop() {
				if _, err := s.Enroll(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkNodeChecks is the node checks alone (open, NS_GET_NSTYPE,
// fstat, stat of the daemon's netns, one RTM_GETLINK), next to the
// record-only validation.
func BenchmarkNodeChecks(b *testing.B) {
	testenv.Privileged(b, "creates a network namespace and a veth")
	netns := podNetns(b, "chk")
	p := testPod("chk")
	p.Netns, p.NetnsInode, p.HostVethIndex, p.HostVeth = netns, inodeOf(b, netns), 1, "lo"
	b.Run("node", func(b *testing.B) {
		for b.Loop() {
			if err := (NodeHost{}).CheckNetns(p.GetNetns(), p.GetNetnsInode()); err != nil {
				b.Fatal(err)
			}
			if err := (NodeHost{}).CheckHostLink(p.GetHostVethIndex(), p.GetHostVeth()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("record", func(b *testing.B) {
		for b.Loop() {
			if err := ValidatePod(p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
