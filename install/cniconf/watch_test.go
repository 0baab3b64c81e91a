package cniconf

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// reactBound is how long the watcher may take to put the entry back.
const reactBound = 5 * time.Second

const mainPluginConfig = `{"cniVersion":"1.0.0","name":"bridge-net","plugins":[{"type":"bridge","bridge":"cni0"},{"type":"portmap","capabilities":{"portMappings":true}}]}`

// startWatcher runs w until the test ends and returns a function that stops
// it and returns Run's error.
func startWatcher(t *testing.T, w *Watcher) (stop func() error) {
	t.Helper()
	w.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var stopped bool
	var runErr error
	stop = func() error {
		if stopped {
			return runErr
		}
		stopped = true
		cancel()
		select {
		case runErr = <-done:
		case <-time.After(reactBound):
			t.Fatalf("watcher did not stop within %s of its context ending", reactBound)
		}
		return runErr
	}
	t.Cleanup(func() { stop() })
	return stop
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// waitFor polls cond until it holds or the bound passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(reactBound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, reactBound)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// weirCount returns the number of weir entries in path, or -1 if the file
// is missing or not a valid plugin list.
func weirCount(path string) int {
	doc, _, err := readConfig(path)
	if err != nil || !doc.isList {
		return -1
	}
	return countWeir(doc.obj)
}

func TestWatchInstallsConfigThatAppearsLaterAndKeepsIt(t *testing.T) {
	dir := t.TempDir()
	// A resync period far beyond the test proves fsnotify does the work.
	w := &Watcher{Dir: dir, Entry: defaultEntry(), Resync: time.Hour, Settle: 20 * time.Millisecond}
	stop := startWatcher(t, w)
	waitFor(t, "initial pass", func() bool { return w.Stats().Passes >= 1 })
	if st := w.Stats(); st.Failures != 1 || st.Changes != 0 {
		t.Fatalf("stats after a pass over an empty dir: %+v, want one failure and no change", st)
	}

	path := filepath.Join(dir, "10-bridge.conflist")
	if err := os.WriteFile(path, []byte(mainPluginConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "entry added to a config created after start", func() bool { return weirCount(path) == 1 })

	// The main plugin's installer rewrites its file in place, dropping us.
	if err := os.WriteFile(path, []byte(mainPluginConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "entry re-added after an in-place rewrite", func() bool { return weirCount(path) == 1 })

	// ...or replaces it atomically.
	tmp := filepath.Join(dir, "calico-tmp")
	if err := os.WriteFile(tmp, []byte(mainPluginConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "entry re-added after a replace by rename", func() bool { return weirCount(path) == 1 })

	// ...or switches to a single-plugin file that sorts first.
	conf := filepath.Join(dir, "05-ptp.conf")
	if err := os.WriteFile(conf, []byte(`{"cniVersion":"1.0.0","name":"ptp","type":"ptp"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	converted := filepath.Join(dir, "05-ptp.conflist")
	waitFor(t, "new primary .conf converted", func() bool {
		_, err := os.Stat(conf)
		return os.IsNotExist(err) && weirCount(converted) == 1
	})

	// Its own writes must not make the watcher loop: after things settle,
	// passes stop.
	time.Sleep(200 * time.Millisecond)
	settled := w.Stats()
	time.Sleep(300 * time.Millisecond)
	if now := w.Stats(); now.Passes != settled.Passes {
		t.Errorf("watcher keeps reconciling an unchanged dir: %+v then %+v", settled, now)
	}

	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if weirCount(converted) != 1 {
		t.Error("entry removed on exit without UninstallOnExit")
	}
}

func TestWatchUninstallOnExit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "10-bridge.conflist")
	if err := os.WriteFile(path, []byte(mainPluginConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	w := &Watcher{Dir: dir, Entry: defaultEntry(), Resync: time.Hour, Settle: 20 * time.Millisecond, UninstallOnExit: true}
	stop := startWatcher(t, w)
	waitFor(t, "entry installed at start", func() bool { return weirCount(path) == 1 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := weirCount(path); n != 0 {
		t.Fatalf("%d weir entries after exit with UninstallOnExit, want 0", n)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := decode([]byte(mainPluginConfig), true)
	back, _ := decode(got, true)
	if !orig.samePluginsExceptWeir(back) {
		t.Errorf("plugin list after uninstall on exit:\n%s", got)
	}
}

func TestWatchPeriodicRecheckCoversDirCreatedLater(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net.d") // does not exist yet: no inotify watch possible
	w := &Watcher{Dir: dir, Entry: defaultEntry(), Resync: 50 * time.Millisecond, Settle: 20 * time.Millisecond}
	startWatcher(t, w)
	waitFor(t, "initial pass", func() bool { return w.Stats().Passes >= 1 })

	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "10-bridge.conflist")
	if err := os.WriteFile(path, []byte(mainPluginConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "entry added by the periodic re-check", func() bool { return weirCount(path) == 1 })
}

func TestWatchRetriesMalformedConfigWhenFixed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "10-bridge.conflist")
	broken := []byte(`{"cniVersion":"1.0.0","name":"bridge-net","plugins":[`)
	if err := os.WriteFile(path, broken, 0o644); err != nil {
		t.Fatal(err)
	}
	w := &Watcher{Dir: dir, Entry: defaultEntry(), Resync: time.Hour, Settle: 20 * time.Millisecond}
	startWatcher(t, w)
	waitFor(t, "failed pass over the malformed config", func() bool { return w.Stats().Failures >= 1 })
	if got, _ := os.ReadFile(path); string(got) != string(broken) {
		t.Fatalf("malformed config was modified: %q", got)
	}

	if err := os.WriteFile(path, []byte(mainPluginConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "entry added once the config is fixed", func() bool { return weirCount(path) == 1 })
}

func TestWatchRejectsBadSettings(t *testing.T) {
	for name, w := range map[string]*Watcher{
		"zero resync":     {Dir: t.TempDir(), Resync: 0},
		"negative settle": {Dir: t.TempDir(), Resync: time.Second, Settle: -1},
		"invalid entry":   {Dir: t.TempDir(), Resync: time.Second, Entry: Entry{FailurePolicy: "maybe"}},
	} {
		if err := w.Run(context.Background()); err == nil {
			t.Errorf("%s: Run accepted it", name)
		}
	}
}
