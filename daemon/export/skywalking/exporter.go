// Package skywalking exports Weir's flows to an Apache SkyWalking OAP through
// the eBPF access-log protocol (skywalking.v3.EBPFAccessLogService/collect),
// the same stream SkyWalking Rover sends, so the OAP draws Kubernetes
// services, topology, TCP/HTTP metrics and endpoints from Weir's data.
//
// An Exporter is a flow.Consumer. On the pipeline's goroutine it encodes
// each operation and exchange into pointer-free bytes and enqueues them
// into a bounded queue (entries and bytes); a sender goroutine (Run) takes
// batches off its head, adds the message heads (node, connection), and
// sends each batch as one client stream that CloseAndRecv acknowledges. A batch that fails stays at the
// head of the queue and is resent after an exponential backoff, so nothing
// is lost to a transient OAP outage and nothing acknowledged is sent twice
// (delivery is at least once: a stream that fails after the OAP processed it
// but before the acknowledgement arrived is resent). When the OAP is away
// long enough for the queue to fill, the oldest entries are evicted and
// counted, so memory stays bounded for however long the outage lasts.
//
// Protocol semantics followed (as the OAP's AccessLogServiceHandler reads
// them): node info on the first message of every stream; a connection
// message stays in force for the following messages of the stream until
// another is sent; durations are end - start of EBPFOffsetTimestamp (ns since
// boot, with the node's boot time); a peer that is an enrolled pod is a
// KubernetesProcessAddress, anything else an IPAddress the OAP resolves.
//
// Each kernel operation must reach the OAP once, since it counts every
// kernel log of every message. The Exporter is a flow.OpConsumer: the
// pipeline hands each read and write either in the Ops of the one exchange
// that claimed it (sent as that protocol log's kernel logs, as the OAP
// relates them) or on its own through ConnOp (sent with the connection's
// other kernel logs), and connect, accept and close through ConnOp; the
// KernelOp calls every consumer gets are ignored.
//
// Delivery is at most once. The OAP processes each message as it arrives
// and never rolls a stream back, so a batch is retried only while none of
// its messages was handed to the stream; after a partial send the rest of
// the batch is dropped and counted (entries_dropped_total{reason=
// "partial_send"} for the entries whose messages were never written,
// {reason="unacknowledged"} for those written to a stream that then failed:
// the OAP may or may not have them). A flapping OAP thus costs data rather
// than double counts.
package skywalking

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"text/template"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/conntrack"
	"github.com/weirnet/weir/daemon/flow"
)

// Defaults for Config's zero values.
const (
	DefaultFlushPeriod         = time.Second
	DefaultBatchSize           = 500
	DefaultQueueSize           = 50000
	DefaultQueueBytes          = 64 << 20
	DefaultBackoffMin          = time.Second
	DefaultBackoffMax          = 30 * time.Second
	DefaultSendTimeout         = 20 * time.Second
	DefaultShutdownTimeout     = 5 * time.Second
	DefaultIdentityWait        = time.Minute
	DefaultServiceNameTemplate = "{{.ServiceName}}.{{.Namespace}}"
)

// AuthMetadataKey is the gRPC metadata key the OAP reads the token from
// (its authentication interceptor's "Authentication"; gRPC lower-cases keys
// on the wire).
const AuthMetadataKey = "authentication"

// NetInterface is one network interface of the node, sent in the node info
// so the OAP can name the ifindex of L2 metrics.
type NetInterface struct {
	Name  string
	Index int
	MTU   int
}

// Backoff bounds the wait between failed sends: it starts at Min and doubles
// up to Max.
type Backoff struct {
	Min, Max time.Duration
}

