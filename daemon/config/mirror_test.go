package config_test

import (
	"slices"
	"testing"

	"github.com/weirnet/weir/bpf"
	"github.com/weirnet/weir/daemon/capture"
	"github.com/weirnet/weir/daemon/config"
	"github.com/weirnet/weir/daemon/enroll"
	"github.com/weirnet/weir/daemon/protocol/record"
	"github.com/weirnet/weir/daemon/registry"
	"github.com/weirnet/weir/enrollapi"
	"github.com/weirnet/weir/enrollapi/spool"
	"github.com/weirnet/weir/netconf"
)

// Values that two components must agree on, where one of them derives its
// value instead of naming the owner's constant. A change to either side that
// breaks the agreement fails here, not on a node whose plugin spools calls
// the daemon never drains.

// An unconfigured plugin dials the socket an unconfigured daemon serves, and
// spools where that daemon drains: the daemon's spool directory is derived
// from its state directory, so only the completed configuration shows it.
func TestUnconfiguredPluginAndDaemonMeetAtTheSameSocketAndSpool(t *testing.T) {
	cfg, err := config.Load(nil)
	if err != nil {
		t.Fatalf("config.Load(no flags): %v", err)
	}
	nc, err := netconf.Parse([]byte(`{"cniVersion":"1.1.0","name":"net","type":"weir"}`))
	if err != nil {
		t.Fatalf("netconf.Parse(no weir keys): %v", err)
	}
	if cfg.Socket != nc.DaemonSocket || cfg.Socket != enrollapi.DefaultSocket {
		t.Errorf("daemon socket %q, plugin daemonSocket %q, contract default %q: all three must be equal",
			cfg.Socket, nc.DaemonSocket, enrollapi.DefaultSocket)
	}
	if cfg.SpoolDir != nc.SpoolDir || cfg.SpoolDir != enrollapi.DefaultSpoolDir {
		t.Errorf("daemon spoolDir %q (from stateDir %q), plugin spoolDir %q, contract default %q: all three must be equal",
			cfg.SpoolDir, cfg.StateDir, nc.SpoolDir, enrollapi.DefaultSpoolDir)
	}
	if nc.SpoolMaxRecords != spool.DefaultMaxRecords {
		t.Errorf("plugin spoolMaxRecords %d, spool package default %d: must be equal", nc.SpoolMaxRecords, spool.DefaultMaxRecords)
	}
}

// The registry applies its own bound when given none; the daemon always
// passes its configured one. The two defaults must not drift apart, or the
// README's documented default depends on who constructs the registry.
// (config does not import registry: weir-install links config, and registry
// would bring gRPC and protobuf with it.)
func TestDaemonMaxPodsDefaultIsTheRegistrys(t *testing.T) {
	if config.DefaultMaxPods != registry.DefaultMaxPods {
		t.Errorf("config.DefaultMaxPods = %d, registry.DefaultMaxPods = %d: must be equal",
			config.DefaultMaxPods, registry.DefaultMaxPods)
	}
	if got := config.Default().MaxPods; got != registry.DefaultMaxPods {
		t.Errorf("config.Default().MaxPods = %d, want registry.DefaultMaxPods %d", got, registry.DefaultMaxPods)
	}
}

// The enrollment listener admits root when given no uids; the daemon's
// config always passes its own list, whose default must be the same.
func TestDaemonAllowedUIDsDefaultIsTheListeners(t *testing.T) {
	if got, want := config.Default().AllowedUIDs, enroll.DefaultAllowedUIDs(); !slices.Equal(got, want) {
		t.Errorf("config.Default().AllowedUIDs = %v, enroll.DefaultAllowedUIDs() = %v: must be equal", got, want)
	}
}

// The capture table, the eBPF collector and the protocol parsers apply
// their own defaults and bounds when given none; the daemon always passes
// its configured values. config names them as literals (weir-install links
// config; bpf would bring cilium/ebpf with it), so each pair is pinned
// here: the README's documented defaults are the components' own.
func TestPipelineDefaultsAndBoundsAreTheComponents(t *testing.T) {
	d := config.Default()
	lim := record.DefaultLimits()
	for _, c := range []struct {
		name          string
		config, owner int64
	}{
		{"capture.maxConnections", int64(d.Capture.MaxConnections), capture.DefaultMaxConns},
		{"capture.maxBufferedBytes", int64(d.Capture.MaxBufferedBytes), capture.DefaultMaxBufferedBytes},
		{"capture.idleTimeout", int64(d.Capture.IdleTimeout.Duration), int64(capture.DefaultIdleTimeout)},
		{"bpf.ringBufferSize", int64(d.BPF.RingBufferSize), bpf.DefaultRingBufferSize},
		{"bpf.chunkSize", int64(d.BPF.ChunkSize), bpf.DefaultChunkSize},
		{"bpf.captureLimit", int64(d.BPF.CaptureLimit), bpf.DefaultCaptureLimit},
		{"bpf.maxFrameCopy", int64(d.BPF.MaxFrameCopy), bpf.DefaultMaxFrameCopy},
		{"bpf.hintMapSize", int64(d.BPF.HintMapSize), bpf.DefaultHintMapSize},
		{"bpf.pollInterval", int64(d.BPF.PollInterval.Duration), int64(bpf.DefaultPollInterval)},
		{"protocol.maxHeaderBytes", int64(d.Protocol.MaxHeaderBytes), int64(lim.MaxHeaderBytes)},
		{"protocol.maxStreams", int64(d.Protocol.MaxStreams), int64(lim.MaxStreams)},
		{"protocol.maxPending", int64(d.Protocol.MaxPending), int64(lim.MaxPending)},
		{"bound: bpf.chunkSize", config.MaxChunkSize, bpf.MaxChunkSize},
		{"bound: bpf.maxFrameCopy (min)", config.MinMaxFrameCopy, bpf.MinMaxFrameCopy},
		{"bound: bpf.maxFrameCopy (max)", config.MaxMaxFrameCopy, bpf.MaxMaxFrameCopy},
	} {
		if c.config != c.owner {
			t.Errorf("%s: config has %d, its component %d: must be equal", c.name, c.config, c.owner)
		}
	}
}
