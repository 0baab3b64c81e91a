// Package config is weir-daemon's configuration: defaults, a YAML file and
// command-line flags, merged in that order (flags win), then validated.
//
// Every setting has one YAML key and one flag; errors name both, so an
// operator finds the offending line whichever way it was set. The file is
// decoded strictly: an unknown key is an error naming it, because a misspelt
// key silently falling back to its default is the worst kind of
// misconfiguration for a monitor.
//
// Adding settings for a component (bpf, capture, export): add a section
// struct with its own json tags as a field of Config (YAML key = the
// section's name; unknown keys inside it are errors too), its defaults in
// Default, its flags in newFlagSet (prefixed with the section, e.g.
// --export.skywalking-addr), the key-to-flag mapping in flags (as
// "export.skywalkingAddr"), and its checks in Validate, returning *Error
// with the dotted key.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"math/bits"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/weirnet/weir/enrollapi"
)

// Defaults. The socket is the enrollment contract's (enrollapi.DefaultSocket),
// shared with the weir CNI plugin. The spool directory defaults to
// <stateDir>/spool, which for DefaultStateDir must be enrollapi.DefaultSpoolDir,
// the plugin's default, or spooled calls are never replayed (a test pins it).
const (
	DefaultSocket            = enrollapi.DefaultSocket
	DefaultStateDir          = "/var/lib/weir"
	DefaultHTTP              = "127.0.0.1:9847"
	DefaultReconcileInterval = 30 * time.Second
	DefaultMaxPods           = 4096
	DefaultCNICacheDir       = "/var/lib/cni"
	DefaultCNIConfDir        = "/etc/cni/net.d"

	DefaultMaxConnections   = 65536
	DefaultMaxBufferedBytes = 64 << 20
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultRingBufferSize   = 8 << 20
	DefaultChunkSize        = 4096
	DefaultCaptureLimit     = 1 << 20
	DefaultMaxFrameCopy     = 64 << 10
	DefaultHintMapSize      = 65536
	DefaultMaxHeaderBytes   = 64 << 10
	DefaultMaxStreams       = 256
	DefaultMaxPending       = 64
	DefaultRequestsKeep     = 10000
	DefaultPollInterval     = 10 * time.Millisecond

	// Bounds of the pipeline settings. MaxChunkSize is the eBPF side's
	// compile-time ceiling (bpf.MaxChunkSize).
	MaxChunkSize        = 16384
	MinMaxFrameCopy     = 16 << 10 // bpf.MinMaxFrameCopy: HTTP/2's default max frame size
	MaxMaxFrameCopy     = 1<<24 - 1
	MaxHintMapSize      = 1 << 20
	MinRingBufferSize   = 4096
	MaxRingBufferSize   = 1 << 30
	MaxPollInterval     = time.Second
	MaxRequestsKeep     = 1 << 20
	MinMaxHeaderBytes   = 256
	MaxMaxHeaderBytes   = 16 << 20
	MaxMaxConnections   = 1 << 22
	MaxMaxStreamsOrPend = 1 << 16
	// MaxMaxPods caps maxPods: the eBPF netns map is sized from it.
	MaxMaxPods = 1 << 20
	// MaxMaxProcs caps maxProcs.
	MaxMaxProcs = 1024
	// MaxNice caps nice: Linux's largest nice value.
	MaxNice = 19
	// DefaultGCPercent and DefaultMemoryLimit are the garbage collector's
	// settings when neither the config nor the GOGC/GOMEMLIMIT variables
	// set them (see GC).
	DefaultGCPercent   = 300
	DefaultMemoryLimit = 90 << 20
	// MinGCPercent, MaxGCPercent and MinMemoryLimit bound the settings.
	MinGCPercent   = 25
	MaxGCPercent   = 10000
	MinMemoryLimit = 16 << 20
)

