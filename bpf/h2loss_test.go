package bpf

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestH2LoadCountersByReason is a measurement, not an assertion: h2load
// (h2c, prior knowledge) against nginx across a veth pair, both netns
// enrolled, the reader draining the ring as the daemon's would; it logs
// every kernel counter (weir_bpf_events_lost_total's reasons) that moved,
// so a loss seen in make bench can be told by its reason. Root, real eBPF,
// nginx and h2load; runs when WEIR_BPF_H2LOAD_COUNTERS=1.
func TestH2LoadCountersByReason(t *testing.T) {
	measurement(t, "WEIR_BPF_H2LOAD_COUNTERS", "nginx", "h2load")
	client, server := newNetns(t), newNetns(t)
	vethPair(t, client, server)
	dir := t.TempDir()
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %s/nginx.pid;
error_log stderr error;
events { worker_connections 1024; }
http {
	access_log off;
	server {
		listen 10.254.0.2:8080 http2;
		location / { return 200 "hello world\n"; }
	}
}
`, dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	var nginx *exec.Cmd
	wait(t, in(server, func() error {
		nginx = exec.Command("nginx", "-c", conf, "-p", dir)
		nginx.Stderr = os.Stderr
		return nginx.Start()
	}), 5*time.Second)
	t.Cleanup(func() { nginx.Process.Kill(); nginx.Wait() })
	time.Sleep(300 * time.Millisecond)

	c, err := Load(Config{}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, ns := range []*testNetns{client, server} {
		if err := c.Enroll(ns.ino, uint32(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, &recorder{}) }()
	defer func() { cancel(); <-done }()

	before, err := c.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-c4", "-n20000", "-m10"},
		{"-c16", "-n20000", "-m10"},
		{"-c1", "-n20000", "-m10"},
		{"-c2", "-n20000", "-m10", "--rps=5000"},
	} {
		var out []byte
		wait(t, in(client, func() error {
			var err error
			out, err = exec.Command("h2load", append(args, "http://10.254.0.2:8080/")...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("h2load: %v: %s", err, out)
			}
			return nil
		}), 60*time.Second)
		time.Sleep(200 * time.Millisecond)
		for name, ns := range map[string]*testNetns{"client": client, "server": server} {
			// TCP receive-queue events that make skbs the receive
			// path never stamped (collapsed, pruned, out of order).
			wait(t, in(ns, func() error {
				out, err := exec.Command("nstat", "-s", "TcpExtTCPRcvCollapsed", "TcpExtPruneCalled",
					"TcpExtTCPOFOQueue", "TcpExtTCPBacklogCoalesce").CombinedOutput()
				t.Logf("h2load %v: %s: %s", args, name, strings.Join(strings.Fields(string(out)), " "))
				return err
			}), 5*time.Second)
		}
		after, err := c.Counters()
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range after {
			if d := v - before[name]; d != 0 {
				t.Logf("h2load %v: %s +%d", args, name, d)
			}
		}
		before = after
	}
}