// Config configures an Exporter. Zero values take the defaults above.
type Config struct {
	// OAP is the collector's gRPC address, host:port. Required.
	OAP string
	// Token, when set, is sent as "Authentication" metadata on every stream.
	Token string
	// Insecure turns TLS off (plaintext gRPC, the OAP's default on 11800).
	Insecure bool
	// CAFile is a PEM bundle of the CAs that sign the OAP's certificate;
	// empty means the system roots. Ignored with Insecure.
	CAFile string
	// ServerName overrides the name verified in the OAP's certificate.
	ServerName string

	// Cluster is the node info's cluster name and, when set, the group
	// prefix of service names ("cluster::service.namespace"), matching the
	// names the OAP gives peers it resolves by IP.
	Cluster string
	// NodeName is the node info's name; default os.Hostname().
	NodeName string
	// BootTime is the wall-clock time of CLOCK_MONOTONIC's zero, which
	// event timestamps count from. Default: event.BootTime().
	BootTime time.Time
	// NetInterfaces are the node's interfaces; default HostInterfaces().
	NetInterfaces []NetInterface

	// FlushPeriod is the longest an entry waits before a send starts;
	// a full batch is sent at once.
	FlushPeriod time.Duration
	// BatchSize is the number of entries (kernel operations and HTTP
	// exchanges) sent per stream at most; each becomes at most one message.
	BatchSize int
	// QueueSize and QueueBytes bound the queue, in-flight batch included,
	// by entries and by bytes retained (each entry's encoded logs and its
	// own bookkeeping; see item).
	QueueSize  int
	QueueBytes int64
	// Backoff bounds the wait between failed sends.
	Backoff Backoff
	// SendTimeout bounds one stream, from open to acknowledgement.
	SendTimeout time.Duration
	// ShutdownTimeout bounds the final flush when Run's context ends.
	ShutdownTimeout time.Duration
	// IdentityWait bounds how long sending is held back at start while
	// pod identities are not synced (see SetIdentity).
	IdentityWait time.Duration

	// ExcludeNamespaces lists namespaces whose pods are not exported;
	// they are also sent to the OAP as its access-log policy.
	ExcludeNamespaces []string
	// ServiceNameTemplate is a text/template over ServiceNameData giving
	// the service name of a pod.
	ServiceNameTemplate string
	// Conntrack, when set, translates the remote of a client connection
	// to a peer that is not a local pod (a Service ClusterIP DNATed by
	// kube-proxy) into the address that answers, from the connection's
	// conntrack entry; nil sends the socket's remote as it is.
	Conntrack *conntrack.Resolver
}

func (c *Config) setDefaults() error {
	if c.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("skywalking: node name not set and hostname unknown: %w", err)
		}
		c.NodeName = h
	}
	if c.BootTime.IsZero() {
		c.BootTime = event.BootTime()
	}
	if c.NetInterfaces == nil {
		ifs, err := HostInterfaces()
		if err != nil {
			return err
		}
		c.NetInterfaces = ifs
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.FlushPeriod, DefaultFlushPeriod)
	def(&c.Backoff.Min, DefaultBackoffMin)
	def(&c.Backoff.Max, DefaultBackoffMax)
	def(&c.SendTimeout, DefaultSendTimeout)
	def(&c.ShutdownTimeout, DefaultShutdownTimeout)
	def(&c.IdentityWait, DefaultIdentityWait)
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = DefaultQueueBytes
	}
	if c.ServiceNameTemplate == "" {
		c.ServiceNameTemplate = DefaultServiceNameTemplate
	}
	return nil
}

func (c *Config) validate() error {
	if _, port, err := net.SplitHostPort(c.OAP); err != nil || port == "" {
		return fmt.Errorf("skywalking: OAP address %q is not host:port", c.OAP)
	}
	switch {
	case c.FlushPeriod < 0:
		return fmt.Errorf("skywalking: FlushPeriod %v is negative", c.FlushPeriod)
	case c.BatchSize < 1:
		return fmt.Errorf("skywalking: BatchSize %d must be at least 1", c.BatchSize)
	case c.QueueSize < 2*c.BatchSize:
		// Room for a batch in flight plus one being filled, or an
		// outage would drop everything that arrives.
		return fmt.Errorf("skywalking: QueueSize %d must be at least twice BatchSize %d", c.QueueSize, c.BatchSize)
	case c.QueueBytes < 1<<20:
		return fmt.Errorf("skywalking: QueueBytes %d is below the minimum 1 MiB", c.QueueBytes)
	case c.Backoff.Min <= 0 || c.Backoff.Max < c.Backoff.Min:
		return fmt.Errorf("skywalking: Backoff {Min %v, Max %v} needs 0 < Min <= Max", c.Backoff.Min, c.Backoff.Max)
	case c.SendTimeout < 0 || c.ShutdownTimeout < 0 || c.IdentityWait < 0:
		return fmt.Errorf("skywalking: SendTimeout %v, ShutdownTimeout %v and IdentityWait %v must not be negative",
			c.SendTimeout, c.ShutdownTimeout, c.IdentityWait)
	case c.Token != "" && strings.ContainsAny(c.Token, "\r\n"):
		return errors.New("skywalking: Token contains a line break")
	}
	return nil
}

