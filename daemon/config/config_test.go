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
		Repair: true, CNICacheDir: "/var/lib/cni", CNIConfDir: "/etc/cni/net.d",
		Capture:  Capture{Enabled: true, MaxConnections: 65536, MaxBufferedBytes: 64 << 20, IdleTimeout: Duration{5 * time.Minute}},
		BPF:      BPF{RingBufferSize: 8 << 20, ChunkSize: 4096, CaptureLimit: 1 << 20, MaxFrameCopy: 64 << 10, HintMapSize: 65536, PollInterval: Duration{10 * time.Millisecond}, Payload: true, RichTier: true, TLS: false, CaptureTier: "auto"},
		Protocol: Protocol{MaxHeaderBytes: 64 << 10, MaxStreams: 256, MaxPending: 64},
		Requests: Requests{Keep: 10000},
		Metrics:  Metrics{MaxEndpointsPerService: 100, Retention: Duration{30 * time.Minute}},
		OAP:      OAP{FlushPeriod: Duration{time.Second}, BatchSize: 500, QueueSize: 50000},
		Identity: Identity{CRISocket: "/run/containerd/containerd.sock"},

		ExcludeNamespaces:   []string{"kube-system"},
		ServiceNameTemplate: "{{.ServiceName}}.{{.Namespace}}",
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
		{name: "negative max procs", args: []string{"--max-procs", "-1"}, key: "maxProcs"},
		{name: "negative nice (needs privilege, raises priority)", args: []string{"--nice", "-5"}, key: "nice"},
		{name: "nice above Linux's range", file: "nice: 20\n", key: "nice"},
		{name: "gc percent below the floor", args: []string{"--gc-percent", "5"}, key: "gcPercent"},
		{name: "negative gc percent (GOGC=off)", file: "gcPercent: -1\n", key: "gcPercent"},
		{name: "tiny memory limit", args: []string{"--memory-limit", "1048576"}, key: "memoryLimit"},
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
	for key, field := range fieldsByKey(&cfg) {
		v := reflect.ValueOf(field).Elem()
		if v.Kind() == reflect.Struct && v.Type() != reflect.TypeFor[Duration]() {
			// A section: each of its keys has a flag "section.key".
			for i := range v.NumField() {
				sub, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
				if flagName(key+"."+sub) == "" {
					t.Errorf("key %s.%s has no flag", key, sub)
				}
			}
			continue
		}
		if flagName(key) == "" {
			t.Errorf("key %s has no flag", key)
		}
	}
}

func TestPipelineSectionsFromFileAndFlags(t *testing.T) {
	path := writeFile(t, `
capture:
  enabled: false
  maxConnections: 100
  idleTimeout: 30s
  dumpDir: /tmp/dump
bpf:
  ringBufferSize: 65536
  captureLimit: 4096
  maxFrameCopy: 20000
  pollInterval: 50ms
  payload: false
protocol:
  maxStreams: 8
requests:
  keep: 5
`)
	cfg, err := Load([]string{"--config", path, "--bpf.chunk-size=1024", "--requests.keep", "7"})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := Default()
	want.SpoolDir = "/var/lib/weir/spool"
	want.Capture = Capture{Enabled: false, MaxConnections: 100, MaxBufferedBytes: DefaultMaxBufferedBytes,
		IdleTimeout: Duration{30 * time.Second}, DumpDir: "/tmp/dump"}
	want.BPF = BPF{RingBufferSize: 65536, ChunkSize: 1024, CaptureLimit: 4096, MaxFrameCopy: 20000, HintMapSize: DefaultHintMapSize,
		PollInterval: Duration{50 * time.Millisecond}, Payload: false, RichTier: true, TLS: false, CaptureTier: "auto"}
	want.Protocol = Protocol{MaxHeaderBytes: DefaultMaxHeaderBytes, MaxStreams: 8, MaxPending: DefaultMaxPending}
	want.Requests = Requests{Keep: 7}
	if !equal(cfg, want) {
		t.Fatalf("config =\n%+v\nwant\n%+v", cfg, want)
	}
}

func TestPipelineErrorsNameKeyAndFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		yaml string
		want string
	}{
		{args: []string{"--bpf.ring-buffer-size=5000"}, want: "bpf.ringBufferSize (--bpf.ring-buffer-size): must be a power of two"},
		{args: []string{"--bpf.chunk-size=20000"}, want: "bpf.chunkSize (--bpf.chunk-size): must be between 1 and 16384"},
		{args: []string{"--bpf.capture-limit=0"}, want: "bpf.captureLimit (--bpf.capture-limit): must be at least 1 byte"},
		{args: []string{"--bpf.max-frame-copy=1000"}, want: "bpf.maxFrameCopy (--bpf.max-frame-copy): must be between 16384 and 16777215"},
		{args: []string{"--bpf.hint-map-size=0"}, want: "bpf.hintMapSize (--bpf.hint-map-size): must be between 1 and"},
		{args: []string{"--bpf.poll-interval=0s"}, want: "bpf.pollInterval (--bpf.poll-interval): must be positive and at most 1s"},
		{args: []string{"--bpf.poll-interval=2s"}, want: "bpf.pollInterval (--bpf.poll-interval): must be positive and at most 1s"},
		{args: []string{"--bpf.capture-tier=fentry"}, want: `bpf.captureTier (--bpf.capture-tier): must be auto, socket or syscall, got "fentry"`},
		{args: []string{"--capture.max-connections=0"}, want: "capture.maxConnections (--capture.max-connections)"},
		{args: []string{"--capture.idle-timeout=0s"}, want: "capture.idleTimeout (--capture.idle-timeout): must be positive"},
		{args: []string{"--capture.dump-dir=rel"}, want: "capture.dumpDir (--capture.dump-dir): must be an absolute path"},
		{args: []string{"--protocol.max-header-bytes=10"}, want: "protocol.maxHeaderBytes (--protocol.max-header-bytes)"},
		{args: []string{"--protocol.max-streams=0"}, want: "protocol.maxStreams"},
		{args: []string{"--protocol.max-pending=0"}, want: "protocol.maxPending"},
		{args: []string{"--requests.keep=0"}, want: "requests.keep (--requests.keep)"},
		{args: []string{"--capture.enabled=maybe"}, want: "capture.enabled (--capture.enabled)"},
		{yaml: "capture:\n  dumpDirectory: /x\n", want: `config: capture: in `},
		{yaml: "bpf:\n  chunkSize: big\n", want: `config: bpf: in `},
	} {
		args := tc.args
		if tc.yaml != "" {
			args = []string{"--config", writeFile(t, tc.yaml)}
		}
		_, err := Load(args)
		var cerr *Error
		if !errors.As(err, &cerr) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%v %q) = %v, want *Error containing %q", tc.args, tc.yaml, err, tc.want)
		}
	}
}

func TestComponentFlagsAndKeysNameTheSetting(t *testing.T) {
	cfg, err := Load([]string{"--oap", "oap.example:11800", "--oap-insecure", "--metrics.route-patterns", "/a/{id}, /b/{id}",
		"--exclude-namespaces", "", "--cri-socket", ""})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OAP.Address != "oap.example:11800" || !cfg.OAP.Insecure {
		t.Fatalf("oap = %+v", cfg.OAP)
	}
	if !reflect.DeepEqual(cfg.Metrics.RoutePatterns, []string{"/a/{id}", "/b/{id}"}) {
		t.Fatalf("route patterns = %q", cfg.Metrics.RoutePatterns)
	}
	if len(cfg.ExcludeNamespaces) != 0 || cfg.Identity.CRISocket != "" {
		t.Fatalf("empty flags did not clear: %q %q", cfg.ExcludeNamespaces, cfg.Identity.CRISocket)
	}

	for _, tc := range []struct {
		args []string
		key  string
	}{
		{[]string{"--oap", "no-port"}, "oap.address"},
		{[]string{"--oap-batch-size", "0"}, "oap.batchSize"},
		{[]string{"--oap-queue-size", "10"}, "oap.queueSize"},
		{[]string{"--metrics.retention", "10s"}, "metrics.retention"},
		{[]string{"--cri-socket", "relative.sock"}, "identity.criSocket"},
		{[]string{"--oap-batch-size", "x"}, "oap.batchSize"},
	} {
		_, err := Load(tc.args)
		var cerr *Error
		if !errors.As(err, &cerr) || cerr.Key != tc.key {
			t.Errorf("Load(%q) = %v, want an error naming %s", tc.args, err, tc.key)
		}
	}

	p := writeFile(t, "oap:\n  address: oap:11800\n  insecure: true\nmetrics:\n  routePatterns: [\"/p/{id}\"]\n")
	cfg, err = Load([]string{"--config", p})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OAP.Address != "oap:11800" || !cfg.OAP.Insecure || cfg.Metrics.RoutePatterns[0] != "/p/{id}" {
		t.Fatalf("file values not applied: %+v %+v", cfg.OAP, cfg.Metrics)
	}
	p = writeFile(t, "oap:\n  adress: oap:11800\n")
	if _, err := Load([]string{"--config", p}); err == nil || !strings.Contains(err.Error(), "oap") {
		t.Fatalf("misspelt nested key: %v", err)
	}
}

