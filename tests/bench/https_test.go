package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/weirnet/weir/tests/peers"
)

func TestOnlySelectsNamedPartsAndRejectsUnknownOnes(t *testing.T) {
	only, err := parseOnly("https, grpc")
	if err != nil {
		t.Fatal(err)
	}
	c := benchConfig{Only: only}
	for part, want := range map[string]bool{"https": true, "grpc": true, "http1": false, "h2c": false, "unrelated": false, "paced": false, "conns": false} {
		if c.runs(part) != want {
			t.Errorf("WEIR_BENCH_ONLY=\"https, grpc\": runs(%q) = %v, want %v", part, !want, want)
		}
	}
	if all, err := parseOnly(" "); err != nil || all != nil {
		t.Fatalf("empty WEIR_BENCH_ONLY = %v, %v; want every part (nil)", all, err)
	}
	if !(benchConfig{}).runs("paced") {
		t.Error("no WEIR_BENCH_ONLY: paced does not run")
	}
	if _, err := parseOnly("https,tls"); err == nil || !strings.Contains(err.Error(), `"tls"`) {
		t.Errorf("unknown part accepted or not named: %v", err)
	}
}

func TestTLSScenarioRunsOnlyWithoutTheDaemonAndWithTLSCapture(t *testing.T) {
	tls, plain := &Scenario{TLS: true}, &Scenario{}
	for _, v := range []variant{baseline, withWeir, kernelOnly, hooksOnly, hooksOnlySyscall, withWeirTLS} {
		if got, want := tls.runsIn(v), v == baseline || v == withWeirTLS; got != want {
			t.Errorf("TLS scenario in variant %d: runs %v, want %v", v, got, want)
		}
		if got, want := plain.runsIn(v), v != withWeirTLS; got != want {
			t.Errorf("cleartext scenario in variant %d: runs %v, want %v", v, got, want)
		}
	}
}

// The generated configuration is checked by nginx itself (nginx -t), with
// a real certificate, and pins TLS 1.3 and ALPN h2 on the HTTPS port.
func TestNginxConfigServesHTTPSWithTLS13AndH2(t *testing.T) {
	dir := t.TempDir()
	cert, key := peers.SelfSignedCert(t, dir)
	conf := nginxConfig(dir, cert, key)
	if strings.Contains(conf, "{{") {
		t.Fatalf("placeholder left in the configuration:\n%s", conf)
	}
	for _, want := range []string{
		fmt.Sprintf("listen %d ssl http2;", httpsPort),
		"ssl_protocols TLSv1.3;",
		"ssl_certificate " + cert + ";",
		"ssl_certificate_key " + key + ";",
		fmt.Sprintf("listen %d;", httpPort),
		fmt.Sprintf("listen %d http2;", h2cPort),
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("configuration lacks %q:\n%s", want, conf)
		}
	}
	if _, err := exec.LookPath("nginx"); err != nil {
		t.Skip("nginx not on PATH: the configuration's syntax is not checked (make bench needs nginx anyway)")
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nginx", "-t", "-e", "stderr", "-p", dir, "-c", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "test is successful") {
		t.Fatalf("nginx -t rejects the configuration: %v\n%s", err, out)
	}
}

func TestH2loadTLSReadsProtocolAndALPN(t *testing.T) {
	out := "starting benchmark...\nspawning thread #0: 16 total client(s). 0 total requests\n" +
		"TLS Protocol: TLSv1.3\nCipher: TLS_AES_256_GCM_SHA384\nServer Temp Key: X25519 253 bits\nApplication protocol: h2\nprogress: 10% done\n"
	if proto, alpn := H2loadTLS(out); proto != "TLSv1.3" || alpn != "h2" {
		t.Fatalf("H2loadTLS = %q, %q; want TLSv1.3, h2", proto, alpn)
	}
	if proto, alpn := H2loadTLS("Application protocol: h2c\n"); proto != "" || alpn != "h2c" {
		t.Fatalf("cleartext run: H2loadTLS = %q, %q; want \"\", h2c", proto, alpn)
	}
}

