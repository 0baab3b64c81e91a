package skywalking

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	alv3 "skywalking.apache.org/repo/goapi/collect/ebpf/accesslog/v3"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/protocol/record"
)

// receiver is an in-process OAP: it implements the goapi server interface on
// a loopback port and keeps the streams it acknowledged (a stream that broke
// before the client closed it is discarded, as the real OAP's would not be
// acknowledged either).
type receiver struct {
	alv3.UnimplementedEBPFAccessLogServiceServer

	t     *testing.T
	addr  string
	creds credentials.TransportCredentials

	mu      sync.Mutex
	srv     *grpc.Server
	acked   [][]*alv3.EBPFAccessLogMessage
	tokens  []string
	started int
}

func newReceiver(t *testing.T, creds credentials.TransportCredentials) *receiver {
	t.Helper()
	r := &receiver{t: t, creds: creds}
	r.start("127.0.0.1:0")
	t.Cleanup(r.stop)
	return r
}

func (r *receiver) start(addr string) {
	r.t.Helper()
	var lis net.Listener
	var err error
	// Re-binding the port a moment ago served can race the old socket's
	// teardown; retry briefly.
	for i := 0; i < 50; i++ {
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatalf("receiver listen %s: %v", addr, err)
	}
	var opts []grpc.ServerOption
	if r.creds != nil {
		opts = append(opts, grpc.Creds(r.creds))
	}
	srv := grpc.NewServer(opts...)
	alv3.RegisterEBPFAccessLogServiceServer(srv, r)
	r.mu.Lock()
	r.srv, r.addr = srv, lis.Addr().String()
	r.started++
	r.mu.Unlock()
	go srv.Serve(lis) //nolint:errcheck // returns when stopped
}

func (r *receiver) stop() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

func (r *receiver) Collect(st alv3.EBPFAccessLogService_CollectServer) error {
	if md, ok := metadata.FromIncomingContext(st.Context()); ok {
		r.mu.Lock()
		r.tokens = append(r.tokens, md.Get("authentication")...)
		r.mu.Unlock()
	}
	var msgs []*alv3.EBPFAccessLogMessage
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	// Record before acknowledging: once the client has the
	// acknowledgement, a test may look for the data.
	r.mu.Lock()
	i := len(r.acked)
	r.acked = append(r.acked, msgs)
	r.mu.Unlock()
	if err := st.SendAndClose(&alv3.EBPFAccessLogDownstream{}); err != nil {
		r.mu.Lock()
		r.acked[i] = nil // not acknowledged after all
		r.mu.Unlock()
		return err
	}
	return nil
}

func (r *receiver) streams() [][]*alv3.EBPFAccessLogMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]*alv3.EBPFAccessLogMessage
	for _, s := range r.acked {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

func (r *receiver) tokenList() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.tokens...)
}

// counts counts kernel logs and protocol logs over acknowledged
// streams.
func (r *receiver) counts() (kernel, protocol int) {
	for _, s := range r.streams() {
		for _, m := range s {
			kernel += len(m.KernelLogs)
			if m.ProtocolLog != nil {
				protocol++
			}
		}
	}
	return kernel, protocol
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var testBoot = time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)

// testConfig is a fast, deterministic configuration pointed at addr.
func testConfig(addr string) Config {
	return Config{
		OAP:           addr,
		Insecure:      true,
		NodeName:      "node-a",
		Cluster:       "",
		BootTime:      testBoot,
		NetInterfaces: []NetInterface{{Name: "lo", Index: 1, MTU: 65536}, {Name: "eth0", Index: 2, MTU: 1500}},
		FlushPeriod:   20 * time.Millisecond,
		BatchSize:     50,
		QueueSize:     10000,
		Backoff:       Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond},
		SendTimeout:   5 * time.Second,
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Logf("%s", p); return len(p), nil }

// runExporter starts e.Run and stops it at cleanup, failing the test if Run
// returned an error.
func runExporter(t *testing.T, e *Exporter) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newExporter(t *testing.T, cfg Config) *Exporter {
	t.Helper()
	e, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

// Synthetic flow identities.
var (
	podFrontend = &flow.Pod{ID: 1, Namespace: "shop", Name: "frontend-7d9f", UID: "uid-1", Service: "frontend"}
	podCatalog  = &flow.Pod{ID: 2, Namespace: "shop", Name: "catalog-5c4b", UID: "uid-2", Service: "catalog"}
	podSystem   = &flow.Pod{ID: 3, Namespace: "kube-system", Name: "coredns-1", UID: "uid-3", Service: "kube-dns"}
)

const containerID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// conn builds a connection of a monitored process in local. The local port
// identifies the connection in assertions.
func conn(id event.ConnID, role event.Role, local *flow.Pod, localPort uint16, remote netip.AddrPort, remotePod *flow.Pod) *flow.Connection {
	return &flow.Connection{
		ID:      id,
		Role:    role,
		Local:   flow.Peer{Addr: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), localPort), Pod: local},
		Remote:  flow.Peer{Addr: remote, Pod: remotePod},
		Process: flow.Process{PID: 42, Comm: "nginx", ContainerID: containerID},
	}
}

// seqOp is a kernel operation whose Start timestamp carries a sequence
// number, so deliveries can be checked for loss and duplication.
func seqOp(c *flow.Connection, kind flow.OpKind, seq uint64) *flow.KernelOp {
	return &flow.KernelOp{Conn: c, Kind: kind, Syscall: event.SysWrite, Start: event.Timestamp(seq), End: event.Timestamp(seq + 1), Success: true}
}

func exchange(c *flow.Connection, proto record.Protocol, method, path string, status int, ops ...*flow.KernelOp) *flow.Exchange {
	return &flow.Exchange{Conn: c, Ops: ops, Record: &record.Record{
		Protocol: proto, Method: method, Path: path, Host: "catalog", Status: status,
		ReqHeaderBytes: 100, ReqBodyBytes: 10, RespHeaderBytes: 200, RespBodyBytes: 2000,
		ReqStart: 1000, ReqEnd: 1100, RespStart: 1500, RespEnd: 2500,
	}}
}

// opStart returns the Start offset of any kernel log.
func opStart(l *alv3.AccessLogKernelLog) uint64 {
	switch o := l.Operation.(type) {
	case *alv3.AccessLogKernelLog_Connect:
		return o.Connect.StartTime.GetOffset().GetOffset()
	case *alv3.AccessLogKernelLog_Accept:
		return o.Accept.StartTime.GetOffset().GetOffset()
	case *alv3.AccessLogKernelLog_Close:
		return o.Close.StartTime.GetOffset().GetOffset()
	case *alv3.AccessLogKernelLog_Read:
		return o.Read.StartTime.GetOffset().GetOffset()
	case *alv3.AccessLogKernelLog_Write:
		return o.Write.StartTime.GetOffset().GetOffset()
	}
	return 0
}

// testPKI makes a self-signed CA and a server certificate for "oap.test"
// and 127.0.0.1 signed by it. It returns the server's TLS credentials and
// the path of the CA's PEM file in a temporary directory.
func testPKI(t *testing.T) (credentials.TransportCredentials, string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weir test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "oap.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"oap.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}
	return credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}), caFile
}
