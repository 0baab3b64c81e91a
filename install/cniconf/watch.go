package cniconf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Defaults for Watcher.
const (
	DefaultResync = 30 * time.Second
	DefaultSettle = 200 * time.Millisecond
)

// Watcher keeps Weir's entry in the primary config of Dir. Main CNI plugins
// (their own installers, usually DaemonSets) rewrite or replace their config
// at start and on upgrades, dropping entries they do not know; the watcher
// puts Weir's entry back. It reacts to changes of the directory (fsnotify)
// and, because inotify can miss changes (event queue overflow, the directory
// being removed and recreated, filesystems without inotify support), also
// re-checks every Resync.
//
// Reconciling is Install, which does not rewrite a config that already holds
// the entry: the watcher's own writes therefore cause one more, idle, pass
// and no loop.
type Watcher struct {
	// Dir is the CNI config directory.
	Dir string
	// Entry is the entry to keep in place.
	Entry Entry
	// Resync is the period of the unconditional re-check; it must be > 0.
	Resync time.Duration
	// Settle is how long the directory must stay quiet after a change before
	// the watcher reads it, so a config written in several steps by a
	// non-atomic writer is read once complete. It must be >= 0.
	Settle time.Duration
	// UninstallOnExit removes the entry when Run's context ends.
	UninstallOnExit bool
	// Logger receives the watcher's logs; nil discards them.
	Logger *slog.Logger

	stats struct {
		passes, changes, failures, overflows atomic.Uint64
	}
}

// Stats counts what a Watcher has done so far.
type Stats struct {
	// Passes is the number of reconcile passes run.
	Passes uint64
	// Changes is the number of passes that wrote the config.
	Changes uint64
	// Failures is the number of passes that failed (no config yet, malformed
	// config, write error); each is retried on the next change or resync.
	Failures uint64
	// Overflows is the number of fsnotify queue overflows, each answered with
	// an immediate pass.
	Overflows uint64
}

// Stats returns the watcher's counters. It is safe to call while Run runs.
func (w *Watcher) Stats() Stats {
	return Stats{
		Passes:    w.stats.passes.Load(),
		Changes:   w.stats.changes.Load(),
		Failures:  w.stats.failures.Load(),
		Overflows: w.stats.overflows.Load(),
	}
}

// Run installs the entry and keeps it installed until ctx ends. A missing
// config is not an error: the entry is installed as soon as one appears. Run
// returns nil when ctx ends (after uninstalling if UninstallOnExit is set),
// or an error if the watch cannot be set up or the final uninstall fails.
func (w *Watcher) Run(ctx context.Context) error {
	if w.Resync <= 0 {
		return fmt.Errorf("watch %s: resync period %s must be greater than 0", w.Dir, w.Resync)
	}
	if w.Settle < 0 {
		return fmt.Errorf("watch %s: settle time %s must not be negative", w.Dir, w.Settle)
	}
	if err := w.Entry.Validate(); err != nil {
		return err
	}
	log := w.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("dir", w.Dir)

	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", w.Dir, err)
	}
	defer fw.Close()

	// Watch first, then reconcile: a config created in between is then seen
	// by both, never by neither.
	watching := w.addWatch(fw, log)
	w.reconcile(log)

	resync := time.NewTicker(w.Resync)
	defer resync.Stop()
	// Armed on the first change of a burst. Since Go 1.23 a stopped timer
	// delivers no stale value, so Stop right away leaves it idle.
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	pending := false

	for {
		select {
		case <-ctx.Done():
			if !w.UninstallOnExit {
				return nil
			}
			res, err := Uninstall(w.Dir)
			if errors.Is(err, ErrNoConfig) {
				log.Info("no CNI config to uninstall from on exit")
				return nil
			}
			if err != nil {
				return fmt.Errorf("uninstall on exit: %w", err)
			}
			log.Info("uninstalled on exit", "path", res.Path, "action", res.Action)
			return nil

		case ev, ok := <-fw.Events:
			if !ok {
				return fmt.Errorf("watch %s: fsnotify event channel closed", w.Dir)
			}
			if filepath.Clean(ev.Name) == filepath.Clean(w.Dir) && ev.Op.Has(fsnotify.Remove|fsnotify.Rename) {
				// The directory itself went away; its watch is gone too.
				log.Warn("CNI config dir removed; re-checking every resync period")
				watching = false
				continue
			}
			if !IsConfigFile(ev.Name) {
				continue
			}
			log.Debug("config dir changed", "event", ev.String())
			if !pending {
				pending = true
				settle.Reset(w.Settle)
			}

		case err, ok := <-fw.Errors:
			if !ok {
				return fmt.Errorf("watch %s: fsnotify error channel closed", w.Dir)
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.stats.overflows.Add(1)
				log.Warn("fsnotify queue overflowed; re-checking now")
			} else {
				log.Warn("fsnotify error; re-checking now", "error", err)
			}
			w.reconcile(log)

		case <-settle.C:
			pending = false
			w.reconcile(log)

		case <-resync.C:
			if !watching {
				watching = w.addWatch(fw, log)
			}
			w.reconcile(log)
		}
	}
}

// addWatch starts watching the directory and reports whether it could. A
// directory that does not exist yet is retried every resync period.
func (w *Watcher) addWatch(fw *fsnotify.Watcher, log *slog.Logger) bool {
	if err := fw.Add(w.Dir); err != nil {
		log.Warn("cannot watch CNI config dir yet; relying on the periodic re-check", "error", err)
		return false
	}
	return true
}

// reconcile runs one Install and logs its outcome.
func (w *Watcher) reconcile(log *slog.Logger) {
	w.stats.passes.Add(1)
	res, err := Install(w.Dir, w.Entry)
	switch {
	case errors.Is(err, ErrNoConfig):
		w.stats.failures.Add(1)
		log.Info("no CNI config yet; waiting for one", "error", err)
	case errors.Is(err, errChanged):
		w.stats.failures.Add(1)
		log.Info("CNI config changed while being patched; retrying on the next change", "error", err)
	case err != nil:
		w.stats.failures.Add(1)
		log.Error("cannot install weir entry", "error", err)
	case res.Changed():
		w.stats.changes.Add(1)
		log.Info("weir entry installed", "path", res.Path, "action", res.Action, "replaced", res.Replaced)
	default:
		log.Debug("weir entry present", "path", res.Path)
	}
}
