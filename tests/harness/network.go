package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// DefaultCNIVersion is the CNI spec version of generated conflists: 1.1.0 is
// the first with GC and STATUS, which the weir plugin implements.
const DefaultCNIVersion = "1.1.0"

// DefaultCNITimeout bounds one libcni call (a whole chain ADD/DEL/CHECK).
const DefaultCNITimeout = 30 * time.Second

// WeirConf is the weir plugin's entry in a generated conflist. Extra is
// merged last, so a test can add unknown fields or override known ones with
// values of the wrong type to exercise validation.
type WeirConf struct {
	DaemonSocket      string         `json:"daemonSocket,omitempty"`
	Timeout           string         `json:"timeout,omitempty"`
	FailurePolicy     string         `json:"failurePolicy,omitempty"`
	SpoolDir          string         `json:"spoolDir,omitempty"`
	ExcludeNamespaces []string       `json:"excludeNamespaces,omitempty"`
	LogFile           string         `json:"logFile,omitempty"`
	Extra             map[string]any `json:"-"`
}

// NetworkOptions shapes a generated CNI network.
type NetworkOptions struct {
	// Name of the network (the conflist "name"); default "weir-<suffix>".
	Name string
	// CNIVersion of the conflist; default DefaultCNIVersion. containerd 1.6
	// only understands up to "1.0.0".
	CNIVersion string
	// PortMap adds the portmap plugin (iptables backend) after bridge.
	PortMap bool
	// IPMasq turns on the bridge plugin's masquerading rules.
	IPMasq bool
	// IPv6 adds an fd00::/64 range, making pods dual-stack.
	IPv6 bool
	// Weir, when non-nil, appends the weir plugin to the chain.
	Weir *WeirConf
	// WeirOnly makes weir the only plugin, so it runs without a prevResult.
	WeirOnly bool
}

// Network is a bridge + host-local [+ portmap] [+ weir] conflist written to
// a private conf dir and driven through libcni, as a runtime would drive it.
type Network struct {
	Name     string
	Bridge   string       // host bridge name, unique per test
	Subnet   netip.Prefix // IPv4 pod range
	Subnet6  netip.Prefix // IPv6 pod range, invalid unless IPv6 was asked for
	ConfDir  string       // holds ConfFile only, usable as a runtime's conf_dir
	ConfFile string
	CacheDir string // libcni's result cache, private to this network
	Bins     Binaries

	List *libcni.NetworkConfigList
	CNI  *libcni.CNIConfig
}