// Exporter sends flows to a SkyWalking OAP. Create it with New, hand it to
// the pipeline as a flow.Consumer, run Run, and register it (it is a
// prometheus.Collector) for its self-metrics.
type Exporter struct {
	cfg      Config
	log      *slog.Logger
	q        *queue
	arena    arena // encodes what the pipeline hands, at enqueue
	wake     chan struct{}
	excluded map[string]bool
	node     []byte // node field of the first message of a stream, encoded
	b        *builder
	conn     *grpc.ClientConn
	codec    rawCodec
	stats    stats
	metrics  metricDescs
	running  atomic.Bool

	// identitySynced says whether pod names are final (SetIdentity; nil:
	// always). Until it does, or IdentityWait passed, nothing is sent.
	identitySynced func() bool
	// held is 1 while sending is held back for identities (a gauge).
	held atomic.Bool
}

var _ flow.OpConsumer = (*Exporter)(nil)

// New validates cfg and prepares an exporter. It does not connect: the
// connection is made by Run, and retried there for as long as it runs.
func New(cfg Config, log *slog.Logger) (*Exporter, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	tmpl, err := template.New("service").Option("missingkey=error").Parse(cfg.ServiceNameTemplate)
	if err != nil {
		return nil, fmt.Errorf("skywalking: service name template: %w", err)
	}
	if err := tmpl.Execute(discard{}, ServiceNameData{ServiceName: "s", Namespace: "n", PodName: "p"}); err != nil {
		return nil, fmt.Errorf("skywalking: service name template: %w", err)
	}
	codec, err := newRawCodec()
	if err != nil {
		return nil, err
	}
	creds, err := transportCredentials(cfg)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(cfg.OAP,
		grpc.WithTransportCredentials(creds),
		grpc.WithWriteBufferSize(writeBufferSize),
		// The channel's own reconnect backoff follows ours, so a restarted
		// OAP is found as soon as our next retry, not after gRPC's 120 s
		// default ceiling.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: cfg.Backoff.Min, Multiplier: 2, Jitter: 0.2, MaxDelay: cfg.Backoff.Max},
			MinConnectTimeout: min(cfg.SendTimeout, 20*time.Second),
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("skywalking: OAP client for %q: %w", cfg.OAP, err)
	}
	e := &Exporter{
		cfg:      cfg,
		log:      log,
		q:        newQueue(cfg.QueueSize, cfg.QueueBytes),
		wake:     make(chan struct{}, 1),
		excluded: make(map[string]bool, len(cfg.ExcludeNamespaces)),
		node:     encodeNode(cfg),
		conn:     conn,
		codec:    codec,
		metrics:  newMetricDescs(),
	}
	e.q.arena = &e.arena
	for _, ns := range cfg.ExcludeNamespaces {
		e.excluded[ns] = true
	}
	e.b = newBuilder(tmpl, cfg.Cluster, cfg.NodeName, &e.stats)
	e.b.conntrack = cfg.Conntrack
	return e, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func transportCredentials(cfg Config) (credentials.TransportCredentials, error) {
	if cfg.Insecure {
		return insecure.NewCredentials(), nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.ServerName}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("skywalking: OAP CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("skywalking: OAP CA file %s holds no PEM certificate", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	return credentials.NewTLS(tc), nil
}

// HostInterfaces lists the interfaces of the calling process's network
// namespace (the daemon runs in the host's).
func HostInterfaces() ([]NetInterface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("skywalking: listing network interfaces: %w", err)
	}
	out := make([]NetInterface, 0, len(ifs))
	for _, i := range ifs {
		out = append(out, NetInterface{Name: i.Name, Index: i.Index, MTU: i.MTU})
	}
	return out, nil
}

// SetIdentity makes the exporter name pods as they are named when a batch
// is sent rather than when its entries were queued, and hold sending back
// at start until synced reports true (at most IdentityWait): names taken
// before the Kubernetes caches synced are the runtime's labels or the
// owner's, which the OAP would not give the pod, and entries queued then
// would carry them. pod returns the current identity of an enrolled pod
// (nil when it is gone); either may be nil. Call it before Run.
func (e *Exporter) SetIdentity(synced func() bool, pod func(id uint32) *flow.Pod) {
	e.identitySynced = synced
	e.b.pods = pod
}

// identityReady says whether sending may start; once it said so it stays
// so. Only the sender goroutine calls it.
func (e *Exporter) identityReady(start time.Time) bool {
	if e.identitySynced == nil {
		return true
	}
	switch {
	case e.identitySynced():
		if e.held.Load() {
			e.log.Info("pod identities synced; sending to the OAP", "held", time.Since(start).Round(time.Millisecond))
		}
	case time.Since(start) >= e.cfg.IdentityWait:
		e.stats.identityTimeouts.Add(1)
		e.log.Warn("pod identities still not synced; sending with the names known so far",
			"waited", e.cfg.IdentityWait)
	default:
		if !e.held.Swap(true) {
			e.log.Info("holding exports until pod identities are synced", "at_most", e.cfg.IdentityWait)
		}
		return false
	}
	e.identitySynced = nil
	e.held.Store(false)
	return true
}

// Name implements the daemon's Component.
func (e *Exporter) Name() string { return "skywalking" }

// Borrows makes the Exporter a flow.Borrower: ConnOp and Exchange encode
// what they are handed before they return, and the queue keeps only the
// encoding and the *flow.Connection.
func (e *Exporter) Borrows() {}

// The daemon's pipeline reuses its values only while every consumer is a
// Borrower.
var _ flow.Borrower = (*Exporter)(nil)

// KernelOp implements flow.Consumer. The exporter takes operations once
// each through ConnOp and Exchange instead (see the package doc).
func (e *Exporter) KernelOp(*flow.KernelOp) {}

// ConnOp implements flow.OpConsumer. It never blocks on the network.
func (e *Exporter) ConnOp(op *flow.KernelOp, proto flow.Protocol) {
	e.stats.received.Add(1)
	if op == nil || op.Conn == nil {
		e.stats.filtered(filterInvalid)
		return
	}
	if !e.admit(op.Conn) {
		return
	}
	e.push(e.arena.add(entry{op: op, proto: proto}))
}

// Exchange implements flow.Consumer. It never blocks on the network.
func (e *Exporter) Exchange(ex *flow.Exchange) {
	e.stats.received.Add(1)
	if ex == nil || ex.Conn == nil || ex.Record == nil {
		e.stats.filtered(filterInvalid)
		return
	}
	if !e.admit(ex.Conn) {
		return
	}
	if reason := unexportable(ex.Record); reason != "" {
		// Not a protocol log; its kernel operations are still worth
		// sending (see builder.build), if it has any.
		e.stats.protocolSkipped(reason)
		if len(ex.Ops) == 0 {
			e.stats.filtered(filterNothingToSend)
			return
		}
	}
	e.push(e.arena.add(entry{ex: ex}))
}

// admit applies the export policy to a connection's entries.
func (e *Exporter) admit(c *flow.Connection) bool {
	if c.Local.Pod != nil && e.excluded[c.Local.Pod.Namespace] {
		e.stats.filtered(filterNamespace)
		return false
	}
	if c.Role != event.RoleClient && c.Role != event.RoleServer {
		// The OAP derives the direction of every relation from the
		// role; guessing would draw edges backwards.
		e.stats.filtered(filterUnknownRole)
		return false
	}
	return true
}

func (e *Exporter) push(en item) {
	r := e.q.push(en, e.cfg.BatchSize)
	if !r.queued {
		e.arena.releaseOne(&en)
	}
	switch {
	case r.tooLarge:
		e.stats.dropped(dropTooLarge, 1)
	case !r.queued:
		e.stats.dropped(dropQueueFull, 1)
	default:
		e.stats.enqueued.Add(1)
	}
	if r.evicted > 0 {
		e.stats.dropped(dropQueueFull, uint64(r.evicted))
	}
	if r.reachedHi {
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
}

// Run sends queued entries until ctx ends, then makes one last flush bounded
// by ShutdownTimeout and counts what is left as dropped. It returns nil after
// a shutdown caused by ctx. Run may be called once.
func (e *Exporter) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("skywalking: Run called twice")
	}
	defer e.conn.Close()
	e.log.Info("exporting to SkyWalking OAP", "oap", e.cfg.OAP, "tls", !e.cfg.Insecure,
		"cluster", e.cfg.Cluster, "node", e.cfg.NodeName)

	s := &sender{e: e, batch: make([]item, 0, e.cfg.BatchSize), wait: e.cfg.Backoff.Min}
	tick := time.NewTicker(e.cfg.FlushPeriod)
	defer tick.Stop()
	start := time.Now()
	for {
		woken := false
		select {
		case <-ctx.Done():
			e.shutdown(s)
			return nil
		case <-tick.C:
		case <-e.wake:
			woken = true
		}
		if !e.identityReady(start) {
			continue
		}
		// A wake (a batch's worth queued) sends full batches and leaves
		// the rest for the next batch or tick, as FlushPeriod says: each
		// stream costs gRPC a fixed amount of work on both ends, and
		// sending whatever had queued while the previous batch was in
		// flight made the batches, and so that cost per entry, depend on
		// how fast the OAP acknowledged (100-300 entries per stream
		// against a fast receiver under load). A tick sends everything.
		for s.pending() || e.q.len() >= e.cfg.BatchSize || (!woken && e.q.len() > 0) {
			if !s.sendNext(ctx) {
				break // ctx ended during backoff
			}
		}
	}
}

