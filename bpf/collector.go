// Package bpf loads Weir's eBPF programs, attaches them, and decodes what
// they report.
//
// Two capture tiers (CaptureTier), chosen at Load by what the kernel has:
// the socket tier captures at tp_btf/sock_send_length and sock_recv_length
// (only socket I/O runs a program, filtered first on the socket's network
// namespace, payload read from the syscall's user buffer, connections keyed
// by socket cookie, lifecycle from inet_sock_set_state), and no syscall
// tracepoint is attached; the syscall tier, on kernels without those
// tracepoints, captures at syscall enter/exit as described below. Both
// feed the same report_data walk and the same records.
//
// The kernel side (c/capture.bpf.c) decides in the kernel which threads are
// monitored — those whose network namespace was enrolled through Enroll —
// and reports their TCP connections and the bytes they move through one BPF
// ring buffer. This package owns that lifecycle: it checks the kernel can
// run the programs (BTF, permissions, every hook present) and fails with a
// precise error if not, probes which richer tiers the kernel would allow,
// and turns ring buffer records into the types of package bpf/event for
// whoever reassembles the streams. It holds no policy about pods: callers
// give it network namespace inodes and pod ids.
//
// Kernel metrics ride on the same records: each data syscall's last event
// carries what the kernel saw happen to that socket's packets while the
// syscall ran (event.SendMetrics / event.RecvMetrics), closes carry the
// socket's RTT, retransmits and drops (event.SocketStats), and a failed
// non-blocking connect is reported when the handshake fails. The base tier
// (tracepoints, tp_btf) measures packets, device-layer times, receive queue
// times, retransmits, drops by kernel reason and RTT; where the kernel
// allows fentry or kprobes, a richer tier (c/tier.bpf.c) adds L4, L3,
// netfilter and neighbour-resolution times to sends and L3 (receive/local
// split), L4 and netfilter times to reads. Features says, per metric, which
// are measured on this kernel: an unmeasured field is never a silent zero.
// EnrollPod adds per-pod packet counters on the pod's host veth (TCX, or
// clsact + cls_bpf on kernels without TCX), read with PodCounters.
package bpf

import (
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/weirnet/weir/bpf/event"
)

// Defaults and bounds of Config.
const (
	DefaultRingBufferSize   = 8 << 20
	DefaultChunkSize        = 4096
	DefaultCaptureLimit     = 1 << 20
	DefaultProcessQueueSize = 4096
	DefaultPollInterval     = 10 * time.Millisecond
	DefaultMaxFrameCopy     = 64 << 10
	DefaultHintMapSize      = 65536

	// MinMaxFrameCopy and MaxMaxFrameCopy bound MaxFrameCopy: below
	// HTTP/2's default SETTINGS_MAX_FRAME_SIZE (16 KiB) ordinary HEADERS
	// frames would be skipped; above the protocol's largest frame the
	// bound means nothing.
	MinMaxFrameCopy = 16 << 10
	MaxMaxFrameCopy = 1<<24 - 1

	// maxPollInterval bounds PollInterval: the reader's timer is all that
	// delivers a quiet connection's records.
	maxPollInterval = time.Second

	// MaxChunkSize is the compile-time ceiling of ChunkSize (MAX_CHUNK_SIZE
	// in c/capture.h): the per-CPU scratch the kernel side builds events in
	// is this large.
	MaxChunkSize = 16384
	// MaxChunksPerSyscall is how many events with payload one syscall can
	// produce (MAX_CHUNKS); bytes beyond are reported size-only.
	MaxChunksPerSyscall = 32

	minRingBufferSize = 4096
)

