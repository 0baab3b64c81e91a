package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the servers it runs inside pods: the harness
// re-executes it (inside the pod's netns) with helperEnv set, and Main runs
// the helper instead of the tests. This keeps servers real processes in the
// pod's namespace, owned and reaped by the test, with no extra binary to
// build or tool to install.
const (
	helperEnv     = "WEIR_HARNESS_HELPER"
	helperAddrEnv = "WEIR_HARNESS_ADDR"
	helperNameEnv = "WEIR_HARNESS_NAME"

	// ReadyLine is printed by helpers once they accept connections.
	ReadyLine = "weir-harness-helper ready"
)

// Main is the TestMain body of every suite that runs helpers:
//
//	func TestMain(m *testing.M) { harness.Main(m) }
func Main(m *testing.M) {
	switch h := os.Getenv(helperEnv); h {
	case "":
		os.Exit(m.Run())
	case "http-server":
		if err := serveHTTP(os.Getenv(helperAddrEnv), os.Getenv(helperNameEnv)); err != nil {
			fmt.Fprintln(os.Stderr, "http-server helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", helperEnv, h)
		os.Exit(2)
	}
}

// HTTPGreeting is the body the http-server helper answers every request with.
func HTTPGreeting(name string) string { return "hello from " + name + "\n" }

func serveHTTP(addr, name string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(HTTPGreeting(name)))
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	fmt.Println(ReadyLine, ln.Addr())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// StartHTTPServer runs an HTTP server on port inside the pod (all addresses)
// that answers HTTPGreeting(p.Name), and waits until it listens. The suite
// must use harness.Main as its TestMain.
func (p *Pod) StartHTTPServer(t testing.TB, port int) *Process {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("locate test binary: %v", err)
	}
	cmd := p.Command(context.Background(), self)
	cmd.Env = append(os.Environ(),
		helperEnv+"=http-server",
		fmt.Sprintf("%s=:%d", helperAddrEnv, port),
		helperNameEnv+"="+p.Name,
	)
	proc := StartProcess(t, "http-server in "+p.Name, cmd)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := proc.WaitOutput(ctx, ReadyLine); err != nil {
		t.Fatal(err)
	}
	return proc
}