// Config is weir-daemon's configuration. The json tags are the YAML keys.
type Config struct {
	// Socket is the enrollment gRPC unix socket the CNI plugin dials.
	Socket string `json:"socket"`
	// StateDir holds the pod registry.
	StateDir string `json:"stateDir"`
	// SpoolDir is where the plugin spools calls made while the daemon was
	// down; default <stateDir>/spool.
	SpoolDir string `json:"spoolDir"`
	// HTTP is the address of the HTTP API (health, pods, metrics).
	HTTP string `json:"http"`
	// Pprof serves the Go runtime's profiles under /debug/pprof/ on the
	// HTTP API address. Off by default: a profile exposes the daemon's
	// internals to whoever reaches the API, and taking one costs CPU.
	Pprof bool `json:"pprof"`
	// NodeName names this node in exported data; default the hostname.
	NodeName string `json:"nodeName"`
	// LogLevel is debug, info, warn or error.
	LogLevel slog.Level `json:"logLevel"`
	// ReconcileInterval is how often pods whose netns is gone are dropped
	// (and the spool re-drained).
	ReconcileInterval Duration `json:"reconcileInterval"`
	// MaxPods bounds the pod registry.
	MaxPods int `json:"maxPods"`
	// MaxProcs bounds how many cores the daemon's Go code runs on at once
	// (GOMAXPROCS). 0 is automatic: see Procs. The eBPF ring is drained by
	// one goroutine whatever this is; what it bounds is that goroutine, the
	// exporter, gRPC and the garbage collector running together in a burst
	// and taking every core from the pods. Too low for the traffic and the
	// ring fills: the kernel's drops are counted
	// (weir_bpf_events_lost_total{reason="ringbuf_full"}), never silent.
	MaxProcs int `json:"maxProcs"`
	// Nice is the nice value every thread of the daemon runs at (0 to
	// 19; 0 leaves it as started). The daemon drains the ring in bursts,
	// a poll interval's records at once; at a higher nice value an
	// application thread that wakes during a burst preempts the daemon
	// sooner instead of waiting for a core. In BenchmarkPacedDrain
	// (daemon/monitor) nice 10 lowered a paced application's p99 wakeup
	// delay during the daemon's drains in eight runs of nine (median 0.81
	// of nice 0's) on a noisy 2-core VM, for 2-11% more CPU: not enough
	// to make it the default before make bench measures it. The price is the daemon's share of a saturated node: it
	// falls behind sooner, and the ring's overflow is counted
	// (weir_bpf_events_lost_total{reason="ringbuf_full"}).
	Nice int `json:"nice"`
	// GCPercent is the garbage collector's GOGC: the heap grows by this
	// percentage of the live heap between collections. 0 is automatic:
	// see GC. The daemon allocates per captured request, and at Go's
	// default of 100 collection took about a tenth of its CPU; a larger
	// value trades memory for CPU, within MemoryLimit.
	GCPercent int `json:"gcPercent"`
	// MemoryLimit is the Go runtime's soft memory limit (GOMEMLIMIT) in
	// bytes: near it the collector runs more often whatever GCPercent
	// says, so the daemon's RSS stays under its budget (150 MB under load,
	// of which the binary's pages and the mapped ring buffer are not Go's
	// memory). 0 is automatic: see GC. It is soft: a live heap above it
	// is not freed, only collected harder (the runtime caps that at about
	// half the daemon's CPU).
	MemoryLimit int64 `json:"memoryLimit"`
	// AllowedUIDs are the uids admitted on the enrollment socket.
	AllowedUIDs []uint32 `json:"allowedUIDs"`
	// Repair enrolls, every ReconcileInterval, pods that live on the node
	// but never reached the registry (registry was full, spool overflowed
	// or stranded). Its sources are the CRI sandbox list (identity.criSocket)
	// and libcni's cache in CNICacheDir.
	Repair bool `json:"repair"`
	// CNICacheDir is libcni's cache directory (results/ per attachment),
	// the runtime's record of every attachment it added.
	CNICacheDir string `json:"cniCacheDir"`
	// CNIConfDir is the node's CNI config directory. The daemon checks that
	// the weir entries installed there name its socket and spool directory
	// (a warning at start and in /readyz otherwise). Empty: no check.
	CNIConfDir string `json:"cniConfDir"`

	// Capture, BPF, Protocol and Requests configure the capture pipeline
	// (package daemon/monitor).
	Capture  Capture  `json:"capture"`
	BPF      BPF      `json:"bpf"`
	Protocol Protocol `json:"protocol"`
	Requests Requests `json:"requests"`

	// Metrics, OAP and Identity configure aggregation, the SkyWalking
	// exporter and pod naming (see components.go).
	Metrics  Metrics  `json:"metrics"`
	OAP      OAP      `json:"oap"`
	Identity Identity `json:"identity"`
	// Cluster names the cluster in exported data.
	Cluster string `json:"cluster"`
	// ExcludeNamespaces are not exported to the OAP.
	ExcludeNamespaces []string `json:"excludeNamespaces"`
	// ServiceNameTemplate names a pod's service in exported data.
	ServiceNameTemplate string `json:"serviceNameTemplate"`
}

// Capture configures the connection table and whether eBPF capture runs.
type Capture struct {
	// Enabled turns eBPF capture on. Off, the daemon only enrolls pods:
	// useful on nodes that cannot load eBPF; /api/v1/features says so.
	Enabled bool `json:"enabled"`
	// MaxConnections bounds the connections tracked at once.
	MaxConnections int `json:"maxConnections"`
	// MaxBufferedBytes bounds the payload held in reorder buffers.
	MaxBufferedBytes int `json:"maxBufferedBytes"`
	// IdleTimeout expires connections without events for that long.
	IdleTimeout Duration `json:"idleTimeout"`
	// DumpDir, when set, receives every connection's reassembled bytes:
	// a debugging aid, not for production (it writes up to the capture
	// limit per connection and direction).
	DumpDir string `json:"dumpDir"`
}