func (e *Exporter) shutdown(s *sender) {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.ShutdownTimeout)
	defer cancel()
	for (s.pending() || e.q.len() > 0) && ctx.Err() == nil {
		if !s.try(ctx) {
			break // no retries at shutdown: the OAP had its chance
		}
	}
	left := len(s.batch) + e.q.drain()
	if s.pending() {
		e.q.release(s.batch)
		s.batch, s.msgs = s.batch[:0], nil
		e.b.release()
	}
	if left > 0 {
		e.stats.dropped(dropShutdown, uint64(left))
		e.log.Warn("SkyWalking exporter stopped with unsent entries", "dropped", left)
	}
}

// sender owns the in-flight batch: taken from the queue's head, sent as one
// stream, and released only when the OAP acknowledged it.
type sender struct {
	e      *Exporter
	batch  []item
	msgs   []rawMessage // encoded once per batch, resent as is
	wait   time.Duration
	failed bool
}

func (s *sender) pending() bool { return len(s.batch) > 0 }

// sendNext sends the pending batch (or takes a new one) and, on failure,
// waits the backoff. It returns false when ctx ended.
func (s *sender) sendNext(ctx context.Context) bool {
	if s.try(ctx) {
		return true
	}
	t := time.NewTimer(s.wait)
	defer t.Stop()
	s.wait = min(2*s.wait, s.e.cfg.Backoff.Max)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		// Our backoff is the one that counts: do not let the channel's
		// own backoff add to it.
		s.e.conn.ResetConnectBackoff()
		return true
	}
}