// Config sizes the kernel side. The zero value of a field means its default.
type Config struct {
	// RingBufferSize is the ring buffer's size in bytes: a power of two
	// and a multiple of the page size. When it is full the kernel side
	// drops records (counted as "ringbuf_full"); it never blocks a task.
	RingBufferSize int
	// ChunkSize is the most payload one data event carries, 1..MaxChunkSize.
	ChunkSize int
	// CaptureLimit is the capture budget per connection and direction:
	// how many payload bytes are copied before the kernel side starts
	// skipping what it can. For a connection of unknown protocol, past it
	// only the first ChunkSize bytes of each syscall are copied (the rest
	// is reported size-only, event.SkipBudget). An HTTP/2 connection (the
	// kernel walks its frames) keeps every frame header and non-DATA
	// payload whatever it has carried; past the budget only DATA payloads
	// are skipped (event.SkipH2Data). A connection hinted as HTTP/1
	// (HintHTTP1) is not budgeted: everything is copied except the body
	// ranges given to SkipBody. 0 means the default; set NoCaptureLimit
	// for unlimited.
	CaptureLimit uint64
	// MaxFrameCopy bounds the payload of an HTTP/2 frame other than DATA
	// that the kernel side copies; a larger frame's payload is reported
	// size-only (event.SkipFrameLimit, counted as "h2_frame_limit").
	// Default DefaultMaxFrameCopy, between MinMaxFrameCopy and
	// MaxMaxFrameCopy.
	MaxFrameCopy int
	// HintMapSize bounds how many connections can be hinted as HTTP/1 at
	// once (an LRU map: the least recently used hint is evicted). Default
	// DefaultHintMapSize.
	HintMapSize int
	// PollInterval is how long the reader sleeps when it has drained the
	// ring buffer. The kernel side wakes the reader only for a record
	// written into an empty ring (each wakeup is an inter-processor
	// interrupt, and at tens of thousands of syscalls a second one per
	// record cost more than the capture itself), so a busy ring is read
	// every interval, its records in batches, and the reader waits for
	// the kernel only once the ring has stayed empty for a whole interval:
	// an idle node's reader does not wake at all. Default
	// DefaultPollInterval, at most one second. RingBufferSize must hold
	// what the node writes during one interval.
	PollInterval time.Duration
	// NoPayload makes data events carry sizes and kernel metrics only:
	// no user memory is copied, so no protocol can be parsed. For nodes
	// where payload must not leave the kernel, and to measure what the
	// kernel metrics cost on their own.
	NoPayload bool
	// ProcessQueueSize bounds the processes found by Enroll's scan that
	// wait for Run; beyond it they are counted and dropped.
	ProcessQueueSize int
	// SkipFentry uses the kprobe tier even where fentry would attach
	// (for testing the kprobe tier, or kernels whose trampolines misbehave).
	SkipFentry bool
	// RichTier loads the fentry (else kprobe) programs where the runtime
	// probe says they attach, for the finer L4/L3, netfilter and ARP
	// fields. The daemon turns it on unless told otherwise (bpf.richTier);
	// the zero Config is the base tier alone, which is what most tests of
	// this package exercise. (Soft lockups once blamed on this tier were
	// QEMU's multi-threaded TCG running stale code after the kernel
	// patched a static branch: see tests/kernels/vmrun.)
	RichTier bool
	// CaptureTier chooses where payload and connections are captured:
	// CaptureAuto (the zero value) takes the socket tier where the kernel
	// has its tracepoints, else the syscall tier. Forcing CaptureSocket
	// fails Load where it cannot run.
	CaptureTier CaptureTier
}

// NoCaptureLimit as Config.CaptureLimit captures every byte.
const NoCaptureLimit = ^uint64(0)