// BPF sizes the kernel side.
type BPF struct {
	// RingBufferSize is the ring buffer's size in bytes (power of two).
	RingBufferSize int `json:"ringBufferSize"`
	// ChunkSize is the most payload one data event carries.
	ChunkSize int `json:"chunkSize"`
	// CaptureLimit is the capture budget per connection and direction
	// (see bpf.Config.CaptureLimit): past it, a connection of unknown
	// protocol keeps only each syscall's first chunk, an HTTP/2 connection
	// keeps every frame header and non-DATA payload but not DATA payloads;
	// a connection the HTTP/1 parser hinted is not budgeted.
	CaptureLimit uint64 `json:"captureLimit"`
	// MaxFrameCopy bounds the payload of an HTTP/2 non-DATA frame the
	// kernel copies; a larger one is a counted, typed gap.
	MaxFrameCopy int `json:"maxFrameCopy"`
	// HintMapSize bounds the connections hinted as HTTP/1 at once.
	HintMapSize int `json:"hintMapSize"`
	// PollInterval is how long the ring buffer reader sleeps when it
	// finds the ring empty (see bpf.Config.PollInterval).
	PollInterval Duration `json:"pollInterval"`
	// Payload copies payload bytes to user space for protocol parsing;
	// false keeps connections and kernel metrics only (see
	// bpf.Config.NoPayload).
	Payload bool `json:"payload"`
	// RichTier loads the fentry/kprobe programs where the runtime probe
	// says they attach (on by default); false keeps the base tier.
	RichTier bool `json:"richTier"`
	// TLS loads the TLS program set (under either capture tier) and
	// probes enrolled pods' OpenSSL and BoringSSL libraries and Go
	// binaries (crypto/tls) for plaintext. Off by
	// default: a uprobe is per file, so every process mapping a probed
	// libssl pays its trap, enrolled or not (12-18 µs per SSL call on a
	// node whose libssl entry must be single-stepped; bpf/OVERHEAD.md), and
	// the node's own libssl is among the files probed. Off reports TLS
	// connections without their content.
	TLS bool `json:"tls"`
	// CaptureTier is where payload and connections are captured: "auto"
	// (default) takes the socket tier where the kernel has the socket
	// tracepoints, else the syscall tier; "socket" or "syscall" force one
	// (see bpf.CaptureTier).
	CaptureTier string `json:"captureTier"`
}

// Protocol bounds the HTTP parsers per connection.
type Protocol struct {
	MaxHeaderBytes int `json:"maxHeaderBytes"`
	MaxStreams     int `json:"maxStreams"`
	MaxPending     int `json:"maxPending"`
}

// Requests configures the ring of recent HTTP exchanges served by
// /api/v1/requests.
type Requests struct {
	// Keep is how many of the latest exchanges are kept.
	Keep int `json:"keep"`
}

// Procs is the GOMAXPROCS the daemon runs with on a node of cpus cores,
// where current is the Go runtime's own choice (the cgroup's CPU limit, or
// the GOMAXPROCS variable, already applied) and fromEnv says the variable
// was set. An explicit MaxProcs wins; then the variable, an operator's
// explicit choice too. Otherwise it is a quarter of the node's cores, at
// least 2 and at most 4, and never more than current: the daemon's work
// per request is a single pipeline goroutine plus export and GC, which a
// quarter of the cores carries at the rates Weir targets, while letting it
// spread over every core of a large node makes its bursts take the cores
// the pods need. At least 2, because with one the ring reader, the sender
// and the garbage collector take turns on a single P: in make bench on the
// 2-core VM (2026-12-07, a noisy run) a daemon held to 1 overflowed the
// ring at a paced 20k req/s and dropped export entries at saturation,
// where the same code on 2 lost nothing, and the latency gain of 1 was
// within noise.
func (c Config) Procs(cpus, current int, fromEnv bool) int {
	switch {
	case c.MaxProcs > 0:
		return c.MaxProcs
	case fromEnv:
		return current
	}
	auto := min(max(cpus/4, 2), 4)
	if current > 0 {
		auto = min(auto, current)
	}
	return auto
}

