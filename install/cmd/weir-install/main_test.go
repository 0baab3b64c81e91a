package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakePlugin stands in for bin/weir: an executable that answers VERSION with
// the versions the real plugin supports.
const fakePlugin = `#!/bin/sh
[ "$CNI_COMMAND" = VERSION ] || exit 1
echo '{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}'
`

type env struct {
	plugin, binDir, confDir string
}

func newEnv(t *testing.T) env {
	t.Helper()
	root := t.TempDir()
	e := env{
		plugin:  filepath.Join(root, "src", "weir"),
		binDir:  filepath.Join(root, "opt", "cni", "bin"),
		confDir: filepath.Join(root, "etc", "cni", "net.d"),
	}
	for _, d := range []string{filepath.Dir(e.plugin), e.confDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(e.plugin, []byte(fakePlugin), 0o755); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e env) args(extra ...string) []string {
	return append([]string{"--plugin-src", e.plugin, "--cni-bin-dir", e.binDir, "--cni-conf-dir", e.confDir}, extra...)
}

func (e env) write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(e.confDir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func plugins(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Plugins []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return doc.Plugins
}

func TestInstallCopiesPluginAndConvertsConf(t *testing.T) {
	e := newEnv(t)
	conf := e.write(t, "10-bridge.conf", `{"cniVersion":"1.0.0","name":"bridge-net","type":"bridge","bridge":"cni0"}`)
	var stderr bytes.Buffer
	code := run(e.args("--failure-policy", "fail", "--exclude-namespaces", "", "--timeout", "2s"), &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, &stderr)
	}

	info, err := os.Stat(filepath.Join(e.binDir, "weir"))
	if err != nil || info.Mode().Perm() != 0o755 {
		t.Fatalf("plugin binary: %v, %v; want mode 0755", info, err)
	}
	if _, err := os.Stat(conf); !os.IsNotExist(err) {
		t.Errorf(".conf still present after conversion (%v)", err)
	}
	got := plugins(t, filepath.Join(e.confDir, "10-bridge.conflist"))
	if len(got) != 2 || got[0]["type"] != "bridge" {
		t.Fatalf("plugins %v, want bridge then weir", got)
	}
	// The timeout equals the plugin default, so it is not written.
	want := map[string]any{"type": "weir", "failurePolicy": "fail", "excludeNamespaces": []any{}}
	if !reflect.DeepEqual(got[1], want) {
		t.Errorf("weir entry %v, want %v", got[1], want)
	}

	// Second run: nothing to do.
	stderr.Reset()
	if code := run(e.args("--failure-policy", "fail", "--exclude-namespaces", ""), &stderr); code != 0 {
		t.Fatalf("second run: exit %d, stderr:\n%s", code, &stderr)
	}
	if !strings.Contains(stderr.String(), "action=unchanged") || !strings.Contains(stderr.String(), "changed=false") {
		t.Errorf("second run did not report an unchanged config and binary:\n%s", &stderr)
	}

	// Uninstall leaves the bridge plugin alone.
	stderr.Reset()
	if code := run(e.args("--uninstall"), &stderr); code != 0 {
		t.Fatalf("uninstall: exit %d, stderr:\n%s", code, &stderr)
	}
	if got := plugins(t, filepath.Join(e.confDir, "10-bridge.conflist")); len(got) != 1 || got[0]["type"] != "bridge" {
		t.Errorf("plugins after uninstall %v, want only bridge", got)
	}
}

func TestFailuresExitOne(t *testing.T) {
	for _, tc := range []struct {
		name, file, content, wantErr string
	}{
		{name: "no config", wantErr: "no CNI network config found"},
		{name: "malformed", file: "10-x.conflist", content: `{"plugins": [`, wantErr: "10-x.conflist: malformed JSON"},
		{
			name: "unsupported cniVersion", file: "10-flannel.conflist",
			content: `{"cniVersion":"0.3.1","name":"cbr0","plugins":[{"type":"flannel"}]}`,
			wantErr: `cniVersion \"0.3.1\" is not supported by the weir plugin`,
		},
		{
			name: "empty plugin list", file: "10-empty.conflist",
			content: `{"cniVersion":"1.0.0","name":"empty","plugins":[]}`,
			wantErr: `holds no main plugin`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if tc.file != "" {
				e.write(t, tc.file, tc.content)
			}
			var stderr bytes.Buffer
			if code := run(e.args(), &stderr); code != 1 {
				t.Fatalf("exit %d, want 1; stderr:\n%s", code, &stderr)
			}
			if !strings.Contains(stderr.String(), tc.wantErr) {
				t.Errorf("stderr does not contain %q:\n%s", tc.wantErr, &stderr)
			}
			if tc.file != "" {
				if got, _ := os.ReadFile(filepath.Join(e.confDir, tc.file)); string(got) != tc.content {
					t.Errorf("config modified: %q", got)
				}
			}
		})
	}
}

