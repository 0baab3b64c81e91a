// Package enrollapi is the contract between the weir CNI plugin and
// weir-daemon: how a pod attachment reaches the daemon, live or deferred.
//
// The contract has three parts, each in its own package under this one, so
// that the per-pod plugin binary, the installer and the daemon all import it
// downward and none of them imports another's internals:
//
//   - enrollpb: the gRPC enrollment API (enroll.proto and the code protoc
//     generates from it). The plugin calls it from CNI ADD, DEL and GC; the
//     daemon serves it.
//   - spool: the on-disk queue of calls the plugin made while the daemon was
//     down (record type, file layout, writer and reader). The plugin writes
//     it; the daemon drains it at start.
//   - this package: the default socket and spool paths, the values both sides
//     fall back to when nothing is configured. The plugin's netconf and the
//     daemon's config refer to these constants instead of repeating them, so
//     an unconfigured plugin always dials the socket an unconfigured daemon
//     serves, and spools where that daemon drains.
//
// The package is called enrollapi, not enroll, because daemon/enroll (the
// daemon's implementation of the service) keeps that name at its call sites;
// enrollapi.DefaultSocket says which side of the line the value belongs to.
// It has no dependencies, so netconf and the installer can use the defaults
// without linking gRPC.
package enrollapi

const (
	// DefaultSocket is the unix socket weir-daemon serves the enrollment
	// API on, and the one the plugin dials, unless configured otherwise.
	DefaultSocket = "/run/weir/weir.sock"

	// DefaultSpoolDir is the directory the plugin spools calls in while the
	// daemon is down, and the one the daemon drains at start. The daemon
	// derives it from its state directory (<stateDir>/spool); its config
	// tests pin that the derived default is this value.
	DefaultSpoolDir = "/var/lib/weir/spool"

	// DefaultSpoolMaxRecords bounds the spool when nothing else is
	// configured: enough for a daemon that is down for a while on a busy
	// node, small enough that a daemon that never returns cannot fill the
	// disk.
	DefaultSpoolMaxRecords = 1024
)