// NewNetwork writes the conflist and registers cleanup of everything the
// plugins may leave on the host: the bridge, iptables chains, and the
// forwarding sysctls. Pods are created with NewPod/AddPod.
func NewNetwork(t testing.TB, bins Binaries, opts NetworkOptions) *Network {
	t.Helper()
	sfx := Suffix()
	if opts.Name == "" {
		opts.Name = "weir-" + sfx
	}
	if opts.CNIVersion == "" {
		opts.CNIVersion = DefaultCNIVersion
	}
	// Registered first so they run last, after every pod's DEL.
	PreserveSysctl(t, "net.ipv4.ip_forward")
	if opts.IPv6 {
		PreserveSysctl(t, "net.ipv6.conf.all.forwarding")
	}
	GuardIPTables(t)

	subnet, subnet6, err := pickSubnets()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	n := &Network{
		Name:     opts.Name,
		Bridge:   "wbr-" + sfx,
		Subnet:   subnet,
		ConfDir:  filepath.Join(dir, "net.d"),
		CacheDir: filepath.Join(dir, "cache"),
		Bins:     bins,
	}
	if opts.IPv6 {
		n.Subnet6 = subnet6
	}
	DeleteLinkOnCleanup(t, n.Bridge)

	conf, err := n.conflist(opts, filepath.Join(dir, "ipam"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(n.ConfDir, 0o755); err != nil {
		t.Fatalf("create conf dir: %v", err)
	}
	n.ConfFile = filepath.Join(n.ConfDir, "10-"+n.Name+".conflist")
	if err := os.WriteFile(n.ConfFile, conf, 0o644); err != nil {
		t.Fatalf("write conflist: %v", err)
	}
	n.List, err = libcni.NetworkConfFromBytes(conf)
	if err != nil {
		t.Fatalf("parse generated conflist: %v\n%s", err, conf)
	}
	n.CNI = libcni.NewCNIConfigWithCacheDir([]string{bins.CNIBin}, n.CacheDir, nil)
	return n
}

func (n *Network) conflist(opts NetworkOptions, ipamDir string) ([]byte, error) {
	var plugins []map[string]any
	if !opts.WeirOnly {
		ranges := [][]map[string]string{{{"subnet": n.Subnet.String()}}}
		if n.Subnet6.IsValid() {
			ranges = append(ranges, []map[string]string{{"subnet": n.Subnet6.String()}})
		}
		plugins = append(plugins, map[string]any{
			"type":        "bridge",
			"bridge":      n.Bridge,
			"isGateway":   true,
			"ipMasq":      opts.IPMasq,
			"hairpinMode": true,
			"ipam": map[string]any{
				"type":    "host-local",
				"dataDir": ipamDir,
				"ranges":  ranges,
				"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
			},
		})
		if opts.PortMap {
			plugins = append(plugins, map[string]any{
				"type":         "portmap",
				"backend":      "iptables",
				"capabilities": map[string]bool{"portMappings": true},
			})
		}
	}
	if opts.Weir != nil || opts.WeirOnly {
		w := opts.Weir
		if w == nil {
			w = &WeirConf{}
		}
		b, err := json.Marshal(w)
		if err != nil {
			return nil, fmt.Errorf("encode weir conf: %w", err)
		}
		m := map[string]any{}
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("decode weir conf: %w", err)
		}
		m["type"] = "weir"
		for k, v := range w.Extra {
			m[k] = v
		}
		plugins = append(plugins, m)
	}
	b, err := json.MarshalIndent(map[string]any{
		"cniVersion": opts.CNIVersion,
		"name":       n.Name,
		"plugins":    plugins,
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode conflist: %w", err)
	}
	return b, nil
}

// pickSubnets chooses 10.200.X.0/24 (and fd00:0:77:X::/64) with a random X
// that no host route or address already covers, so concurrent suites and
// the host's own networks do not clash.
func pickSubnets() (netip.Prefix, netip.Prefix, error) {
	used, err := hostPrefixes()
	if err != nil {
		return netip.Prefix{}, netip.Prefix{}, err
	}
	for _, x := range rand.Perm(256) {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200, byte(x), 0}), 24)
		if overlapsAny(p, used) {
			continue
		}
		p6 := netip.MustParsePrefix(fmt.Sprintf("fd00:0:77:%x::/64", x))
		return p, p6, nil
	}
	return netip.Prefix{}, netip.Prefix{}, errors.New("no free 10.200.X.0/24 subnet: every one is already routed on this host")
}

func hostPrefixes() ([]netip.Prefix, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list host addresses: %w", err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out, nil
}

func overlapsAny(p netip.Prefix, set []netip.Prefix) bool {
	for _, q := range set {
		if p.Overlaps(q) {
			return true
		}
	}
	return false
}

// GC runs CNI GC the way a runtime does: libcni first DELs every cached
// attachment of this network not in valid, then sends GC with the valid
// set to every plugin.
func (n *Network) GC(ctx context.Context, valid ...*Pod) error {
	return n.CNI.GCNetworkList(ctx, n.List, &libcni.GCArgs{ValidAttachments: attachments(valid)})
}

// PluginGC sends only the plugins' GC command: it uses an empty result cache,
// so libcni finds no stale attachments to DEL itself. This isolates what the
// plugins do with cni.dev/valid-attachments.
func (n *Network) PluginGC(ctx context.Context, valid ...*Pod) error {
	empty, err := os.MkdirTemp("", "weir-gc-cache-")
	if err != nil {
		return fmt.Errorf("create empty cache dir: %w", err)
	}
	defer os.RemoveAll(empty)
	c := libcni.NewCNIConfigWithCacheDir([]string{n.Bins.CNIBin}, empty, nil)
	return c.GCNetworkList(ctx, n.List, &libcni.GCArgs{ValidAttachments: attachments(valid)})
}

func attachments(pods []*Pod) []types.GCAttachment {
	out := make([]types.GCAttachment, 0, len(pods))
	for _, p := range pods {
		out = append(out, types.GCAttachment{ContainerID: p.ContainerID, IfName: p.IfName})
	}
	return out
}

// Status runs CNI STATUS on every plugin of the network.
func (n *Network) Status(ctx context.Context) error {
	return n.CNI.GetStatusNetworkList(ctx, n.List)
}

// PodSpec names a pod the way Kubernetes would through CNI_ARGS.
type PodSpec struct {
	Namespace string
	Name      string
	UID       string // default: random
	// ContainerID is the sandbox ID; default: random 64 hex digits. It is
	// also sent as K8S_POD_INFRA_CONTAINER_ID, as containerd does.
	ContainerID string
	IfName      string // default "eth0"
	// PortMappings become the portMappings capability argument.
	PortMappings []PortMapping
}

