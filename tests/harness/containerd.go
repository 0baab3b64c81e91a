package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// CrictlModule is the cri-tools version the CRI suite drives containerd
// with. It is installed into WEIR_TOOL_BIN_DIR with `go install`, outside
// go.mod: it is a test tool, not a dependency of Weir.
const CrictlModule = "sigs.k8s.io/cri-tools/cmd/crictl@v1.34.0"

// Bounds of the CRI harness.
const (
	crictlInstallTimeout = 5 * time.Minute
	containerdReadyWait  = 30 * time.Second
	crictlCallTimeout    = 60 * time.Second
)

// EnsureCrictl returns the path of crictl in WEIR_TOOL_BIN_DIR, building it
// there first if absent (about a minute on a cold module cache).
func EnsureCrictl(t testing.TB, bins Binaries) string {
	t.Helper()
	path := filepath.Join(bins.ToolBin, "crictl")
	if isExecutable(path) {
		return path
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("crictl missing from %s and no go toolchain to build it: %v", bins.ToolBin, err)
	}
	if err := os.MkdirAll(bins.ToolBin, 0o755); err != nil {
		t.Fatalf("create tool dir: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), crictlInstallTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "install", CrictlModule)
	// Outside the module: `go install pkg@version` must not touch go.mod.
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOBIN="+bins.ToolBin, "CGO_ENABLED=0")
	t.Logf("building %s into %s", CrictlModule, bins.ToolBin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install %s: %v\n%s", CrictlModule, err, out)
	}
	return path
}

// PauseImageRef is the name the locally built sandbox image is imported as.
const PauseImageRef = "weir.test/pause:1"

// BuildPauseImage compiles tests/harness/pause statically and packs it as a
// single-layer OCI archive, returning the archive path. The image's
// entrypoint is /pause.
func BuildPauseImage(t testing.TB, bins Binaries) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "pause")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./tests/harness/pause")
	cmd.Dir = bins.Repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build pause binary: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "pause.oci.tar")
	if err := WriteOCIArchive(archive, PauseImageRef, []string{"/pause"},
		[]ImageFile{{Path: "pause", Mode: 0o755, Data: data}}); err != nil {
		t.Fatalf("write pause image: %v", err)
	}
	return archive
}

// ContainerdOptions configures a private containerd.
type ContainerdOptions struct {
	CNIBinDir    string // CRI cni.bin_dir
	CNIConfDir   string // CRI cni.conf_dir (a Network's ConfDir)
	SandboxImage string // default PauseImageRef
	Crictl       string // path from EnsureCrictl
}

// Containerd is a private containerd 1.6 with its own root, state and
// socket, configured for these machines: runc (Debian's crun rejects the
// hybrid cgroup layout), cgroupfs (no systemd), restrict_oom_score_adj (no
// CAP_SYS_RESOURCE), and a sandbox image imported locally (no registry).
type Containerd struct {
	Dir          string // everything lives under here
	Root         string
	State        string
	Socket       string
	Config       string
	crictl       string
	crictlConfig string
	proc         *Process
}

// StartContainerd writes the config, starts containerd as a child of the
// test and waits for its CRI to answer. Cleanup removes every pod sandbox,
// stops containerd, kills and reaps leftover shims, and unmounts and deletes
// its directories.
//
// containerd's shims daemonize, so they are re-parented away from
// containerd. The test process becomes a child subreaper for the duration,
// so they are re-parented to it and can be reaped here instead of turning
// into zombies under a PID 1 that does not reap.
func StartContainerd(t testing.TB, opts ContainerdOptions) *Containerd {
	t.Helper()
	if opts.SandboxImage == "" {
		opts.SandboxImage = PauseImageRef
	}
	if opts.Crictl == "" || opts.CNIBinDir == "" || opts.CNIConfDir == "" {
		t.Fatalf("ContainerdOptions needs Crictl (from EnsureCrictl), CNIBinDir and CNIConfDir; got %+v", opts)
	}
	dir, err := os.MkdirTemp("", "weir-ctrd-")
	if err != nil {
		t.Fatalf("create containerd dir: %v", err)
	}
	c := &Containerd{
		Dir:          dir,
		Root:         filepath.Join(dir, "root"),
		State:        filepath.Join(dir, "state"),
		Socket:       filepath.Join(dir, "containerd.sock"),
		Config:       filepath.Join(dir, "config.toml"),
		crictl:       opts.Crictl,
		crictlConfig: filepath.Join(dir, "crictl.yaml"),
	}
	t.Cleanup(func() {
		if err := c.removeDirs(); err != nil {
			t.Errorf("clean containerd dirs: %v", err)
		}
	})
	// Directories containerd and runc create outside c.Dir: the shim socket
	// dir (fixed in containerd 1.6) and the pod cgroup parents. Removed
	// afterwards only if they did not exist before and are empty by then.
	created := []string{"/run/containerd", "/run/containerd/s"}
	cgroupParents, _ := filepath.Glob("/sys/fs/cgroup/*/k8s.io")
	if len(cgroupParents) == 0 {
		ctrls, _ := filepath.Glob("/sys/fs/cgroup/*/cgroup.procs")
		for _, f := range ctrls {
			created = append(created, filepath.Join(filepath.Dir(f), "k8s.io"))
		}
		created = append(created, "/sys/fs/cgroup/k8s.io")
	}
	RemoveIfCreated(t, created...)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("become child subreaper: %v", err)
	}
	t.Cleanup(func() {
		if n, err := reapShims(); err != nil {
			t.Errorf("reap containerd shims: %v", err)
		} else if n > 0 {
			t.Logf("reaped %d shim/pause processes re-parented to the test", n)
		}
		_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	})

	if err := os.WriteFile(c.Config, []byte(c.config(opts)), 0o600); err != nil {
		t.Fatalf("write containerd config: %v", err)
	}
	crictlConf := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n", c.Socket, c.Socket)
	if err := os.WriteFile(c.crictlConfig, []byte(crictlConf), 0o600); err != nil {
		t.Fatalf("write crictl config: %v", err)
	}
	c.proc = StartProcess(t, "containerd", exec.Command("containerd", "--config", c.Config))
	// Registered after StartProcess so it runs before containerd stops.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := c.RemoveAllPods(ctx); err != nil {
			t.Errorf("remove pod sandboxes: %v", err)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), containerdReadyWait)
	defer cancel()
	if err := c.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *Containerd) config(opts ContainerdOptions) string {
	q := strconv.Quote
	return fmt.Sprintf(`version = 2
root = %s
state = %s
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = %s

[ttrpc]
  address = %s

[plugins."io.containerd.internal.v1.opt"]
  path = %s

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %s
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %s
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %s
    conf_dir = %s
    max_conf_num = 1
`, q(c.Root), q(c.State), q(c.Socket), q(c.Socket+".ttrpc"), q(filepath.Join(c.Dir, "opt")),
		q(opts.SandboxImage), q(filepath.Join(c.Dir, "runc")), q(opts.CNIBinDir), q(opts.CNIConfDir))
}

