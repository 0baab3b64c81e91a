package config

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsMatchThePluginSpool(t *testing.T) {
	cfg, err := Load(nil)
	if err != nil {
		t.Fatalf("Load(no args): %v", err)
	}
	host, _ := os.Hostname()
	want := Config{
		Socket: "/run/weir/weir.sock", StateDir: "/var/lib/weir", SpoolDir: "/var/lib/weir/spool",
		HTTP: "127.0.0.1:9847", NodeName: host, LogLevel: slog.LevelInfo,
		ReconcileInterval: Duration{30 * time.Second}, MaxPods: 4096, AllowedUIDs: []uint32{0},
	}
	if !equal(cfg, want) {
		t.Fatalf("defaults =\n%+v\nwant\n%+v", cfg, want)
	}
}

func equal(a, b Config) bool {
	return reflect.DeepEqual(a, b)
}

func TestFlagsOverrideFileOverridesDefaults(t *testing.T) {
	path := writeFile(t, `
stateDir: /srv/weir
http: 127.0.0.1:1234
logLevel: debug
reconcileInterval: 5s
maxPods: 100
allowedUIDs: [0, 1000]
`)
	cfg, err := Load([]string{"--config", path, "--http", "127.0.0.1:9999", "--max-pods=7"})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.HTTP != "127.0.0.1:9999" || cfg.MaxPods != 7 {
		t.Errorf("flags did not win: http=%s maxPods=%d", cfg.HTTP, cfg.MaxPods)
	}
	if cfg.StateDir != "/srv/weir" || cfg.LogLevel != slog.LevelDebug || cfg.ReconcileInterval.Duration != 5*time.Second ||
		!slices.Equal(cfg.AllowedUIDs, []uint32{0, 1000}) {
		t.Errorf("file values lost: %+v", cfg)
	}
	if cfg.SpoolDir != "/srv/weir/spool" {
		t.Errorf("spoolDir = %s, want it derived from the file's stateDir", cfg.SpoolDir)
	}
	if cfg.Socket != DefaultSocket {
		t.Errorf("socket = %s, want the default", cfg.Socket)
	}

	// A flag given before --config still wins over the file.
	cfg, err = Load([]string{"--max-pods", "9", "--config", path, "--allowed-uids", "0,42", "--state-dir", "/x"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxPods != 9 || !slices.Equal(cfg.AllowedUIDs, []uint32{0, 42}) || cfg.SpoolDir != "/x/spool" {
		t.Errorf("flag precedence: %+v", cfg)
	}
}

func TestExplicitSpoolDirIsKept(t *testing.T) {
	cfg, err := Load([]string{"--state-dir", "/a", "--spool-dir", "/b/spool"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SpoolDir != "/b/spool" {
		t.Fatalf("spoolDir = %s", cfg.SpoolDir)
	}
}

func TestUnknownFileKeyIsAnErrorNamingIt(t *testing.T) {
	path := writeFile(t, "socket: /run/weir/weir.sock\nreconcileIntervall: 10s\n")
	_, err := Load([]string{"--config", path})
	var cerr *Error
	if !errors.As(err, &cerr) || cerr.Key != "reconcileIntervall" {
		t.Fatalf("error = %v, want a config error for key reconcileIntervall", err)
	}
	if !strings.Contains(err.Error(), "reconcileIntervall") || !strings.Contains(err.Error(), "unknown key") {
		t.Fatalf("message %q does not name the unknown key", err)
	}
}

func TestInvalidValuesNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		args       []string
		key        string
	}{
		{name: "bad duration in file", file: "reconcileInterval: soon\n", key: "reconcileInterval"},
		{name: "number as duration", file: "reconcileInterval: 30\n", key: "reconcileInterval"},
		{name: "negative interval flag", args: []string{"--reconcile-interval", "-1s"}, key: "reconcileInterval"},
		{name: "string as int", file: "maxPods: many\n", key: "maxPods"},
		{name: "zero max pods", args: []string{"--max-pods", "0"}, key: "maxPods"},
		{name: "non-number max pods flag", args: []string{"--max-pods", "lots"}, key: "maxPods"},
		{name: "relative state dir", args: []string{"--state-dir", "var/lib/weir"}, key: "stateDir"},
		{name: "relative socket", file: "socket: weir.sock\n", key: "socket"},
		{name: "long socket", args: []string{"--socket", "/" + strings.Repeat("s", 120)}, key: "socket"},
		{name: "bad log level", file: "logLevel: chatty\n", key: "logLevel"},
		{name: "odd log level", args: []string{"--log-level", "info+1"}, key: "logLevel"},
		{name: "http without port", args: []string{"--http", "localhost"}, key: "http"},
		{name: "http bad port", file: "http: 127.0.0.1:http\n", key: "http"},
		{name: "bad uid", args: []string{"--allowed-uids", "0,root"}, key: "allowedUIDs"},
		{name: "empty uid list", file: "allowedUIDs: []\n", key: "allowedUIDs"},
		{name: "empty node name", args: []string{"--node-name", ""}, key: "nodeName"},
		{name: "missing file", args: []string{"--config", "/nonexistent/weir.yaml"}, key: "config"},
		{name: "file not a mapping", file: "- a\n- b\n", key: "config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				args = append([]string{"--config", writeFile(t, tc.file)}, args...)
			}
			_, err := Load(args)
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("Load(%q) error = %v, want *Error", args, err)
			}
			if cerr.Key != tc.key || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("error %q names key %q, want %q", err, cerr.Key, tc.key)
			}
		})
	}
}

func TestErrorNamesBothKeyAndFlag(t *testing.T) {
	_, err := Load([]string{"--max-pods", "0"})
	if err == nil || !strings.Contains(err.Error(), "maxPods (--max-pods)") {
		t.Fatalf("error = %v, want it to name maxPods (--max-pods)", err)
	}
}

func TestUnknownFlagAndStrayArgument(t *testing.T) {
	if _, err := Load([]string{"--no-such-flag"}); err == nil || !strings.Contains(err.Error(), "no-such-flag") {
		t.Fatalf("unknown flag: %v", err)
	}
	if _, err := Load([]string{"extra"}); err == nil || !strings.Contains(err.Error(), `"extra"`) {
		t.Fatalf("stray argument: %v", err)
	}
}

func TestHelpIsErrHelp(t *testing.T) {
	if _, err := Load([]string{"-h"}); !errors.Is(err, ErrHelp) {
		t.Fatalf("Load(-h) = %v, want ErrHelp", err)
	}
	var b strings.Builder
	Usage(&b)
	for _, f := range []string{"-config", "-socket", "-state-dir", "-spool-dir", "-http", "-max-pods", "-allowed-uids"} {
		if !strings.Contains(b.String(), f) {
			t.Errorf("usage does not document %s", f)
		}
	}
}

func TestEveryKeyHasAFlag(t *testing.T) {
	cfg := Default()
	for key := range fieldsByKey(&cfg) {
		if flagName(key) == "" {
			t.Errorf("key %s has no flag", key)
		}
	}
}
