// Command weir is a chained CNI plugin that enrolls each pod attachment with
// weir-daemon so the daemon can monitor the pod's traffic from its first
// process on.
//
// weir runs after the main plugin (bridge, ptp, ...) in a conflist. It never
// changes networking: ADD passes the main plugin's result through unchanged
// (converted to the configuration's cniVersion) and only adds a side effect,
// the Enroll call. Because a monitor must never be the reason a pod cannot
// start or stop, Weir fails open by default: an unreachable daemon gets a
// spool record to replay later (failurePolicy "ignore"; "fail" makes ADD
// return "try again later" instead), DEL always succeeds, and STATUS never
// contacts the daemon at all.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"
)

func main() {
	p := &plugin{
		stdout: os.Stdout,
		stderr: os.Stderr,
		now:    time.Now,
	}
	// The runtime stops a plugin that overruns its own deadline with
	// SIGTERM; cancelling the daemon call then lets ADD still spool.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	with := func(f func(context.Context, *skel.CmdArgs) error) func(*skel.CmdArgs) error {
		return func(args *skel.CmdArgs) error { return f(ctx, args) }
	}
	funcs := skel.CNIFuncs{
		Add:    with(p.cmdAdd),
		Del:    with(p.cmdDel),
		Check:  with(p.cmdCheck),
		GC:     with(p.cmdGC),
		Status: with(p.cmdStatus),
	}
	// 0.4.0 is the oldest spec with CHECK, which chained plugins rely on.
	versions := version.PluginSupports("0.4.0", "1.0.0", "1.1.0")
	skel.PluginMainFuncs(funcs, versions, "weir: enrolls pods with weir-daemon for network monitoring (chained CNI plugin)")
}

// plugin holds what the CNI commands need from the process, so tests can
// run them in-process with their own output and clock.
type plugin struct {
	// stdout receives the CNI result and nothing else.
	stdout io.Writer
	// stderr receives the one line reporting an unusable log file; the
	// runtime records a plugin's stderr.
	stderr io.Writer
	// now stamps spool records.
	now func() time.Time
}