// GC returns the garbage collector's GOGC percentage and soft memory limit
// in bytes. An explicit GCPercent or MemoryLimit wins; then the GOGC or
// GOMEMLIMIT variable (envGC, envLimit say it is set: the runtime already
// applied it, and 0 is returned to leave it); otherwise DefaultGCPercent
// and DefaultMemoryLimit. Together the defaults collect a third as often
// as Go's own under load and never let the heap's growth alone take the
// daemon past its memory budget (a node with many idle connections has a
// large live heap, which GOGC alone would multiply).
func (c Config) GC(envGC, envLimit bool) (percent int, limit int64) {
	switch {
	case c.GCPercent > 0:
		percent = c.GCPercent
	case !envGC:
		percent = DefaultGCPercent
	}
	switch {
	case c.MemoryLimit > 0:
		limit = c.MemoryLimit
	case !envLimit:
		limit = DefaultMemoryLimit
	}
	return percent, limit
}

// Duration is a time.Duration written as a Go duration string ("30s") in
// YAML.
type Duration struct{ time.Duration }

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"30s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	host, _ := os.Hostname()
	c := Config{
		Socket:            DefaultSocket,
		StateDir:          DefaultStateDir,
		HTTP:              DefaultHTTP,
		NodeName:          host,
		LogLevel:          slog.LevelInfo,
		ReconcileInterval: Duration{DefaultReconcileInterval},
		MaxPods:           DefaultMaxPods,
		AllowedUIDs:       []uint32{0},
		Repair:            true,
		CNICacheDir:       DefaultCNICacheDir,
		CNIConfDir:        DefaultCNIConfDir,
		Capture: Capture{
			Enabled:          true,
			MaxConnections:   DefaultMaxConnections,
			MaxBufferedBytes: DefaultMaxBufferedBytes,
			IdleTimeout:      Duration{DefaultIdleTimeout},
		},
		BPF: BPF{
			RingBufferSize: DefaultRingBufferSize,
			ChunkSize:      DefaultChunkSize,
			CaptureLimit:   DefaultCaptureLimit,
			MaxFrameCopy:   DefaultMaxFrameCopy,
			HintMapSize:    DefaultHintMapSize,
			PollInterval:   Duration{DefaultPollInterval},
			Payload:        true,
			RichTier:       true,
			TLS:            false,
			CaptureTier:    "auto",
		},
		Protocol: Protocol{
			MaxHeaderBytes: DefaultMaxHeaderBytes,
			MaxStreams:     DefaultMaxStreams,
			MaxPending:     DefaultMaxPending,
		},
		Requests: Requests{Keep: DefaultRequestsKeep},
	}
	defaultComponents(&c)
	return c
}

// Error is a configuration error; Key names the offending setting.
type Error struct {
	Key string // YAML key, e.g. "maxPods"; "" when not about one key
	Err error
}

