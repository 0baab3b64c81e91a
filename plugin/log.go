package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/weirnet/weir/netconf"
)

// maxLogBytes bounds the log file: when it is larger at the start of an
// invocation it is renamed to <logFile>.1 (replacing the previous one), so a
// node never holds more than about twice this much weir plugin log.
const maxLogBytes = 16 << 20

// openLog returns the invocation's logger and a function that closes it.
// Without logFile, logs are discarded: stdout belongs to the CNI result and
// the runtime may not keep stderr. A log file that cannot be opened must not
// fail the command, so it is reported once on stderr and logging is off.
func (p *plugin) openLog(conf *netconf.NetConf, cmd string, args *skel.CmdArgs) (*slog.Logger, func()) {
	discard := slog.New(slog.DiscardHandler)
	if conf.LogFile == "" {
		return discard, func() {}
	}
	f, err := openLogFile(conf.LogFile)
	if err != nil {
		fmt.Fprintf(p.stderr, "weir: logging disabled: %v\n", err)
		return discard, func() {}
	}
	log := slog.New(slog.NewJSONHandler(f, &slog.HandlerOptions{Level: conf.LogLevel})).With(
		"cmd", cmd,
		"network", conf.Name,
		"containerID", args.ContainerID,
		"ifname", args.IfName,
	)
	return log, func() { f.Close() }
}

func openLogFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create log directory for %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() > maxLogBytes {
		// Best effort: a concurrent invocation may have rotated it first.
		_ = os.Rename(path, path+".1")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return f, nil
}