func (c *Containerd) waitReady(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if _, err := c.Crictl(ctx, "version"); err == nil {
			return nil
		} else {
			last = err
		}
		select {
		case <-c.proc.Done():
			return fmt.Errorf("containerd exited during startup; output:\n%s", c.proc.Output())
		case <-ctx.Done():
			return fmt.Errorf("containerd CRI not ready: %w (last: %v); output:\n%s", ctx.Err(), last, c.proc.Output())
		case <-tick.C:
		}
	}
}

// Ctr runs `ctr` against this containerd in the CRI's k8s.io namespace.
func (c *Containerd) Ctr(ctx context.Context, args ...string) ([]byte, error) {
	return run(ctx, "ctr", append([]string{"--address", c.Socket, "--namespace", "k8s.io"}, args...)...)
}

// ImportImage imports an OCI archive (see WriteOCIArchive) and unpacks it
// for the CRI's snapshotter.
func (c *Containerd) ImportImage(ctx context.Context, archive string) error {
	_, err := c.Ctr(ctx, "images", "import", "--snapshotter", "overlayfs", archive)
	return err
}

// Crictl runs crictl against this containerd.
func (c *Containerd) Crictl(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, crictlCallTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, c.crictl, append([]string{"--config", c.crictlConfig}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out, fmt.Errorf("crictl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return out, fmt.Errorf("crictl %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}

// CRIPod is the pod-sandbox metadata a kubelet would send.
type CRIPod struct {
	Namespace, Name, UID string
	// Labels are the pod's labels, which a kubelet passes to the runtime
	// with the sandbox config; nil sends none.
	Labels map[string]string
}

// RunPod runs `crictl runp` and returns the new sandbox ID.
func (c *Containerd) RunPod(ctx context.Context, p CRIPod) (string, error) {
	logDir := filepath.Join(c.Dir, "logs", p.Namespace, p.Name)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return "", fmt.Errorf("create pod log dir: %w", err)
	}
	podConf := map[string]any{
		"metadata":      map[string]any{"name": p.Name, "namespace": p.Namespace, "uid": p.UID, "attempt": 0},
		"hostname":      p.Name,
		"log_directory": logDir,
		"linux":         map[string]any{},
	}
	if p.Labels != nil {
		podConf["labels"] = p.Labels
	}
	conf, err := json.Marshal(podConf)
	if err != nil {
		return "", fmt.Errorf("encode pod config: %w", err)
	}
	path := c.podConfigPath(p)
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		return "", fmt.Errorf("write pod config: %w", err)
	}
	out, err := c.Crictl(ctx, "runp", path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

func (c *Containerd) podConfigPath(p CRIPod) string {
	return filepath.Join(c.Dir, "pod-"+p.Namespace+"-"+p.Name+".json")
}

// CreateContainer runs `crictl create` for a container named name, running
// image's entrypoint, in the sandbox RunPod made for p, and returns the new
// container's ID. The image must have been imported (nothing is pulled).
func (c *Containerd) CreateContainer(ctx context.Context, sandboxID string, p CRIPod, name, image string) (string, error) {
	conf, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"name": name, "attempt": 0},
		"image":    map[string]any{"image": image},
		"log_path": name + ".log",
		"linux":    map[string]any{},
	})
	if err != nil {
		return "", fmt.Errorf("encode container config: %w", err)
	}
	path := filepath.Join(c.Dir, "ctr-"+p.Namespace+"-"+p.Name+"-"+name+".json")
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		return "", fmt.Errorf("write container config: %w", err)
	}
	out, err := c.Crictl(ctx, "create", "--no-pull", sandboxID, path, c.podConfigPath(p))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// StartContainer runs `crictl start`.