// An HTTPS scenario's throughput, latency and CPU rows carry no target; its
// records row keeps 1.000, and the report says which daemon flags it ran.
func TestHTTPSRowsAreReportedWithoutTargets(t *testing.T) {
	run := func(rps float64, p99 time.Duration) LoadResult {
		return LoadResult{Throughput: rps, Requests: int64(rps) * 10, Duration: 10 * time.Second, P50: p99 / 2, P99: p99}
	}
	w := WeirRun{Load: run(5000, 8*time.Millisecond), CPU: 2 * time.Second, HWM: 60 << 20, Records: 100_000, Capturer: true}
	r := &Report{Started: time.Now(), Rounds: 1, Duration: 10 * time.Second, TLSArgs: []string{"--bpf.tls"},
		Scenarios: []*Scenario{{Name: "HTTPS h2 over TLS 1.3 (h2load -c16 -m10 -D 10s)", Short: "HTTPS", TLS: true, Reported: true,
			Base: []LoadResult{run(10000, 4*time.Millisecond)}, Weir: []WeirRun{w}}}}
	md := r.Markdown()
	mdHas(t, md, md,
		"`--bpf.tls`",
		"| HTTPS h2 over TLS 1.3 (h2load -c16 -m10 -D 10s) throughput | 10000 req/s | 5000 req/s | 0.500 | — |  |",
		"| HTTPS p99 latency | 4.000 ms | 8.000 ms | 2.000 | — |  |",
		"| HTTPS daemon CPU per 10k requests | — | 0.400 CPU-s | — | — |  |",
		"| HTTPS records seen / (2 × requests made) | — | 100000 / 100000 | 1.000 | 1.000 | yes |",
	)
}

func TestBPFDeltaKeepsUprobesBeyondTheTopAndCountsTheirRuns(t *testing.T) {
	after := map[ebpf.ProgramID]progRun{
		1: {name: "on_sock_send", runtime: 9000, runs: 30},
		2: {name: "on_sock_recv", runtime: 8000, runs: 30},
		3: {name: "ssl_write_ret", runtime: 500, runs: 20, uprobe: true},
		4: {name: "ssl_read", runtime: 400, runs: 40, uprobe: true},
		5: {name: "on_dev_xmit", runtime: 600, runs: 10},
	}
	total, top, uprobes := bpfDelta(nil, after, 10, 2)
	if total != 1850 {
		t.Fatalf("total = %v per request, want 1.85µs", total)
	}
	if uprobes != 6 {
		t.Fatalf("uprobe runs = %v per request, want 6 ((20+40)/10)", uprobes)
	}
	var names []string
	for _, p := range top {
		names = append(names, p.Name)
	}
	if got := strings.Join(names, ","); got != "on_sock_send,on_sock_recv,ssl_write_ret,ssl_read" {
		t.Fatalf("programs shown = %s, want the top 2 then every uprobe, not on_dev_xmit", got)
	}
	if !top[2].Uprobe || top[2].RunsPerReq != 2 {
		t.Fatalf("ssl_write_ret = %+v, want a uprobe at 2 runs per request", top[2])
	}
}

func TestUprobeNotesEstimateTheTrapCostAgainstH2c(t *testing.T) {
	costs := []Cost{
		{Scenario: "HTTP/2", BaseCPU: 30 * time.Microsecond, WeirCPU: 50 * time.Microsecond, BPF: 10 * time.Microsecond, Daemon: 5 * time.Microsecond},
		{Scenario: "HTTPS", BaseCPU: 40 * time.Microsecond, WeirCPU: 80 * time.Microsecond, BPF: 12 * time.Microsecond, Daemon: 8 * time.Microsecond, UprobeRuns: 4},
	}
	// rest: h2c 5 µs, HTTPS 20 µs: 15 µs more over 4 uprobe runs.
	notes := uprobeNotes(costs)
	if len(notes) != 1 || !strings.Contains(notes[0], "HTTPS: 4.00 uprobe program runs per request") ||
		!strings.Contains(notes[0], "by 15.00 µs per request, ≈ 3.75 µs per uprobe run") {
		t.Fatalf("notes = %q", notes)
	}
	if n := uprobeNotes(costs[1:]); len(n) != 1 || strings.Contains(n[0], "≈") {
		t.Fatalf("without an h2c cost the note estimates nothing: %q", n)
	}
}