// try makes one attempt at the pending batch and reports whether it was
// acknowledged.
func (s *sender) try(ctx context.Context) bool {
	e := s.e
	if !s.pending() {
		s.batch = e.q.take(s.batch)
		if !s.pending() {
			return true
		}
		s.msgs = e.b.assemble(s.batch, e.node)
	}
	if s.failed {
		e.stats.reconnects.Add(1)
	}
	start := time.Now()
	if written, err := s.stream(ctx); err != nil {
		e.b.enc.shared = true
		err = explainTLSMismatch(err, e.cfg.Insecure)
		e.stats.streamErrors.Add(1)
		if written == 0 {
			// Nothing reached the stream: resending counts nothing twice.
			if !s.failed {
				e.log.Warn("SkyWalking OAP stream failed; keeping the batch and retrying with backoff",
					"oap", e.cfg.OAP, "entries", len(s.batch), "retry_in", s.wait, "error", err)
			}
		} else {
			// The OAP may have processed the written messages already
			// and never rolls back: resending would count them twice.
			unacked, unsent := 0, 0
			for i, n := range e.b.enc.entries {
				if i < written {
					unacked += n
				} else {
					unsent += n
				}
			}
			e.stats.dropped(dropUnacknowledged, uint64(unacked))
			e.stats.dropped(dropPartialSend, uint64(unsent))
			e.log.Warn("SkyWalking OAP stream failed part-way; dropping the batch rather than counting it twice",
				"oap", e.cfg.OAP, "messages_written", written, "messages", len(s.msgs),
				"unacknowledged", unacked, "unsent", unsent, "retry_in", s.wait, "error", err)
			s.drop()
		}
		s.failed = true
		return false
	}
	if s.failed {
		e.log.Info("SkyWalking OAP stream recovered", "oap", e.cfg.OAP)
	}
	s.failed, s.wait = false, e.cfg.Backoff.Min
	e.stats.sent.Add(uint64(len(s.batch)))
	e.stats.messages.Add(uint64(len(s.msgs)))
	e.stats.streams.Add(1)
	e.log.Debug("SkyWalking batch acknowledged", "entries", len(s.batch), "messages", len(s.msgs), "took", time.Since(start))
	s.drop()
	return true
}

