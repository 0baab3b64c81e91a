// Command weir-install installs the weir CNI plugin on a node: it copies the
// plugin binary into the CNI bin dir and chains a weir entry into the node's
// primary CNI config (see package cniconf for which file and how). With
// --watch it keeps the entry in place while the main plugin rewrites its
// config; with --uninstall it removes the entry again.
//
// Exit status: 0 on success, 1 when the work failed (no config, malformed
// config, I/O error), 2 on invalid flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/weirnet/weir/daemon/config"
	"github.com/weirnet/weir/install/cnibin"
	"github.com/weirnet/weir/install/cniconf"
	"github.com/weirnet/weir/netconf"
)

// versionTimeout bounds the VERSION call to the installed plugin.
const versionTimeout = 10 * time.Second

type options struct {
	pluginSrc       string
	cniBinDir       string
	cniConfDir      string
	uninstall       bool
	watch           bool
	resync          time.Duration
	uninstallOnExit bool
	debug           bool
	daemonConfig    string
	// set names the flags given on the command line.
	set   map[string]bool
	entry cniconf.Entry
}

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err == nil {
		err = applyDaemonConfig(&opts)
	}
	if err != nil {
		fmt.Fprintf(stderr, "weir-install: %v\n", err)
		return 2
	}
	level := slog.LevelInfo
	if opts.debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := execute(ctx, opts, log); err != nil {
		log.Error("weir-install failed", "error", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("weir-install", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.pluginSrc, "plugin-src", "", "weir plugin binary to install (default: the weir file next to this executable)")
	fs.StringVar(&o.cniBinDir, "cni-bin-dir", "/opt/cni/bin", "CNI plugin binary directory")
	fs.StringVar(&o.cniConfDir, "cni-conf-dir", "/etc/cni/net.d", "CNI network config directory")
	fs.BoolVar(&o.uninstall, "uninstall", false, "remove weir's entry from the primary config and exit (the binary stays: pods created with weir still need it for DEL)")
	fs.BoolVar(&o.watch, "watch", false, "after installing, keep the entry in place until SIGINT/SIGTERM")
	fs.DurationVar(&o.resync, "resync", cniconf.DefaultResync, "with --watch, period of the unconditional re-check")
	fs.BoolVar(&o.uninstallOnExit, "uninstall-on-exit", false, "with --watch, remove the entry on SIGINT/SIGTERM")
	fs.BoolVar(&o.debug, "debug", false, "log at debug level")
	fs.StringVar(&o.daemonConfig, "daemon-config", "",
		"weir-daemon's --config `file`: the entry's daemonSocket and spoolDir are taken from it (the daemon's socket and spoolDir), so plugin and daemon cannot disagree")

	e := &o.entry
	fs.StringVar(&e.DaemonSocket, "daemon-socket", netconf.DefaultDaemonSocket, "netconf daemonSocket: weir-daemon's enrollment socket")
	fs.DurationVar(&e.Timeout, "timeout", netconf.DefaultTimeout, "netconf timeout: bound of each call to the daemon")
	fs.StringVar(&e.FailurePolicy, "failure-policy", string(netconf.DefaultFailurePolicy), `netconf failurePolicy: "ignore" or "fail"`)
	fs.StringVar(&e.SpoolDir, "spool-dir", netconf.DefaultSpoolDir, "netconf spoolDir")
	fs.IntVar(&e.SpoolMaxRecords, "spool-max-records", netconf.DefaultSpoolMaxRecords, "netconf spoolMaxRecords")
	excl := fs.String("exclude-namespaces", strings.Join(netconf.DefaultExcludeNamespaces(), ","),
		`netconf excludeNamespaces, comma-separated; "" excludes nothing`)
	fs.StringVar(&e.LogFile, "log-file", "", "netconf logFile: the plugin's log file (default: none)")
	fs.StringVar(&e.LogLevel, "log-level", strings.ToLower(netconf.DefaultLogLevel.String()), `netconf logLevel: "debug", "info", "warn" or "error"`)

	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	e.ExcludeNamespaces = []string{}
	if *excl != "" {
		for ns := range strings.SplitSeq(*excl, ",") {
			e.ExcludeNamespaces = append(e.ExcludeNamespaces, strings.TrimSpace(ns))
		}
	}
	switch {
	case o.uninstall && o.watch:
		return o, errors.New("--uninstall and --watch are mutually exclusive")
	case o.uninstallOnExit && !o.watch:
		return o, errors.New("--uninstall-on-exit needs --watch")
	case o.watch && o.resync <= 0:
		return o, fmt.Errorf("--resync %s: must be greater than 0", o.resync)
	}
	if !o.uninstall {
		if err := e.Validate(); err != nil {
			return o, err
		}
	}
	return o, nil
}

// applyDaemonConfig sets the entry's daemonSocket and spoolDir from the
// daemon's own configuration file, read with the daemon's loader, so the
// plugin dials the socket the daemon serves and spools where it drains. An
// explicit --daemon-socket or --spool-dir that disagrees is an error.
func applyDaemonConfig(o *options) error {
	if o.daemonConfig == "" || o.uninstall {
		return nil
	}
	cfg, err := config.Load([]string{"--config", o.daemonConfig})
	if err != nil {
		return fmt.Errorf("--daemon-config %s: %w", o.daemonConfig, err)
	}
	for _, f := range []struct {
		flag  string
		field *string
		value string
		key   string
	}{
		{"daemon-socket", &o.entry.DaemonSocket, cfg.Socket, "socket"},
		{"spool-dir", &o.entry.SpoolDir, cfg.SpoolDir, "spoolDir"},
	} {
		if o.set[f.flag] && *f.field != f.value {
			return fmt.Errorf("--%s %s conflicts with the daemon's %s %s in %s; drop the flag",
				f.flag, *f.field, f.key, f.value, o.daemonConfig)
		}
		*f.field = f.value
	}
	return o.entry.Validate()
}

func execute(ctx context.Context, o options, log *slog.Logger) error {
	if o.uninstall {
		res, err := cniconf.Uninstall(o.cniConfDir)
		if err != nil {
			return err
		}
		log.Info("uninstall done", "path", res.Path, "action", res.Action)
		return nil
	}

	if err := installBinary(ctx, &o, log); err != nil {
		return err
	}

	if o.watch {
		w := &cniconf.Watcher{
			Dir:             o.cniConfDir,
			Entry:           o.entry,
			Resync:          o.resync,
			Settle:          cniconf.DefaultSettle,
			UninstallOnExit: o.uninstallOnExit,
			Logger:          log,
		}
		log.Info("watching CNI config dir", "dir", o.cniConfDir, "resync", o.resync)
		err := w.Run(ctx)
		st := w.Stats()
		log.Info("watch stopped", "passes", st.Passes, "changes", st.Changes, "failures", st.Failures, "overflows", st.Overflows)
		return err
	}

	res, err := cniconf.Install(o.cniConfDir, o.entry)
	if err != nil {
		return err
	}
	log.Info("install done", "path", res.Path, "action", res.Action, "replaced", res.Replaced)
	return nil
}

// installBinary copies the plugin into the CNI bin dir and records which CNI
// versions it supports, so Install refuses configs it could not serve.
func installBinary(ctx context.Context, o *options, log *slog.Logger) error {
	src := o.pluginSrc
	if src == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("locate the weir binary: %w (pass --plugin-src)", err)
		}
		if self, err = filepath.EvalSymlinks(self); err != nil {
			return fmt.Errorf("locate the weir binary: %w (pass --plugin-src)", err)
		}
		src = filepath.Join(filepath.Dir(self), cniconf.PluginType)
	}
	changed, err := cnibin.Install(src, o.cniBinDir, cniconf.PluginType)
	if err != nil {
		return err
	}
	dst := filepath.Join(o.cniBinDir, cniconf.PluginType)
	log.Info("plugin binary", "src", src, "dst", dst, "changed", changed)

	vctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	versions, err := cnibin.Versions(vctx, dst)
	if err != nil {
		return err
	}
	o.entry.SupportedVersions = versions
	log.Debug("plugin CNI versions", "versions", versions)
	return nil
}
