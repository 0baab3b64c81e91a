package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultOutputLimit bounds how much of a child's combined output a Process
// keeps. Older bytes are discarded (and counted) so a chatty server in a long
// test cannot grow the test's memory without bound.
const DefaultOutputLimit = 1 << 20

// DefaultStopGrace is how long Stop waits after SIGTERM before SIGKILL.
const DefaultStopGrace = 5 * time.Second

// Process is a long-running child of the test. The harness keeps servers as
// direct children and always waits for them: PID 1 on the test machines
// does not reap orphans, so a process that is not waited for stays a zombie.
type Process struct {
	Name string

	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{}
	err  error // set before done is closed

	stopOnce sync.Once
	stopErr  error
}

// StartProcess starts cmd as a child of the test, capturing its stdout and
// stderr (bounded by DefaultOutputLimit), and registers a cleanup that stops
// it and, if the test failed, logs its output.
func StartProcess(t testing.TB, name string, cmd *exec.Cmd) *Process {
	t.Helper()
	p, err := startProcess(name, cmd, DefaultOutputLimit)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Logf("stop %s: %v", name, err)
		}
		if t.Failed() {
			t.Logf("output of %s (%s):\n%s", name, strings.Join(cmd.Args, " "), p.Output())
		}
	})
	return p
}

func startProcess(name string, cmd *exec.Cmd, limit int) (*Process, error) {
	out := newTailBuffer(limit)
	if cmd.Stdout == nil {
		cmd.Stdout = out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = out
	}
	// Own process group: Stop can then signal helpers the child started
	// (ip netns exec → the real server) without touching the test itself.
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("exec %s: %w", cmd.Path, err)
	}
	p := &Process{Name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid returns the child's process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and its wait error.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Output returns the captured output (the last DefaultOutputLimit bytes).
func (p *Process) Output() string { return p.out.String() }

// WaitOutput waits until the captured output contains substr, the process
// exits, or ctx ends.
func (p *Process) WaitOutput(ctx context.Context, substr string) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if strings.Contains(p.out.String(), substr) {
			return nil
		}
		select {
		case <-p.done:
			if strings.Contains(p.out.String(), substr) {
				return nil
			}
			return fmt.Errorf("%s exited (%v) before printing %q; output:\n%s", p.Name, p.err, substr, p.Output())
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to print %q: %w; output:\n%s", p.Name, substr, ctx.Err(), p.Output())
		case <-tick.C:
		}
	}
}

// Stop sends SIGTERM to the process group, waits up to DefaultStopGrace, then
// sends SIGKILL, and always waits for the exit. It returns nil when the
// process exited on its own or because of the signal.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() { p.stopErr = p.stop(DefaultStopGrace) })
	return p.stopErr
}

func (p *Process) stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	pgid := -p.cmd.Process.Pid
	if err := syscall.Kill(pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("SIGTERM %s: %w", p.Name, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	if err := syscall.Kill(pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("SIGKILL %s: %w", p.Name, err)
	}
	<-p.done
	return fmt.Errorf("%s ignored SIGTERM for %v and was killed", p.Name, grace)
}

// tailBuffer is an io.Writer keeping the last limit bytes written.
type tailBuffer struct {
	mu      sync.Mutex
	buf     []byte
	limit   int
	dropped int64
}

func newTailBuffer(limit int) *tailBuffer { return &tailBuffer{limit: limit} }

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.limit; over > 0 {
		b.dropped += int64(over)
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped > 0 {
		return fmt.Sprintf("[%d earlier bytes dropped]\n%s", b.dropped, b.buf)
	}
	return string(b.buf)
}

// run executes a short command and returns its combined output, with the
// command line in the error so failures are self-explanatory.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// fileExists reports whether path exists.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