func (e *Error) Error() string {
	if e.Key == "" {
		return "config: " + e.Err.Error()
	}
	if f := flagName(e.Key); f != "" {
		return fmt.Sprintf("config: %s (--%s): %v", e.Key, f, e.Err)
	}
	return fmt.Sprintf("config: %s: %v", e.Key, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrHelp is returned by Load when -h or --help was given.
var ErrHelp = flag.ErrHelp

// Load builds the configuration from args (without the program name):
// defaults, then the YAML file named by --config, then the other flags. Every
// error is an *Error, or ErrHelp.
func Load(args []string) (Config, error) {
	// Pass 1 finds --config; the other flags are parsed into a scratch
	// value and parsed again below, over the file's values.
	var path string
	scratch := Default()
	fs := newFlagSet(&scratch, &path)
	if err := fs.Parse(args); err != nil {
		return Config{}, flagError(err)
	}
	if fs.NArg() > 0 {
		return Config{}, &Error{Err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}

	cfg := Default()
	if path != "" {
		if err := loadFile(path, &cfg); err != nil {
			return Config{}, err
		}
	}
	fs = newFlagSet(&cfg, &path)
	if err := fs.Parse(args); err != nil {
		return Config{}, flagError(err)
	}
	cfg.complete()
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Usage writes the flag documentation to w.
func Usage(w io.Writer) {
	var path string
	cfg := Default()
	fs := newFlagSet(&cfg, &path)
	fs.SetOutput(w)
	fmt.Fprintln(w, "Usage: weir-daemon [flags]")
	fmt.Fprintln(w, "Every flag but --config has a YAML key of the same meaning (camelCase) in the --config file; flags win.")
	fs.PrintDefaults()
}

func loadFile(path string, cfg *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return &Error{Key: "config", Err: fmt.Errorf("read file: %w", err)}
	}
	doc, err := yaml.YAMLToJSON(data)
	if err != nil {
		return &Error{Key: "config", Err: fmt.Errorf("parse %s: %w", path, err)}
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(doc, &keys); err != nil {
		return &Error{Key: "config", Err: fmt.Errorf("%s must be a YAML mapping of settings: %w", path, err)}
	}
	// Decode key by key, so that every error, unknown keys and bad values
	// alike, names the key.
	fields := fieldsByKey(cfg)
	for _, key := range slices.Sorted(maps.Keys(keys)) {
		field, ok := fields[key]
		if !ok {
			return &Error{Key: key, Err: fmt.Errorf("unknown key in %s", path)}
		}
		dec := json.NewDecoder(bytes.NewReader(keys[key]))
		dec.DisallowUnknownFields() // also inside nested sections
		if err := dec.Decode(field); err != nil {
			return &Error{Key: key, Err: fmt.Errorf("in %s: %w", path, err)}
		}
	}
	return nil
}

// fieldsByKey returns pointers to cfg's fields keyed by their json tag.
func fieldsByKey(cfg *Config) map[string]any {
	v := reflect.ValueOf(cfg).Elem()
	out := make(map[string]any, v.NumField())
	for i := range v.NumField() {
		tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		if tag != "" && tag != "-" {
			out[tag] = v.Field(i).Addr().Interface()
		}
	}
	return out
}

// flags maps YAML keys to flag names.
var flags = map[string]string{
	"socket":            "socket",
	"stateDir":          "state-dir",
	"spoolDir":          "spool-dir",
	"http":              "http",
	"pprof":             "pprof",
	"nodeName":          "node-name",
	"logLevel":          "log-level",
	"reconcileInterval": "reconcile-interval",
	"maxPods":           "max-pods",
	"maxProcs":          "max-procs",
	"nice":              "nice",
	"gcPercent":         "gc-percent",
	"memoryLimit":       "memory-limit",
	"allowedUIDs":       "allowed-uids",
	"repair":            "repair",
	"cniCacheDir":       "cni-cache-dir",
	"cniConfDir":        "cni-conf-dir",
	"config":            "config",

	"capture.enabled":          "capture.enabled",
	"capture.maxConnections":   "capture.max-connections",
	"capture.maxBufferedBytes": "capture.max-buffered-bytes",
	"capture.idleTimeout":      "capture.idle-timeout",
	"capture.dumpDir":          "capture.dump-dir",
	"bpf.ringBufferSize":       "bpf.ring-buffer-size",
	"bpf.chunkSize":            "bpf.chunk-size",
	"bpf.captureLimit":         "bpf.capture-limit",
	"bpf.maxFrameCopy":         "bpf.max-frame-copy",
	"bpf.hintMapSize":          "bpf.hint-map-size",
	"bpf.richTier":             "bpf.rich-tier",
	"bpf.tls":                  "bpf.tls",
	"bpf.captureTier":          "bpf.capture-tier",
	"bpf.pollInterval":         "bpf.poll-interval",
	"bpf.payload":              "bpf.payload",
	"protocol.maxHeaderBytes":  "protocol.max-header-bytes",
	"protocol.maxStreams":      "protocol.max-streams",
	"protocol.maxPending":      "protocol.max-pending",
	"requests.keep":            "requests.keep",
}

func flagName(key string) string {
	if f, ok := flags[key]; ok {
		return f
	}
	return componentFlags[key]
}

func keyOfFlag(name string) string {
	for _, m := range []map[string]string{flags, componentFlags} {
		for k, f := range m {
			if f == name {
				return k
			}
		}
	}
	return ""
}

// newFlagSet binds the flags to cfg's fields, each defaulting to the field's
// current value, so parsing changes only the fields whose flags are given.
func newFlagSet(cfg *Config, configPath *string) *flag.FlagSet {
	fs := flag.NewFlagSet("weir-daemon", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(configPath, "config", *configPath, "YAML configuration `file` (flags override its keys)")
	fs.StringVar(&cfg.Socket, "socket", cfg.Socket, "enrollment gRPC unix socket `path`")
	fs.StringVar(&cfg.StateDir, "state-dir", cfg.StateDir, "state `dir`ectory (pod registry)")
	fs.StringVar(&cfg.SpoolDir, "spool-dir", cfg.SpoolDir, "plugin spool `dir`ectory (default <state-dir>/spool)")
	fs.StringVar(&cfg.HTTP, "http", cfg.HTTP, "HTTP API listen `address`")
	fs.BoolVar(&cfg.Pprof, "pprof", cfg.Pprof,
		"serve Go runtime profiles at /debug/pprof/ on the HTTP API address (a CPU profile must be shorter than the API's 30 s write timeout: ?seconds=N)")
	fs.StringVar(&cfg.NodeName, "node-name", cfg.NodeName, "node `name` (default the hostname)")
	fs.TextVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "log `level`: debug, info, warn, error")
	fs.DurationVar(&cfg.ReconcileInterval.Duration, "reconcile-interval", cfg.ReconcileInterval.Duration,
		"how often pods whose netns is gone are dropped")
	fs.IntVar(&cfg.MaxPods, "max-pods", cfg.MaxPods, "maximum enrolled pod attachments")
	fs.IntVar(&cfg.MaxProcs, "max-procs", cfg.MaxProcs,
		"cores the daemon runs on at once (GOMAXPROCS); 0: a quarter of the node's, at least 2 and at most 4")
	fs.IntVar(&cfg.Nice, "nice", cfg.Nice,
		fmt.Sprintf("nice value of the daemon's threads, 0 to %d: higher lets the pods' threads preempt its bursts; 0 leaves it as started", MaxNice))
	fs.IntVar(&cfg.GCPercent, "gc-percent", cfg.GCPercent,
		fmt.Sprintf("garbage collector's GOGC; 0: %d unless the GOGC variable is set", DefaultGCPercent))
	fs.Int64Var(&cfg.MemoryLimit, "memory-limit", cfg.MemoryLimit,
		fmt.Sprintf("Go runtime's soft memory limit in `bytes` (GOMEMLIMIT); 0: %d MiB unless the GOMEMLIMIT variable is set", DefaultMemoryLimit>>20))
	fs.Var((*uidList)(&cfg.AllowedUIDs), "allowed-uids", "comma-separated `uids` allowed on the enrollment socket")
	fs.BoolVar(&cfg.Repair, "repair", cfg.Repair,
		"enroll pods found on the node (CRI sandboxes, CNI cache) that never reached the registry")
	fs.StringVar(&cfg.CNICacheDir, "cni-cache-dir", cfg.CNICacheDir, "libcni's cache `dir`ectory, read by repair")
	fs.StringVar(&cfg.CNIConfDir, "cni-conf-dir", cfg.CNIConfDir,
		"CNI config `dir`ectory whose weir entries must name this daemon's socket and spool (empty: no check)")

	fs.BoolVar(&cfg.Capture.Enabled, "capture.enabled", cfg.Capture.Enabled,
		"capture traffic with eBPF (false: enrollment only, for nodes that cannot load eBPF)")
	fs.IntVar(&cfg.Capture.MaxConnections, "capture.max-connections", cfg.Capture.MaxConnections,
		"maximum connections tracked at once (least recently active evicted)")
	fs.IntVar(&cfg.Capture.MaxBufferedBytes, "capture.max-buffered-bytes", cfg.Capture.MaxBufferedBytes,
		"maximum payload `bytes` held in reorder buffers")
	fs.DurationVar(&cfg.Capture.IdleTimeout.Duration, "capture.idle-timeout", cfg.Capture.IdleTimeout.Duration,
		"expire connections without events for this long")
	fs.StringVar(&cfg.Capture.DumpDir, "capture.dump-dir", cfg.Capture.DumpDir,
		"debugging aid: write every connection's reassembled bytes under this `dir`ectory (empty: off)")
	fs.IntVar(&cfg.BPF.RingBufferSize, "bpf.ring-buffer-size", cfg.BPF.RingBufferSize,
		"eBPF ring buffer size in `bytes` (a power of two)")
	fs.IntVar(&cfg.BPF.ChunkSize, "bpf.chunk-size", cfg.BPF.ChunkSize, "most payload `bytes` per data event")
	fs.Uint64Var(&cfg.BPF.CaptureLimit, "bpf.capture-limit", cfg.BPF.CaptureLimit,
		"capture budget in `bytes` per connection and direction: past it unknown protocols keep each syscall's first chunk, HTTP/2 skips DATA payloads only, hinted HTTP/1 is not budgeted")
	fs.IntVar(&cfg.BPF.MaxFrameCopy, "bpf.max-frame-copy", cfg.BPF.MaxFrameCopy,
		"largest HTTP/2 non-DATA frame payload in `bytes` the kernel copies (larger: a counted gap)")
	fs.IntVar(&cfg.BPF.HintMapSize, "bpf.hint-map-size", cfg.BPF.HintMapSize,
		"most connections hinted as HTTP/1 to the kernel at once (LRU)")
	fs.DurationVar(&cfg.BPF.PollInterval.Duration, "bpf.poll-interval", cfg.BPF.PollInterval.Duration,
		"how long the ring buffer reader sleeps after a drain before it reads again (a busy ring's records are batched over it; a ring empty for a whole interval is waited on until the kernel's wakeup)")
	fs.BoolVar(&cfg.BPF.Payload, "bpf.payload", cfg.BPF.Payload,
		"copy payload to user space for HTTP parsing (false: connections and kernel metrics only, no payload leaves the kernel)")
	fs.StringVar(&cfg.BPF.CaptureTier, "bpf.capture-tier", cfg.BPF.CaptureTier,
		"where payload and connections are captured: auto (the socket tier where the kernel has sock_send_length/sock_recv_length, else syscall), socket or syscall")
	fs.BoolVar(&cfg.BPF.RichTier, "bpf.rich-tier", cfg.BPF.RichTier,
		"load the fentry (else kprobe) programs where the runtime probe says they attach, for finer L4/L3, netfilter and ARP metrics (false: base tier only)")
	fs.BoolVar(&cfg.BPF.TLS, "bpf.tls", cfg.BPF.TLS,
		"read TLS plaintext through uprobes on the OpenSSL and BoringSSL libraries and Go binaries (crypto/tls) of enrolled pods (either capture tier; off by default: processes outside enrolled pods that map a probed libssl or run a probed Go binary pay the uprobe trap)")
	fs.IntVar(&cfg.Protocol.MaxHeaderBytes, "protocol.max-header-bytes", cfg.Protocol.MaxHeaderBytes,
		"largest HTTP header section or HTTP/2 header block parsed")
	fs.IntVar(&cfg.Protocol.MaxStreams, "protocol.max-streams", cfg.Protocol.MaxStreams,
		"most concurrent HTTP/2 streams tracked per connection")
	fs.IntVar(&cfg.Protocol.MaxPending, "protocol.max-pending", cfg.Protocol.MaxPending,
		"most pipelined HTTP/1 requests awaiting a response per connection")
	fs.IntVar(&cfg.Requests.Keep, "requests.keep", cfg.Requests.Keep,
		"how many recent HTTP exchanges /api/v1/requests keeps")
	componentFlagSet(fs, cfg)
	return fs
}

func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return ErrHelp
	}
	// The flag package names the flag: `invalid value "x" for flag -max-pods: ...`
	// or `flag provided but not defined: -x`.
	msg := err.Error()
	// Boolean flags say `invalid boolean value "x" for -capture.enabled: ...`.
	_, rest, ok := strings.Cut(msg, "for flag -")
	if !ok {
		_, rest, ok = strings.Cut(msg, " for -")
	}
	if ok {
		name, _, _ := strings.Cut(rest, ":")
		if key := keyOfFlag(name); key != "" {
			return &Error{Key: key, Err: err}
		}
	}
	return &Error{Err: err}
}

// uidList is a flag.Value for a comma-separated uid list.
type uidList []uint32

func (u *uidList) String() string {
	if u == nil {
		return ""
	}
	s := make([]string, len(*u))
	for i, v := range *u {
		s[i] = strconv.FormatUint(uint64(v), 10)
	}
	return strings.Join(s, ",")
}

func (u *uidList) Set(v string) error {
	var out []uint32
	for f := range strings.SplitSeq(v, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 32)
		if err != nil {
			return fmt.Errorf("%q is not a uid", f)
		}
		out = append(out, uint32(n))
	}
	*u = out
	return nil
}

// complete fills settings whose defaults derive from others.
func (c *Config) complete() {
	if c.SpoolDir == "" && c.StateDir != "" {
		c.SpoolDir = filepath.Join(c.StateDir, "spool")
	}
}

// Validate checks every setting and returns an *Error naming the first bad
// one.
func (c *Config) Validate() error {
	abs := func(key, v string) error {
		if v == "" {
			return &Error{Key: key, Err: errors.New("must not be empty")}
		}
		if !filepath.IsAbs(v) {
			return &Error{Key: key, Err: fmt.Errorf("must be an absolute path, got %q", v)}
		}
		return nil
	}
	if err := abs("socket", c.Socket); err != nil {
		return err
	}
	// Unix socket paths are limited to 108 bytes including the NUL.
	if len(c.Socket) > 107 {
		return &Error{Key: "socket", Err: fmt.Errorf("path is %d bytes, a unix socket path can be at most 107", len(c.Socket))}
	}
	if err := abs("stateDir", c.StateDir); err != nil {
		return err
	}
	if err := abs("spoolDir", c.SpoolDir); err != nil {
		return err
	}
	if _, port, err := net.SplitHostPort(c.HTTP); err != nil {
		return &Error{Key: "http", Err: fmt.Errorf("want host:port, got %q: %v", c.HTTP, err)}
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return &Error{Key: "http", Err: fmt.Errorf("port %q is not a number from 0 to 65535", port)}
	}
	if c.NodeName == "" {
		return &Error{Key: "nodeName", Err: errors.New("must not be empty (and the hostname is unknown)")}
	}
	switch c.LogLevel {
	case slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError:
	default:
		return &Error{Key: "logLevel", Err: fmt.Errorf("must be debug, info, warn or error, got %s", c.LogLevel)}
	}
	if c.ReconcileInterval.Duration <= 0 {
		return &Error{Key: "reconcileInterval", Err: fmt.Errorf("must be positive, got %s", c.ReconcileInterval)}
	}
	if c.MaxPods < 1 || c.MaxPods > MaxMaxPods {
		return &Error{Key: "maxPods", Err: fmt.Errorf("must be between 1 and %d, got %d", MaxMaxPods, c.MaxPods)}
	}
	if c.MaxProcs < 0 || c.MaxProcs > MaxMaxProcs {
		return &Error{Key: "maxProcs", Err: fmt.Errorf("must be between 0 (automatic) and %d, got %d", MaxMaxProcs, c.MaxProcs)}
	}
	if c.Nice < 0 || c.Nice > MaxNice {
		return &Error{Key: "nice", Err: fmt.Errorf("must be between 0 (as started) and %d, got %d", MaxNice, c.Nice)}
	}
	if c.GCPercent != 0 && (c.GCPercent < MinGCPercent || c.GCPercent > MaxGCPercent) {
		return &Error{Key: "gcPercent", Err: fmt.Errorf("must be 0 (automatic) or between %d and %d, got %d", MinGCPercent, MaxGCPercent, c.GCPercent)}
	}
	if c.MemoryLimit != 0 && c.MemoryLimit < MinMemoryLimit {
		return &Error{Key: "memoryLimit", Err: fmt.Errorf("must be 0 (automatic) or at least %d bytes, got %d", MinMemoryLimit, c.MemoryLimit)}
	}
	if err := abs("cniCacheDir", c.CNICacheDir); err != nil {
		return err
	}
	if c.CNIConfDir != "" && !filepath.IsAbs(c.CNIConfDir) {
		return &Error{Key: "cniConfDir", Err: fmt.Errorf("must be an absolute path or empty, got %q", c.CNIConfDir)}
	}
	if len(c.AllowedUIDs) == 0 {
		return &Error{Key: "allowedUIDs", Err: errors.New("must list at least one uid (the runtime's, usually 0)")}
	}
	if err := c.validatePipeline(); err != nil {
		return err
	}
	return c.validateComponents()
}

// validatePipeline checks the capture, bpf, protocol and requests sections.
func (c *Config) validatePipeline() error {
	between := func(key string, v, lo, hi int) error {
		if v < lo || v > hi {
			return &Error{Key: key, Err: fmt.Errorf("must be between %d and %d, got %d", lo, hi, v)}
		}
		return nil
	}
	checks := []error{
		between("capture.maxConnections", c.Capture.MaxConnections, 1, MaxMaxConnections),
		between("capture.maxBufferedBytes", c.Capture.MaxBufferedBytes, 1, math.MaxInt32),
		between("bpf.ringBufferSize", c.BPF.RingBufferSize, MinRingBufferSize, MaxRingBufferSize),
		between("bpf.chunkSize", c.BPF.ChunkSize, 1, MaxChunkSize),
		between("bpf.maxFrameCopy", c.BPF.MaxFrameCopy, MinMaxFrameCopy, MaxMaxFrameCopy),
		between("bpf.hintMapSize", c.BPF.HintMapSize, 1, MaxHintMapSize),
		between("protocol.maxHeaderBytes", c.Protocol.MaxHeaderBytes, MinMaxHeaderBytes, MaxMaxHeaderBytes),
		between("protocol.maxStreams", c.Protocol.MaxStreams, 1, MaxMaxStreamsOrPend),
		between("protocol.maxPending", c.Protocol.MaxPending, 1, MaxMaxStreamsOrPend),
		between("requests.keep", c.Requests.Keep, 1, MaxRequestsKeep),
	}
	for _, err := range checks {
		if err != nil {
			return err
		}
	}
	switch c.BPF.CaptureTier {
	case "auto", "socket", "syscall":
	default:
		return &Error{Key: "bpf.captureTier", Err: fmt.Errorf("must be auto, socket or syscall, got %q", c.BPF.CaptureTier)}
	}
	if c.Capture.IdleTimeout.Duration <= 0 {
		return &Error{Key: "capture.idleTimeout", Err: fmt.Errorf("must be positive, got %s", c.Capture.IdleTimeout)}
	}
	if c.Capture.DumpDir != "" && !filepath.IsAbs(c.Capture.DumpDir) {
		return &Error{Key: "capture.dumpDir", Err: fmt.Errorf("must be an absolute path or empty, got %q", c.Capture.DumpDir)}
	}
	if bits.OnesCount(uint(c.BPF.RingBufferSize)) != 1 {
		return &Error{Key: "bpf.ringBufferSize", Err: fmt.Errorf("must be a power of two, got %d", c.BPF.RingBufferSize)}
	}
	if c.BPF.CaptureLimit == 0 {
		return &Error{Key: "bpf.captureLimit", Err: errors.New("must be at least 1 byte")}
	}
	if d := c.BPF.PollInterval.Duration; d <= 0 || d > MaxPollInterval {
		return &Error{Key: "bpf.pollInterval", Err: fmt.Errorf("must be positive and at most %s, got %s", MaxPollInterval, d)}
	}
	return nil
}
