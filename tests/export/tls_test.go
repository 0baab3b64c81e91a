package export

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	alv3 "skywalking.apache.org/repo/goapi/collect/ebpf/accesslog/v3"

	"github.com/weirnet/weir/tests/harness"
	"github.com/weirnet/weir/tests/peers"
)

// TestTLSExportedWithItsProtocolAndTLSMode: HTTPS between two enrolled
// pods (nginx and one-shot curl processes, OpenSSL) reaches the OAP as
// HTTP/1 protocol logs, one per exchange and side, on connections sent
// with tlsMode TLS and protocol HTTP_1: what SkyWalking's own agents send
// for a decrypted TLS connection.
func TestTLSExportedWithItsProtocolAndTLSMode(t *testing.T) {
	harness.RequireRoot(t)
	bins := harness.FindBinaries(t, needBin, needCNI)
	recv := newReceiver(t)
	d := harness.StartDaemon(t, bins, harness.DaemonOptions{ExtraArgs: []string{
		"--oap", recv.addr, "--oap-insecure", "--oap-flush-period", "200ms", "--cluster", cluster, "--cri-socket", "", "--bpf.tls",
	}})
	net := harness.NewNetwork(t, bins, harness.NetworkOptions{
		Weir: &harness.WeirConf{DaemonSocket: d.Socket, SpoolDir: d.SpoolDir, Timeout: "2s"},
	})
	web := net.AddPod(t, harness.PodSpec{Namespace: "shop", Name: "web"})
	api := net.AddPod(t, harness.PodSpec{Namespace: "data", Name: "api"})
	tlsAddr := netip.AddrPortFrom(api.IPv4(), 443)
	peers.StartNginx(t, api, peers.NginxOptions{Listen: netip.AddrPortFrom(api.IPv4(), 80).String(), ListenTLS: tlsAddr.String()})

	const n = 5
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var paths []string
	for i := range n {
		p := fmt.Sprintf("/tls-export/%d", i)
		paths = append(paths, p)
		if out, err := web.Exec(ctx, "curl", "-sS", "-k", "--http1.1", "-o", "/dev/null", "https://"+tlsAddr.String()+p); err != nil {
			t.Fatalf("curl %s: %v\n%s", p, err, out)
		}
	}
	var items []item
	err := harness.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		items, _ = flatten(d.NodeName, recv.streams())
		ex := exchanges(items)
		for _, p := range paths {
			if len(ex[exchangeKey{"web", "client", p}]) == 0 || len(ex[exchangeKey{"api", "server", p}]) == 0 {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("the receiver did not get a protocol log of every HTTPS exchange on both sides: %v", err)
	}
	time.Sleep(settle)
	ex := exchanges(mustFlatten(t, d.NodeName, recv.streams()))
	for _, p := range paths {
		for _, side := range []struct{ pod, role string }{{"web", "client"}, {"api", "server"}} {
			got := ex[exchangeKey{side.pod, side.role, p}]
			if len(got) != 1 {
				t.Errorf("%s %s %s: %d protocol logs, want 1", side.pod, side.role, p, len(got))
				continue
			}
			c := got[0].conn
			if c.GetTlsMode() != alv3.AccessLogConnectionTLSMode_TLS || c.GetProtocol() != alv3.AccessLogProtocolType_HTTP_1 {
				t.Errorf("%s %s %s: connection tlsMode %v protocol %v, want TLS HTTP_1", side.pod, side.role, p, c.GetTlsMode(), c.GetProtocol())
			}
			if h := got[0].http; h.GetResponse().GetStatusCode() != 200 || h.GetVersion() != alv3.AccessLogHTTPProtocolVersion_HTTP1 {
				t.Errorf("%s %s %s: status %d version %v, want 200 HTTP1", side.pod, side.role, p, h.GetResponse().GetStatusCode(), h.GetVersion())
			}
		}
	}
}
