package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Binaries locates the programs the suites execute. The Makefile passes the
// directories through the environment so that CI and developers test exactly
// what `make cni-plugins` built, never a stale copy from somewhere on PATH.
type Binaries struct {
	Repo    string // repository root (directory holding go.mod)
	Bin     string // WEIR_BIN_DIR: weir, weir-daemon, weirctl, weir-install
	CNIBin  string // WEIR_CNI_BIN_DIR: bridge, host-local, portmap, loopback, weir
	ToolBin string // WEIR_TOOL_BIN_DIR: crictl and other test tools
}

// Path returns the absolute path of a program in the Bin directory.
func (b Binaries) Path(name string) string { return filepath.Join(b.Bin, name) }

// CNIPath returns the absolute path of a plugin in the CNI bin directory.
func (b Binaries) CNIPath(name string) string { return filepath.Join(b.CNIBin, name) }

// FindBinaries resolves the binary directories from WEIR_BIN_DIR,
// WEIR_CNI_BIN_DIR and WEIR_TOOL_BIN_DIR, defaulting to <repo>/bin,
// <repo>/bin/cni and <repo>/bin/tools, and fails the test with a clear
// instruction when a required program is missing.
func FindBinaries(t testing.TB, requireBin, requireCNI []string) Binaries {
	t.Helper()
	repo, err := RepoRoot()
	if err != nil {
		t.Fatalf("locate repository root: %v", err)
	}
	b := Binaries{
		Repo:    repo,
		Bin:     envDir("WEIR_BIN_DIR", filepath.Join(repo, "bin")),
		CNIBin:  envDir("WEIR_CNI_BIN_DIR", filepath.Join(repo, "bin", "cni")),
		ToolBin: envDir("WEIR_TOOL_BIN_DIR", filepath.Join(repo, "bin", "tools")),
	}
	var missing []string
	for _, n := range requireBin {
		if !isExecutable(b.Path(n)) {
			missing = append(missing, b.Path(n))
		}
	}
	for _, n := range requireCNI {
		if !isExecutable(b.CNIPath(n)) {
			missing = append(missing, b.CNIPath(n))
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing test binaries %v: run `make cni-plugins` first (or set WEIR_BIN_DIR / WEIR_CNI_BIN_DIR)", missing)
	}
	return b
}

func envDir(key, def string) string {
	if v := os.Getenv(key); v != "" {
		if abs, err := filepath.Abs(v); err == nil {
			return abs
		}
		return v
	}
	return def
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// RepoRoot walks up from the working directory (go test runs a package's
// tests in its own directory) to the directory holding go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("get working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod found above the working directory")
		}
		dir = parent
	}
}

// RequireRoot skips the test when not running as root. The end-to-end suites
// create network namespaces, bridges and iptables rules; there is no honest
// way to run them unprivileged, and CI runs them as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("end-to-end suite needs root (netns, bridges, iptables); CI runs it as root")
	}
}

// Kernel filesystems the daemon and later suites rely on. They are not
// mounted at boot on every machine Weir is tested on.
var kernelFS = []struct {
	path, fstype string
	magic        int64
}{
	{"/sys/fs/bpf", "bpf", unix.BPF_FS_MAGIC},
	{"/sys/kernel/tracing", "tracefs", unix.TRACEFS_MAGIC},
}

// MountKernelFS mounts bpffs and tracefs where they are absent. They are left
// mounted afterwards on purpose: they are shared, machine-wide resources that
// the daemon and other concurrently running suites expect to find, and
// mounting them changes nothing else on the host.
func MountKernelFS(t testing.TB) {
	t.Helper()
	for _, fs := range kernelFS {
		var st unix.Statfs_t
		if err := unix.Statfs(fs.path, &st); err == nil && int64(st.Type) == fs.magic {
			continue
		}
		if err := os.MkdirAll(fs.path, 0o755); err != nil {
			t.Fatalf("create mount point %s: %v", fs.path, err)
		}
		if err := unix.Mount(fs.fstype, fs.path, fs.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			t.Fatalf("mount %s on %s: %v", fs.fstype, fs.path, err)
		}
	}
}