func (c *Containerd) StartContainer(ctx context.Context, id string) error {
	_, err := c.Crictl(ctx, "start", id)
	return err
}

// CRIPodStatus is the part of `crictl inspectp` the suites check.
type CRIPodStatus struct {
	ID    string
	State string // SANDBOX_READY or SANDBOX_NOTREADY
	IP    string
	NetNS string // network namespace path, from the runtime spec
}

// InspectPod runs `crictl inspectp` for a sandbox.
func (c *Containerd) InspectPod(ctx context.Context, id string) (CRIPodStatus, error) {
	out, err := c.Crictl(ctx, "inspectp", "-o", "json", id)
	if err != nil {
		return CRIPodStatus{}, err
	}
	var v struct {
		Status struct {
			ID      string `json:"id"`
			State   string `json:"state"`
			Network struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"status"`
		Info struct {
			RuntimeSpec struct {
				Linux struct {
					Namespaces []struct {
						Type string `json:"type"`
						Path string `json:"path"`
					} `json:"namespaces"`
				} `json:"linux"`
			} `json:"runtimeSpec"`
		} `json:"info"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		return CRIPodStatus{}, fmt.Errorf("decode crictl inspectp: %w", err)
	}
	s := CRIPodStatus{ID: v.Status.ID, State: v.Status.State, IP: v.Status.Network.IP}
	for _, ns := range v.Info.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" {
			s.NetNS = ns.Path
		}
	}
	return s, nil
}

// StopPod runs `crictl stopp` (the CNI DEL happens here).
func (c *Containerd) StopPod(ctx context.Context, id string) error {
	_, err := c.Crictl(ctx, "stopp", id)
	return err
}

// RemovePod runs `crictl rmp`.
func (c *Containerd) RemovePod(ctx context.Context, id string) error {
	_, err := c.Crictl(ctx, "rmp", id)
	return err
}

// RemoveAllPods stops and removes every sandbox this containerd knows.
func (c *Containerd) RemoveAllPods(ctx context.Context) error {
	if exited, _ := c.proc.Exited(); exited {
		return nil
	}
	out, err := c.Crictl(ctx, "pods", "-q")
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range strings.Fields(string(out)) {
		if err := c.StopPod(ctx, id); err != nil {
			errs = append(errs, err)
		}
		if err := c.RemovePod(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeDirs unmounts everything containerd mounted under its directories
// (overlay rootfs, sandbox /dev/shm) and deletes them.
func (c *Containerd) removeDirs() error {
	mounts, err := mountsUnder(c.Dir)
	if err != nil {
		return err
	}
	var errs []error
	// Deepest first, so nested mounts go before their parents.
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(mounts[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mounts[i], err))
		}
	}
	if err := os.RemoveAll(c.Dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", c.Dir, err))
	}
	return errors.Join(errs...)
}

// RemoveIfCreated removes, in t.Cleanup, each of paths that does not exist
// now, if it exists then and is an empty directory (a cgroup directory
// without children counts as empty). Paths are removed in reverse order, so
// list parents before children.
func RemoveIfCreated(t testing.TB, paths ...string) {
	t.Helper()
	var absent []string
	for _, p := range paths {
		if !fileExists(p) {
			absent = append(absent, p)
		}
	}
	t.Cleanup(func() {
		for i := len(absent) - 1; i >= 0; i-- {
			if err := unix.Rmdir(absent[i]); err != nil && !errors.Is(err, unix.ENOENT) {
				t.Logf("leaving %s in place: %v", absent[i], err)
			}
		}
	})
}

// mountsUnder lists mount points at or below dir, in mount-table order.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// reapShims kills and reaps children of the test that are containerd shims
// or sandbox processes re-parented to it (see StartContainerd). Only those
// commands are touched: other children belong to exec.Cmd values that wait
// for themselves.
func reapShims() (int, error) {
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("list /proc: %w", err)
	}
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, ppid, ok := procStat(pid)
		if !ok || ppid != self {
			continue
		}
		if !strings.HasPrefix(comm, "containerd-shim") && comm != "pause" && comm != "runc" {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil && !errors.Is(err, syscall.ECHILD) {
			return n, fmt.Errorf("wait for pid %d (%s): %w", pid, comm, err)
		}
		n++
	}
	return n, nil
}

// procStat returns a process's command name and parent PID.
func procStat(pid int) (comm string, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, false
	}
	s := string(b)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return "", 0, false
	}
	rest := strings.Fields(s[close+1:])
	if len(rest) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(rest[1])
	return s[open+1 : close], ppid, err == nil
}
