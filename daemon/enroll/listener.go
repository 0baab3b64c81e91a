package enroll

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultAllowedUIDs returns the peers admitted when ListenOptions.AllowedUIDs
// is empty: root only, since the container runtime runs CNI plugins as root.
// It is a function so no caller can change a shared default.
func DefaultAllowedUIDs() []uint32 { return []uint32{0} }

// ListenOptions configures Listen.
type ListenOptions struct {
	// Path of the unix socket. Its parent directory is created 0755.
	Path string
	// AllowedUIDs are the peer uids admitted; empty means DefaultAllowedUIDs.
	AllowedUIDs []uint32
	// Logger receives one line per refused peer; nil discards.
	Logger *slog.Logger
}

// Listener is a unix socket listener that admits only peers whose uid, read
// from the kernel with SO_PEERCRED, is in the allowed set. The socket file is
// also mode 0600; the credential check is what holds when the file mode is
// loosened by hand or the socket is reached through a bind mount.
//
// Refused connections are closed and counted, and never returned from Accept,
// so the gRPC server behind the listener never sees them.
type Listener struct {
	*net.UnixListener
	path    string
	allowed []uint32
	log     *slog.Logger
	refused atomic.Uint64
}

// Listen creates the enrollment socket. A stale socket file left by a daemon
// that died is removed; a socket another process still serves on is an error,
// as is a non-socket file at the path.
func Listen(opts ListenOptions) (*Listener, error) {
	if opts.Path == "" {
		return nil, errors.New("enroll socket path is empty")
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket dir: %w", err)
	}
	if err := removeStaleSocket(opts.Path); err != nil {
		return nil, err
	}
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: opts.Path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", opts.Path, err)
	}
	if err := os.Chmod(opts.Path, 0o600); err != nil {
		ul.Close()
		return nil, fmt.Errorf("chmod %s: %w", opts.Path, err)
	}
	l := &Listener{
		UnixListener: ul,
		path:         opts.Path,
		allowed:      slices.Clone(opts.AllowedUIDs),
		log:          opts.Logger,
	}
	if len(l.allowed) == 0 {
		l.allowed = DefaultAllowedUIDs()
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	return l, nil
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket; refusing to remove it", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%s is in use: is another weir-daemon running?", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return nil
}

// Accept returns the next connection from an allowed peer.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		cred, err := peerCred(c)
		if err != nil {
			l.refused.Add(1)
			l.log.Warn("refused enrollment connection: cannot read peer credentials", "error", err)
			c.Close()
			continue
		}
		if !slices.Contains(l.allowed, cred.Uid) {
			l.refused.Add(1)
			l.log.Warn("refused enrollment connection from a peer whose uid is not allowed",
				"uid", cred.Uid, "pid", cred.Pid, "allowedUIDs", l.allowed)
			c.Close()
			continue
		}
		return c, nil
	}
}

// Refused returns how many connections were refused so far.
func (l *Listener) Refused() uint64 { return l.refused.Load() }

// Path returns the socket path.
func (l *Listener) Path() string { return l.path }

func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("raw conn: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, fmt.Errorf("raw conn control: %w", err)
	}
	if credErr != nil {
		return nil, fmt.Errorf("getsockopt SO_PEERCRED: %w", credErr)
	}
	return cred, nil
}