// TestProcsBoundsTheDaemonsParallelism pins the GOMAXPROCS the daemon runs
// with: a quarter of the node's cores (2 to 4), never above the runtime's
// own (cgroup) choice, and an explicit maxProcs or GOMAXPROCS variable wins.
func TestProcsBoundsTheDaemonsParallelism(t *testing.T) {
	for _, tc := range []struct {
		maxProcs, cpus, current int
		env                     bool
		want                    int
	}{
		{0, 2, 2, false, 2},   // a 2-core node: at least 2, so reader, sender and GC need not take turns
		{0, 1, 1, false, 1},   // a 1-core node (or limit): the runtime's choice
		{0, 8, 8, false, 2},   // a quarter
		{0, 16, 16, false, 4}, // a quarter
		{0, 64, 64, false, 4}, // at most 4
		{0, 16, 3, false, 3},  // a CPU limit of 3 cores: the runtime's choice is lower
		{0, 8, 8, true, 8},    // GOMAXPROCS=8 in the environment
		{6, 8, 8, true, 6},    // maxProcs beats all
	} {
		c := Default()
		c.MaxProcs = tc.maxProcs
		if got := c.Procs(tc.cpus, tc.current, tc.env); got != tc.want {
			t.Errorf("maxProcs=%d on %d cpus (runtime %d, env %v): %d, want %d",
				tc.maxProcs, tc.cpus, tc.current, tc.env, got, tc.want)
		}
	}
}

// TestGCSettingsDefaultsAndPrecedence pins the garbage collector's
// settings: GOGC 300 and a 90 MiB soft limit by default, the GOGC and
// GOMEMLIMIT variables (already applied by the runtime, so 0 leaves them)
// beat the defaults, and explicit config beats both.
func TestGCSettingsDefaultsAndPrecedence(t *testing.T) {
	for _, tc := range []struct {
		percent         int
		limit           int64
		envGC, envLimit bool
		wantPct         int
		wantLimit       int64
	}{
		{0, 0, false, false, DefaultGCPercent, DefaultMemoryLimit},
		{0, 0, true, false, 0, DefaultMemoryLimit},
		{0, 0, false, true, DefaultGCPercent, 0},
		{150, 64 << 20, true, true, 150, 64 << 20},
	} {
		c := Default()
		c.GCPercent, c.MemoryLimit = tc.percent, tc.limit
		if p, l := c.GC(tc.envGC, tc.envLimit); p != tc.wantPct || l != tc.wantLimit {
			t.Errorf("gcPercent=%d memoryLimit=%d env GOGC %v GOMEMLIMIT %v: got %d, %d; want %d, %d",
				tc.percent, tc.limit, tc.envGC, tc.envLimit, p, l, tc.wantPct, tc.wantLimit)
		}
	}
	c, err := Load([]string{"--gc-percent", "200", "--memory-limit", "134217728"})
	if err != nil {
		t.Fatal(err)
	}
	if c.GCPercent != 200 || c.MemoryLimit != 128<<20 {
		t.Fatalf("flags gave gcPercent %d, memoryLimit %d", c.GCPercent, c.MemoryLimit)
	}
}