// plaintextReply is what Go's TLS client reports when the server answers a
// ClientHello in plaintext.
const plaintextReply = "first record does not look like a TLS handshake"

// explainTLSMismatch names the setting that fixes err when it is a TLS
// client talking to a plaintext OAP: SkyWalking's OAP serves gRPC without
// TLS on 11800 by default, so this is the first error most users meet.
func explainTLSMismatch(err error, insecure bool) error {
	if insecure || !strings.Contains(err.Error(), plaintextReply) {
		return err
	}
	return fmt.Errorf("%w (the OAP answers in plaintext, as SkyWalking's OAP does by default: "+
		"set oap.insecure: true, --oap-insecure, or the Helm value oap.tls.enabled=false; or enable TLS on the OAP)", err)
}

// drop ends the in-flight batch: acknowledged, or given up.
func (s *sender) drop() {
	s.e.q.release(s.batch)
	clear(s.batch)
	s.batch, s.msgs = s.batch[:0], nil
	s.e.b.release()
}

// yieldEvery is how many messages the sender sends before it lets other
// goroutines of the daemon run, when the daemon runs on one core.
const yieldEvery = 64

// writeBufferSize is the most gRPC's transport buffers before it writes to
// the OAP's socket: more than a batch of the default size (500 messages of
// 130-300 bytes with gRPC's and HTTP/2's headers), so that a batch sent
// while the transport's writer is busy leaves in one or two writes, not
// one per 32 KiB (gRPC's default). A write of a few KiB costs about as
// much as one of a hundred: fewer writes were about 0.1 us less per
// request in BenchmarkDaemonHTTP1Export (bpf/OVERHEAD.md). gRPC holds the
// buffer for the connection's life.
const writeBufferSize = 256 << 10

// stream sends the batch's messages on one collect stream and waits for the
// acknowledgement. On failure it also says how many messages SendMsg took
// (they may have reached the OAP).
func (s *sender) stream(ctx context.Context) (written int, err error) {
	e := s.e
	ctx, cancel := context.WithTimeout(ctx, e.cfg.SendTimeout)
	defer cancel()
	if e.cfg.Token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, AuthMetadataKey, e.cfg.Token)
	}
	st, err := collectStream(ctx, e.conn, e.codec)
	if err != nil {
		return 0, fmt.Errorf("opening collect stream: %w", err)
	}
	// A batch is hundreds of messages sent back to back. With the daemon
	// on one core (config maxProcs) the ring buffer's reader would wait
	// for the whole burst: let it run between slices of the batch
	// instead. On more cores it runs beside the sender, and a yield would
	// only hand gRPC's transport writer the core to write what it has
	// so far, several small writes per batch instead of one or two.
	yield := runtime.GOMAXPROCS(0) == 1
	for i := range s.msgs {
		if yield && i%yieldEvery == yieldEvery-1 {
			runtime.Gosched()
		}
		if err := st.SendMsg(&s.msgs[i]); err != nil {
			// The real error is the stream's status, which
			// CloseAndRecv returns; Send only reports io.EOF.
			_, rerr := closeAndRecv(st)
			return i, fmt.Errorf("sending message %d of %d: %w", i+1, len(s.msgs), errors.Join(err, rerr))
		}
	}
	if _, err := closeAndRecv(st); err != nil {
		return len(s.msgs), fmt.Errorf("waiting for the acknowledgement of %d messages: %w", len(s.msgs), err)
	}
	return 0, nil
}
