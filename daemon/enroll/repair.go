package enroll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/weirnet/weir/daemon/registry"
	"github.com/weirnet/weir/enrollapi/enrollpb"
	"github.com/weirnet/weir/internal/podlink"
	"github.com/weirnet/weir/netconf"
)

// Bounds of one repair round.
const (
	// MaxCacheEntries bounds the libcni cache files read per round; a
	// node holds one per attachment.
	MaxCacheEntries = 16384
	// maxCacheFileBytes bounds one cache file (a config and a result).
	maxCacheFileBytes = 1 << 20
)

// Sandboxes is the container runtime's view of the pods on the node (the
// CRI pod sandbox list), when the daemon has a CRI socket.
type Sandboxes interface {
	// Ready returns the ids of the pod sandboxes that are ready.
	Ready(ctx context.Context) (map[string]bool, error)
	// Netns returns the network namespace path of a sandbox.
	Netns(ctx context.Context, id string) (string, error)
}

// RepairOptions says where repair looks for pods.
type RepairOptions struct {
	// CacheDir is libcni's cache directory (results/ holds one file per
	// attachment the runtime added, with its network config, CNI_ARGS and
	// result). It names the attachments and their addresses.
	CacheDir string
	// Socket is this daemon's enrollment socket: only attachments whose
	// weir entry names it are this daemon's to repair.
	Socket string
	// Sandboxes, when set, is the source of truth for which pods live and
	// where their netns is (containerd's cache files carry no netns);
	// without it the netns path recorded in the cache is used.
	Sandboxes Sandboxes
}

// RepairStats counts one repair round.
type RepairStats struct {
	Candidates int // weir attachments of this daemon found on the node
	Repaired   int // enrolled by this round
	Failed     int // found missing but could not be enrolled (logged at debug)
}

// Repair enrolls pods that live on the node but are not in the registry:
// their ADD was refused (registry full), their spool record dropped
// (spool full) or stranded (a spool directory the daemon does not read).
// Like a CNI repair controller it works from the node's records rather than
// from the calls it missed: libcni's cache for each attachment's network,
// interface, addresses and pod names, and the CRI sandbox list (when
// configured) for which pods are alive and their netns. An attachment
// whose last live call was a DEL is left alone, as are excluded
// namespaces. Every repair is counted (weir_enroll_repaired_total) and
// logged. Refusals here are not counted as refused ADDs: the round repeats.
func (s *Server) Repair(ctx context.Context, opts RepairOptions) (RepairStats, error) {
	var st RepairStats
	entries, err := readCNICache(opts.CacheDir)
	if err != nil {
		return st, err
	}
	var ready map[string]bool
	if opts.Sandboxes != nil {
		ready, err = opts.Sandboxes.Ready(ctx)
		// Warn when the CRI goes away or comes back, not every round.
		if was := s.criDown.Swap(err != nil); err != nil && !was {
			s.log.Warn("repair: CRI sandbox list unavailable; using the CNI cache's netns paths", "error", err)
		} else if err != nil {
			s.log.Debug("repair: CRI sandbox list still unavailable", "error", err)
		} else if was {
			s.log.Info("repair: CRI sandbox list available again")
		}
	}
	full := false
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		conf, ok := e.weirConf()
		if !ok || conf.DaemonSocket != opts.Socket || conf.Excluded(e.arg("K8S_POD_NAMESPACE")) {
			continue
		}
		st.Candidates++
		k := registry.Key{Network: e.NetworkName, ContainerID: e.ContainerID, Ifname: e.IfName}
		if _, enrolled := s.reg.Get(k); enrolled {
			continue
		}
		if live, ok := s.order.get(attachmentOf(e.ContainerID, e.IfName)); ok && !live.enrolled {
			continue // deleted live; the cache entry goes with the DEL
		}
		if full {
			st.Failed++
			continue
		}
		netns := e.NetNS
		if ready != nil {
			if !ready[e.ContainerID] {
				continue // not a ready sandbox: not a live pod
			}
			if p, err := opts.Sandboxes.Netns(ctx, e.ContainerID); err == nil && p != "" {
				netns = p
			}
		}
		if netns == "" {
			continue // nothing says where the pod's network is
		}
		req, err := e.pod(netns, conf)
		var p *registry.Pod
		if err == nil {
			p, err = s.enroll(req, false)
		}
		if err != nil {
			st.Failed++
			full = errors.Is(err, registry.ErrFull)
			s.log.Debug("repair: cannot enroll a pod the daemon is missing", "attachment", k.String(), "error", err)
			continue
		}
		st.Repaired++
		s.metrics.Repaired.Inc()
		source := "cni-cache"
		if ready != nil {
			source = "cri"
		}
		s.log.Info("repair: enrolled a pod that lives on the node but was never enrolled",
			append(podAttrs(p), "source", source)...)
	}
	return st, nil
}