func (c Config) withDefaults() (Config, error) {
	if c.RingBufferSize == 0 {
		c.RingBufferSize = DefaultRingBufferSize
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = DefaultChunkSize
	}
	if c.CaptureLimit == 0 {
		c.CaptureLimit = DefaultCaptureLimit
	}
	if c.ProcessQueueSize == 0 {
		c.ProcessQueueSize = DefaultProcessQueueSize
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.MaxFrameCopy == 0 {
		c.MaxFrameCopy = DefaultMaxFrameCopy
	}
	if c.HintMapSize == 0 {
		c.HintMapSize = DefaultHintMapSize
	}
	if c.MaxFrameCopy < MinMaxFrameCopy || c.MaxFrameCopy > MaxMaxFrameCopy {
		return c, fmt.Errorf("max frame copy %d: must be between %d and %d bytes", c.MaxFrameCopy, MinMaxFrameCopy, MaxMaxFrameCopy)
	}
	if c.HintMapSize < 1 {
		return c, fmt.Errorf("hint map size %d: must be positive", c.HintMapSize)
	}
	if c.RingBufferSize < minRingBufferSize || bits.OnesCount(uint(c.RingBufferSize)) != 1 {
		return c, fmt.Errorf("ring buffer size %d: must be a power of two of at least %d bytes", c.RingBufferSize, minRingBufferSize)
	}
	if c.ChunkSize < 1 || c.ChunkSize > MaxChunkSize {
		return c, fmt.Errorf("chunk size %d: must be between 1 and %d bytes", c.ChunkSize, MaxChunkSize)
	}
	if c.PollInterval < 0 || c.PollInterval > maxPollInterval {
		return c, fmt.Errorf("poll interval %s: must be between 0 and %s", c.PollInterval, maxPollInterval)
	}
	if c.ProcessQueueSize < 1 {
		return c, fmt.Errorf("process queue size %d: must be positive", c.ProcessQueueSize)
	}
	return c, nil
}

// Collector is the loaded and attached kernel side plus the reader of its
// ring buffer. Create it with Load; Close it to detach everything.
type Collector struct {
	log      *slog.Logger
	cfg      Config
	coll     *ebpf.Collection
	tierColl *ebpf.Collection // the richer tier's programs, if loaded
	netns    *ebpf.Map        // enrolled_netns, procs and counters, from coll
	netnsBit *ebpf.Map        // netns_bits: the kernel side's filter in front of netns
	procs    *ebpf.Map
	counters *ebpf.Map
	hints    hints // h1_hints: user space's HTTP/1 hints (hint.go)
	links    []link.Link
	packet   packetLinks // per-packet hooks, attached while a netns is enrolled
	reader   *ringbuf.Reader
	parker   *ringParker // nil: Run polls an idle ring on its timer
	features Features
	// counterNames[i] names kernel counter i (enum drop_reason).
	counterNames []string
	// dropReasons names the kernel's enum skb_drop_reason values.
	dropReasons dropReasons

	// Per-pod TC programs, their counter maps and attachments (pod.go).
	tcIngress, tcEgress *ebpf.Program
	podDev, podDrops    *ebpf.Map
	pods                podAttachments

	processes chan event.ProcessEvent // found by Enroll's scan, delivered by Run
	wake      chan struct{}           // cuts Run's sleep short: processes wait
	running   atomic.Bool
	closeOnce sync.Once
	stats     readerStats
}

// Load checks the kernel, loads the base tier, attaches every hook and
// probes the richer tiers. Errors wrap ErrBTFMissing, ErrPermission or
// ErrHookUnavailable (an *HookError naming the hook) when those are the
// cause.
func Load(cfg Config, log *slog.Logger) (*Collector, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("bpf config: %w", err)
	}
	kernel, err := checkKernel()
	if err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, permissionError("remove memlock limit", err)
	}

	spec, err := loadCapture()
	if err != nil {
		return nil, fmt.Errorf("read embedded eBPF object: %w", err)
	}
	hooks, err := hooksOf(spec)
	if err != nil {
		return nil, err
	}
	capture, captureWhy, err := chooseCaptureTier(cfg.CaptureTier, hooks, kernel)
	if err != nil {
		return nil, err
	}
	hooks, leftOut := pruneCaptureTier(spec, hooks, capture, kernel)
	// Classic tracepoints (the syscall tier) need tracefs; the socket tier
	// does not, but the kprobe probe does, so it is mounted either way.
	tracefs, tfErr := ensureTracefs(log)
	for _, h := range hooks {
		if h.kind == kindTracepoint && tfErr != nil {
			return nil, &HookError{Hook: "tracepoint/*", Err: tfErr}
		}
	}
	for _, h := range hooks {
		if err := h.check(tracefs, kernel); err != nil {
			return nil, err
		}
	}

	spec.Maps[captureMapEvents].MaxEntries = uint32(cfg.RingBufferSize)
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count possible CPUs for the data scratch: %w", err)
	}
	spec.Maps[captureMapScratch].MaxEntries = uint32(cpus)
	if err := spec.Variables[captureVarChunkSize].Set(uint32(cfg.ChunkSize)); err != nil {
		return nil, fmt.Errorf("set chunk size: %w", err)
	}
	limit := cfg.CaptureLimit
	if limit == NoCaptureLimit {
		limit = 0 // the kernel side's "unlimited"
	}
	if err := spec.Variables[captureVarCaptureLimit].Set(limit); err != nil {
		return nil, fmt.Errorf("set capture limit: %w", err)
	}
	if err := spec.Variables[captureVarMaxFrameCopy].Set(uint32(cfg.MaxFrameCopy)); err != nil {
		return nil, fmt.Errorf("set max frame copy: %w", err)
	}
	spec.Maps[captureMapH1Hints].MaxEntries = uint32(cfg.HintMapSize)
	if cfg.NoPayload {
		if err := spec.Variables[captureVarCapturePayload].Set(uint32(0)); err != nil {
			return nil, fmt.Errorf("turn payload capture off: %w", err)
		}
	}
	if capture == CaptureSocket {
		if err := spec.Variables[captureVarSocketTier].Set(uint8(1)); err != nil {
			return nil, fmt.Errorf("select the socket tier: %w", err)
		}
	}
	names, err := counterNames(spec)
	if err != nil {
		return nil, err
	}

	c := &Collector{
		log:          log,
		cfg:          cfg,
		counterNames: names,
		processes:    make(chan event.ProcessEvent, cfg.ProcessQueueSize),
		wake:         make(chan struct{}, 1),
		pods:         podAttachments{byNS: map[uint64]*tcAttach{}},
	}
	c.coll, err = ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{KernelTypes: kernel},
	})
	if err != nil {
		return nil, permissionError("load eBPF programs", err)
	}
	c.netns = c.coll.Maps[captureMapEnrolledNetns]
	c.netnsBit = c.coll.Maps[captureMapNetnsBits]
	c.procs = c.coll.Maps[captureMapProcs]
	c.counters = c.coll.Maps[captureMapCounters]
	c.hints.m = c.coll.Maps[captureMapH1Hints]
	c.podDev = c.coll.Maps[captureMapPodDev]
	c.podDrops = c.coll.Maps[captureMapPodDrops]
	c.tcIngress = c.coll.Programs[captureProgTcPodIngress]
	c.tcEgress = c.coll.Programs[captureProgTcPodEgress]

	for _, h := range hooks {
		if packetHooks[h.name] {
			// Attached while a namespace is enrolled (packethooks.go).
			c.packet.hooks = append(c.packet.hooks, h)
			c.packet.progs = append(c.packet.progs, c.coll.Programs[h.program])
			c.features.Hooks = append(c.features.Hooks, HookStatus{Name: h.name, Tier: h.tier, Attached: true})
			continue
		}
		l, err := h.attach(c.coll.Programs[h.program])
		if err != nil {
			c.Close()
			return nil, permissionError("attach", err)
		}
		c.links = append(c.links, l)
		c.features.Hooks = append(c.features.Hooks, HookStatus{Name: h.name, Tier: h.tier, Attached: true})
	}

	if c.dropReasons, err = loadDropReasons(kernel); err != nil {
		log.Warn("kernel drop reasons unknown: drops are not measured", "error", err)
	}

	c.reader, err = ringbuf.NewReader(c.coll.Maps[captureMapEvents])
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("open ring buffer reader: %w", err)
	}
	if c.parker, err = newRingParker(c.coll.Maps[captureMapEvents]); err != nil {
		log.Warn("idle ring buffer is polled every poll interval", "error", err)
	}
	c.features.Hooks = append(c.features.Hooks, leftOut...)
	c.features.Capture = capture
	c.features.CaptureReason = captureWhy
	c.features.Tier = TierBase
	c.features.Tiers = probeTiers()
	c.attachRichTier(kernel)
	attached := make(map[string]bool, len(c.features.Hooks))
	for _, h := range c.features.Hooks {
		attached[h.Name] = h.Attached
	}
	c.features.Metrics = metricStatus(attached, c.features.Tier, c.features.Tiers, len(c.dropReasons) > 0)
	if c.features.TierError != "" {
		for i := range c.features.Metrics {
			if !c.features.Metrics[i].Available {
				c.features.Metrics[i].Reason += " (richer tier: " + c.features.TierError + ")"
			}
		}
	}
	log.Info("eBPF capture loaded",
		"hooks", len(c.links), "capture_tier", capture.String(), "capture_tier_reason", captureWhy,
		"tier", c.features.Tier.String(),
		"ring_buffer_bytes", cfg.RingBufferSize, "chunk_size", cfg.ChunkSize,
		"capture_limit", cfg.CaptureLimit, "max_frame_copy", cfg.MaxFrameCopy)
	for _, t := range c.features.Tiers[1:] {
		log.Info("eBPF tier probe", "tier", t.Tier.String(), "available", t.Available, "reason", t.Reason)
	}
	return c, nil
}