func TestInvalidFlagsExitTwo(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--failure-policy", "sometimes"}, `failurePolicy "sometimes": must be "ignore" or "fail"`},
		{[]string{"--log-level", "loud"}, `logLevel "loud"`},
		{[]string{"--timeout", "5m"}, `timeout "5m0s"`},
		{[]string{"--daemon-socket", "weir.sock"}, `daemonSocket "weir.sock": must be an absolute path`},
		{[]string{"--exclude-namespaces", "a,,b"}, `excludeNamespaces[1] ""`},
		{[]string{"--uninstall", "--watch"}, "mutually exclusive"},
		{[]string{"--uninstall-on-exit"}, "needs --watch"},
		{[]string{"--watch", "--resync", "0s"}, "--resync 0s"},
		{[]string{"--no-such-flag"}, "flag provided but not defined"},
		{[]string{"stray"}, "unexpected arguments"},
	} {
		e := newEnv(t)
		e.write(t, "10-bridge.conflist", `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"}]}`)
		var stderr bytes.Buffer
		if code := run(e.args(tc.args...), &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2; stderr:\n%s", tc.args, code, &stderr)
		}
		if !strings.Contains(stderr.String(), tc.wantErr) {
			t.Errorf("%v: stderr does not contain %q:\n%s", tc.args, tc.wantErr, &stderr)
		}
		if _, err := os.Stat(filepath.Join(e.binDir, "weir")); !os.IsNotExist(err) {
			t.Errorf("%v: plugin installed despite invalid flags", tc.args)
		}
	}
}

func TestDefaultPluginSourceIsNextToExecutable(t *testing.T) {
	e := newEnv(t)
	e.write(t, "10-bridge.conflist", `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"}]}`)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	self, _ = filepath.EvalSymlinks(self)
	var stderr bytes.Buffer
	code := run([]string{"--cni-bin-dir", e.binDir, "--cni-conf-dir", e.confDir}, &stderr)
	// The test binary has no weir next to it: the error must say where it looked.
	if want := filepath.Join(filepath.Dir(self), "weir"); code != 1 || !strings.Contains(stderr.String(), want) {
		t.Errorf("exit %d, want 1 with an error naming %s; stderr:\n%s", code, want, &stderr)
	}
}

// syncBuffer lets the test read logs while run is still writing them.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestWatchStopsOnSIGTERMAndUninstalls(t *testing.T) {
	e := newEnv(t)
	path := e.write(t, "10-bridge.conflist", `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"}]}`)
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(e.args("--watch", "--uninstall-on-exit", "--resync", "1h"), &stderr) }()

	deadline := time.Now().Add(5 * time.Second)
	// "watching" is logged after the signal handler is installed, so the
	// SIGTERM below cannot kill the test process.
	for !strings.Contains(stderr.String(), "weir entry installed") || !strings.Contains(stderr.String(), "watching CNI config dir") {
		if time.Now().After(deadline) {
			t.Fatalf("watch did not install the entry within 5s; stderr:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := plugins(t, path); len(got) != 2 {
		t.Fatalf("plugins while watching: %v", got)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after SIGTERM, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not stop within 5s of SIGTERM")
	}
	if got := plugins(t, path); len(got) != 1 || got[0]["type"] != "bridge" {
		t.Errorf("plugins after exit with --uninstall-on-exit: %v", got)
	}
}

// One source for the socket and spool: the entry gets the daemon's values
// from the daemon's own config file.
func TestDaemonConfigSetsTheEntrysSocketAndSpool(t *testing.T) {
	e := newEnv(t)
	conf := e.write(t, "10-bridge.conflist", `{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"}]}`)
	daemonConf := filepath.Join(t.TempDir(), "daemon.yaml")
	if err := os.WriteFile(daemonConf, []byte("socket: /run/w/d.sock\nstateDir: /var/lib/w\nnodeName: n1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if code := run(e.args("--daemon-config", daemonConf), &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, &stderr)
	}
	ps := plugins(t, conf)
	w := ps[len(ps)-1]
	if w["daemonSocket"] != "/run/w/d.sock" || w["spoolDir"] != "/var/lib/w/spool" {
		t.Errorf("weir entry %v, want the daemon's socket /run/w/d.sock and spool /var/lib/w/spool", w)
	}

	// A flag that disagrees with the daemon's file is refused, file untouched.
	before, _ := os.ReadFile(conf)
	stderr.Reset()
	if code := run(e.args("--daemon-config", daemonConf, "--spool-dir", "/elsewhere"), &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "conflicts with the daemon's spoolDir") {
		t.Fatalf("exit %d, stderr %q; want 2 and a conflict message", code, &stderr)
	}
	if after, _ := os.ReadFile(conf); !bytes.Equal(before, after) {
		t.Error("config changed by a refused run")
	}
}