// cacheEntry is libcni's cachedInfo (libcni/api.go), the file
// <cacheDir>/results/<network>-<containerID>-<ifname>.
type cacheEntry struct {
	Kind        string          `json:"kind"`
	ContainerID string          `json:"containerId"`
	Config      []byte          `json:"config"`
	IfName      string          `json:"ifName"`
	NetworkName string          `json:"networkName"`
	NetNS       string          `json:"netns"`
	CNIArgs     [][2]string     `json:"cniArgs"`
	Result      json.RawMessage `json:"result"`
}

// readCNICache returns the cache entries of dir, at most MaxCacheEntries;
// unreadable files are skipped (the runtime writes them, not us).
func readCNICache(dir string) ([]cacheEntry, error) {
	ents, err := os.ReadDir(filepath.Join(dir, "results"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("repair: read CNI cache: %w", err)
	}
	var out []cacheEntry
	for _, d := range ents[:min(len(ents), MaxCacheEntries)] {
		if !d.Type().IsRegular() {
			continue
		}
		b, err := readBounded(filepath.Join(dir, "results", d.Name()), maxCacheFileBytes)
		if err != nil {
			continue
		}
		var e cacheEntry
		if json.Unmarshal(b, &e) != nil || e.Kind != "cniCacheV1" || e.ContainerID == "" || e.IfName == "" || e.NetworkName == "" {
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = fmt.Errorf("%s is over %d bytes", path, limit)
	}
	return b, err
}

func (e *cacheEntry) arg(key string) string {
	for _, kv := range e.CNIArgs {
		if kv[0] == key {
			return kv[1]
		}
	}
	return ""
}

// weirConf returns the weir entry of the cached network config, parsed as
// the plugin parsed it (libcni adds name and cniVersion to each plugin).
func (e *cacheEntry) weirConf() (*netconf.NetConf, bool) {
	var list struct {
		CNIVersion string           `json:"cniVersion"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if json.Unmarshal(e.Config, &list) != nil {
		return nil, false
	}
	i := slices.IndexFunc(list.Plugins, func(p map[string]any) bool { return p["type"] == "weir" })
	if i < 0 {
		return nil, false
	}
	entry := list.Plugins[i]
	entry["name"], entry["cniVersion"] = e.NetworkName, list.CNIVersion
	b, err := json.Marshal(entry)
	if err != nil {
		return nil, false
	}
	c, err := netconf.Parse(b)
	return c, err == nil
}

// pod builds the record the plugin's ADD would have sent, reading the
// link from the kernel as the plugin does.
func (e *cacheEntry) pod(netns string, conf *netconf.NetConf) (*enrollpb.Pod, error) {
	ips, err := e.ips()
	if err != nil {
		return nil, err
	}
	link, err := podlink.Inspect(netns, e.IfName)
	if err != nil {
		return nil, err
	}
	return &enrollpb.Pod{
		Network: e.NetworkName, ContainerId: e.ContainerID, Ifname: e.IfName,
		Netns: netns, NetnsInode: link.NetnsInode, IfIndex: int32(link.IfIndex),
		HostVeth: link.HostVeth, HostVethIndex: int32(link.HostVethIndex), Ips: ips,
		Namespace: validUTF8(e.arg("K8S_POD_NAMESPACE")), Name: validUTF8(e.arg("K8S_POD_NAME")),
		Uid: validUTF8(e.arg("K8S_POD_UID")), InfraContainerId: validUTF8(e.arg("K8S_POD_INFRA_CONTAINER_ID")),
		CniVersion: conf.CNIVersion,
	}, nil
}

// ips returns the pod interface's addresses from the cached result, as the
// plugin took them from prevResult.
func (e *cacheEntry) ips() ([]*enrollpb.IPConfig, error) {
	if len(e.Result) == 0 {
		return nil, nil
	}
	var v struct {
		CNIVersion string `json:"cniVersion"`
	}
	if err := json.Unmarshal(e.Result, &v); err != nil {
		return nil, fmt.Errorf("cached result: %w", err)
	}
	r, err := version.NewResult(v.CNIVersion, e.Result)
	if err != nil {
		return nil, fmt.Errorf("cached result: %w", err)
	}
	res, err := current.NewResultFromResult(r)
	if err != nil {
		return nil, fmt.Errorf("cached result: %w", err)
	}
	return podlink.PodIPs(res, e.IfName), nil
}

func validUTF8(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