// counterNames reads the names of the kernel counters from the BTF of enum
// drop_reason, so they are defined once, in C.
func counterNames(spec *ebpf.CollectionSpec) ([]string, error) {
	var e *btf.Enum
	if err := spec.Types.TypeByName("drop_reason", &e); err != nil {
		return nil, fmt.Errorf("find enum drop_reason in eBPF object: %w", err)
	}
	names := make([]string, 0, len(e.Values))
	for _, v := range e.Values {
		if v.Name == "DROP_MAX" {
			continue
		}
		if v.Value != uint64(len(names)) {
			return nil, fmt.Errorf("enum drop_reason: %s = %d is not dense", v.Name, v.Value)
		}
		names = append(names, strings.ToLower(strings.TrimPrefix(v.Name, "DROP_")))
	}
	return names, nil
}

// Features reports the active tier, each tier's probe result and each hook.
func (c *Collector) Features() Features {
	f := c.features
	f.Tiers = append([]TierStatus(nil), f.Tiers...)
	f.Hooks = append([]HookStatus(nil), f.Hooks...)
	f.Metrics = append([]MetricStatus(nil), f.Metrics...)
	return f
}

// Counters are the kernel side's drop counters by name (see enum
// drop_reason in c/capture.h), each summed over CPUs.
type Counters map[string]uint64