// PortMapping is one hostPort → containerPort mapping for portmap.
type PortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// Pod is a network namespace attached (or about to be) to a Network.
type Pod struct {
	PodSpec
	Net    *Network
	NS     *NetNS
	Result *current.Result // set by a successful Add
}

// NewPod creates the pod's netns (named after the network and pod) without
// attaching it, and registers a best-effort CNI DEL that runs before the
// netns is deleted.
func (n *Network) NewPod(t testing.TB, spec PodSpec) *Pod {
	t.Helper()
	if spec.UID == "" {
		spec.UID = RandomID()[:32]
	}
	if spec.ContainerID == "" {
		spec.ContainerID = RandomID()
	}
	if spec.IfName == "" {
		spec.IfName = "eth0"
	}
	p := &Pod{PodSpec: spec, Net: n}
	p.NS = NewNetNS(t, "weir-"+Suffix())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), DefaultCNITimeout)
		defer cancel()
		if err := p.Del(ctx); err != nil {
			t.Logf("cleanup: CNI DEL of pod %s/%s: %v", p.Namespace, p.Name, err)
		}
	})
	return p
}

// AddPod creates a pod and runs CNI ADD, failing the test if ADD fails.
func (n *Network) AddPod(t testing.TB, spec PodSpec) *Pod {
	t.Helper()
	p := n.NewPod(t, spec)
	ctx, cancel := context.WithTimeout(context.Background(), DefaultCNITimeout)
	defer cancel()
	if _, err := p.Add(ctx); err != nil {
		t.Fatalf("CNI ADD of pod %s/%s: %v", spec.Namespace, spec.Name, err)
	}
	return p
}

// RuntimeConf is what a runtime passes libcni for this pod, including the
// K8S_POD_* CNI_ARGS containerd sends.
func (p *Pod) RuntimeConf() *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID: p.ContainerID,
		NetNS:       p.NS.Path,
		IfName:      p.IfName,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", p.Namespace},
			{"K8S_POD_NAME", p.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", p.ContainerID},
			{"K8S_POD_UID", p.UID},
		},
	}
	if len(p.PortMappings) > 0 {
		rt.CapabilityArgs = map[string]any{"portMappings": p.PortMappings}
	}
	return rt
}

// Add runs CNI ADD for the whole chain and records the final result.
func (p *Pod) Add(ctx context.Context) (*current.Result, error) {
	res, err := p.Net.CNI.AddNetworkList(ctx, p.Net.List, p.RuntimeConf())
	if err != nil {
		return nil, err
	}
	cur, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("convert ADD result: %w", err)
	}
	p.Result = cur
	return cur, nil
}

// Del runs CNI DEL for the whole chain. DEL is idempotent in CNI, so this is
// safe to call on a pod that was never added or is already deleted.
func (p *Pod) Del(ctx context.Context) error {
	return p.Net.CNI.DelNetworkList(ctx, p.Net.List, p.RuntimeConf())
}

// Check runs CNI CHECK for the whole chain.
func (p *Pod) Check(ctx context.Context) error {
	return p.Net.CNI.CheckNetworkList(ctx, p.Net.List, p.RuntimeConf())
}

// IPs returns the addresses (with prefix length) the ADD result assigned.
func (p *Pod) IPs() []netip.Prefix {
	if p.Result == nil {
		return nil
	}
	var out []netip.Prefix
	for _, ip := range p.Result.IPs {
		a, ok := netip.AddrFromSlice(ip.Address.IP)
		if !ok {
			continue
		}
		ones, _ := ip.Address.Mask.Size()
		out = append(out, netip.PrefixFrom(a.Unmap(), ones))
	}
	return out
}

// IPv4 returns the pod's first IPv4 address, or the zero Addr.
func (p *Pod) IPv4() netip.Addr {
	for _, pr := range p.IPs() {
		if pr.Addr().Is4() {
			return pr.Addr()
		}
	}
	return netip.Addr{}
}

// Command returns a command that runs argv inside the pod's netns. `ip netns
// exec` also remounts /sys for the namespace, so tools reading sysfs see the
// pod's interfaces, unlike plain nsenter --net.
func (p *Pod) Command(ctx context.Context, argv ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", p.NS.Name}, argv...)...)
}

// Exec runs argv inside the pod's netns and returns its combined output.
func (p *Pod) Exec(ctx context.Context, argv ...string) ([]byte, error) {
	return run(ctx, "ip", append([]string{"netns", "exec", p.NS.Name}, argv...)...)
}

// Start runs a long-lived argv inside the pod's netns as a child of the test;
// it is stopped and reaped in t.Cleanup.
func (p *Pod) Start(t testing.TB, name string, argv ...string) *Process {
	t.Helper()
	return StartProcess(t, name, p.Command(context.Background(), argv...))
}
