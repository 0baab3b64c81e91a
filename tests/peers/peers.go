package peers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weirnet/weir/tests/harness"
)

// envPeer, when set in a test binary's environment, turns the binary into a
// peer: Main runs the command in os.Args[1:] instead of the tests.
const envPeer = "WEIR_PEER"

// ReadyLine is printed by server peers once they accept connections,
// followed by the address they listen on.
const ReadyLine = "weir-peer ready"

// DefaultRunTimeout bounds a client peer run by Run when the context has no
// earlier deadline.
const DefaultRunTimeout = 60 * time.Second

// maxClientOutput bounds the stdout of a client peer kept by Run.
const maxClientOutput = 16 << 20

// command is one peer program.
type command struct {
	usage string
	run   func(ctx context.Context, args []string, stdout io.Writer) error
}

func commands() map[string]command {
	return map[string]command{
		"http-server":      {"serve HTTP/1.1 (and h2c with -h2c)", runHTTPServer},
		"http-client":      {"send HTTP requests, report results and per-connection bytes", runHTTPClient},
		"grpc-server":      {"serve grpc.testing.TestService", runGRPCServer},
		"grpc-client":      {"call grpc.testing.TestService: unary, streaming, error status", runGRPCClient},
		"pipeline":         {"write pipelined HTTP/1.1 requests in one write, read the responses", runPipeline},
		"short":            {"one connection: connect, send one request, read to EOF, exit", runShort},
		"dial":             {"connect once and report the outcome (for refused connects)", runDial},
		"vectored":         {"one request written with writev(2), the response read with readv(2)", runVectored},
		"slow-body-server": {"HTTP/1.1 whose /slow body is request text written slowly, piece by piece", runSlowBodyServer},
		"slow-body-client": {"fetch /slow on one connection, then make requests on it", runSlowBodyClient},
		"churn-server":     {"HTTP/1.1 and h2c: /bytes/N, /chunked/N, /status/C, echoing x-churn-* headers", runChurnServer},
		"churn-client":     {"many requests on one connection, churning HPACK with changing headers", runChurnClient},
		"grpc-long-client": {"one gRPC connection busy until N bytes: unary, streaming, errors, aborts", runGRPCLongClient},
		"echo-server":      {"echo every read back in one write (plain TCP)", runEchoServer},
		"echo-client":      {"write messages on one connection and read each echo; report the calls", runEchoClient},
	}
}

// Main is the TestMain body of suites that run peers. It also dispatches the
// harness's own helpers, so a suite calls only this:
//
//	func TestMain(m *testing.M) { peers.Main(m) }
func Main(m *testing.M) {
	if os.Getenv(envPeer) == "" {
		harness.Main(m)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := Run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "weir-peer:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Run executes one peer command. args[0] names the command; the rest are
// its flags. It is exported so a standalone binary can wrap it.
func Run(ctx context.Context, args []string, stdout io.Writer) error {
	cmds := commands()
	if len(args) == 0 {
		names := make([]string, 0, len(cmds))
		for n, c := range cmds {
			names = append(names, fmt.Sprintf("  %-12s %s", n, c.usage))
		}
		sort.Strings(names)
		return fmt.Errorf("no peer command given; commands:\n%s", strings.Join(names, "\n"))
	}
	c, ok := cmds[args[0]]
	if !ok {
		return fmt.Errorf("unknown peer command %q", args[0])
	}
	if err := c.run(ctx, args[1:], stdout); err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	return nil
}

// newFlags returns a flag set that reports errors instead of exiting, so a
// bad peer command line becomes a clear test failure.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// Runner places a command: a pod (harness.Pod), a bare network namespace
// (harness.NetNS) or the host (harness.Host).
type Runner interface {
	Command(ctx context.Context, argv ...string) *exec.Cmd
}

// Command returns a command that runs the peer args inside where.
func Command(ctx context.Context, where Runner, args ...string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("locate test binary: %w", err)
	}
	cmd := where.Command(ctx, append([]string{self}, args...)...)
	cmd.Env = append(os.Environ(), envPeer+"=1")
	return cmd, nil
}

// Start runs a server peer inside where as a child of the test and waits
// until it prints ReadyLine. It is stopped and reaped in t.Cleanup.
func Start(t testing.TB, where Runner, name string, args ...string) *harness.Process {
	t.Helper()
	cmd, err := Command(context.Background(), where, args...)
	if err != nil {
		t.Fatal(err)
	}
	p := harness.StartProcess(t, name, cmd)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := p.WaitOutput(ctx, ReadyLine); err != nil {
		t.Fatal(err)
	}
	return p
}

// RunJSON runs a client peer inside where to completion and decodes the JSON
// report it prints as the last line of stdout into v.
func RunJSON(ctx context.Context, where Runner, v any, args ...string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRunTimeout)
		defer cancel()
	}
	cmd, err := Command(ctx, where, args...)
	if err != nil {
		return err
	}
	var stdout, stderr limitedBuffer
	stdout.limit, stderr.limit = maxClientOutput, 64<<10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("peer %v: %w; stderr:\n%s", args, err, stderr.String())
	}
	out := bytes.TrimSpace(stdout.Bytes())
	if i := bytes.LastIndexByte(out, '\n'); i >= 0 {
		out = out[i+1:]
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("peer %v: decode report %q: %w", args, out, err)
	}
	return nil
}

// limitedBuffer keeps at most limit bytes and fails the write beyond that,
// so a runaway peer is reported rather than exhausting the test's memory.
type limitedBuffer struct {
	bytes.Buffer
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.limit {
		return 0, errors.New("peer output exceeds its bound")
	}
	return b.Buffer.Write(p)
}

// printReady announces a listening server.
func printReady(w io.Writer, addr string) {
	fmt.Fprintln(w, ReadyLine, addr)
}

// writeReport prints v as the client's one-line JSON report.
func writeReport(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