// CounterLoses reports whether the kernel counter named reason counts losses:
// a ring buffer record, a syscall, or the connection or process of an
// operation the kernel side could not report at all, bytes it did not count,
// plaintext it could not link to a connection. Every other counter counts
// partial reports -- payload sent size-only past a bound (the event's skip
// reason says why), or a kernel metric or drop attribution missing (the
// event's measured bits say which) -- where the event itself was delivered.
// The two are exported apart, so that an alert on losses does not fire on a
// large transfer passing the capture limit.
func CounterLoses(reason string) bool {
	switch reason {
	case "ringbuf_full", "conn_map_full", "args_map_full", "proc_map_full", "mmsg_limit", "tls_unlinked":
		return true
	}
	return false
}

// Counters reads the kernel side's drop counters.
func (c *Collector) Counters() (Counters, error) {
	out := make(Counters, len(c.counterNames))
	var perCPU []uint64
	for i, name := range c.counterNames {
		if err := c.counters.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("read counter %s: %w", name, err)
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		out[name] = sum
	}
	return out, nil
}

// Close detaches every program, stops Run (which returns ErrClosed) and
// frees the maps. It is safe to call more than once.
func (c *Collector) Close() error {
	var errs []error
	c.closeOnce.Do(func() {
		if c.podDev != nil {
			c.detachAllPods()
		}
		// Detaching a tracepoint waits for an RCU grace period (tens of
		// milliseconds); detach them all at once rather than in turn.
		linkErrs := make([]error, len(c.links))
		var wg sync.WaitGroup
		for i, l := range c.links {
			wg.Go(func() {
				if err := l.Close(); err != nil {
					linkErrs[i] = fmt.Errorf("detach: %w", err)
				}
			})
		}
		wg.Wait()
		errs = append(errs, linkErrs...)
		c.packet.mu.Lock()
		errs = append(errs, c.packet.detachLocked())
		c.packet.mu.Unlock()
		if c.reader != nil {
			if err := c.reader.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close ring buffer reader: %w", err))
			}
		}
		if c.parker != nil {
			if err := c.parker.close(); err != nil {
				errs = append(errs, fmt.Errorf("close ring buffer wait: %w", err))
			}
		}
		if c.tierColl != nil {
			c.tierColl.Close()
		}
		if c.coll != nil {
			c.coll.Close()
		}
	})
	return errors.Join(errs...)
}
