package kubernetes

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/weirnet/weir/daemon/config"
)

const manifest = "weir.yaml"

// Only the fields the checks need; sigs.k8s.io/yaml goes through JSON, so
// unknown fields are ignored.
type object struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Data map[string]string `json:"data"`
	Spec struct {
		Template struct {
			Spec podSpec `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
	Rules []struct {
		APIGroups []string `json:"apiGroups"`
		Resources []string `json:"resources"`
		Verbs     []string `json:"verbs"`
	} `json:"rules"`
}

type podSpec struct {
	HostNetwork        bool        `json:"hostNetwork"`
	HostPID            bool        `json:"hostPID"`
	ServiceAccountName string      `json:"serviceAccountName"`
	InitContainers     []container `json:"initContainers"`
	Containers         []container `json:"containers"`
	Volumes            []struct {
		Name      string `json:"name"`
		ConfigMap *struct {
			Name string `json:"name"`
		} `json:"configMap"`
		HostPath *struct {
			Path string `json:"path"`
		} `json:"hostPath"`
	} `json:"volumes"`
}

type container struct {
	Name            string   `json:"name"`
	Command         []string `json:"command"`
	Args            []string `json:"args"`
	SecurityContext struct {
		Capabilities struct {
			Drop []string `json:"drop"`
			Add  []string `json:"add"`
		} `json:"capabilities"`
	} `json:"securityContext"`
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
	} `json:"volumeMounts"`
}

func load(t *testing.T) (raw string, objs map[string]object) {
	t.Helper()
	data, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	objs = map[string]object{}
	for i, doc := range strings.Split(string(data), "\n---\n") {
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if string(js) == "null" {
			continue // the leading comment block
		}
		var o object
		if err := json.Unmarshal(js, &o); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if o.Kind == "" || o.Metadata.Name == "" {
			t.Fatalf("document %d has no kind or name", i)
		}
		objs[o.Kind] = o
	}
	return string(data), objs
}

func daemonSet(t *testing.T, objs map[string]object) podSpec {
	t.Helper()
	ds, ok := objs["DaemonSet"]
	if !ok {
		t.Fatal("no DaemonSet")
	}
	return ds.Spec.Template.Spec
}

func find(t *testing.T, cs []container, name string) container {
	t.Helper()
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return container{}
}

func TestManifestHasEveryObject(t *testing.T) {
	_, objs := load(t)
	for _, kind := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet"} {
		if _, ok := objs[kind]; !ok {
			t.Errorf("no %s", kind)
		}
	}
	if sa, ds := objs["ServiceAccount"].Metadata.Name, daemonSet(t, objs).ServiceAccountName; sa != ds {
		t.Errorf("DaemonSet runs as service account %q, manifest defines %q", ds, sa)
	}
	granted := map[string][]string{}
	for _, r := range objs["ClusterRole"].Rules {
		for _, res := range r.Resources {
			granted[res] = r.Verbs
		}
	}
	for _, res := range []string{"pods", "services", "endpointslices"} {
		if v := granted[res]; !slices.Equal(v, []string{"get", "list", "watch"}) {
			t.Errorf("ClusterRole grants %v on %s, want get, list, watch", v, res)
		}
	}
}

func TestDaemonSetShape(t *testing.T) {
	raw, objs := load(t)
	spec := daemonSet(t, objs)
	if !spec.HostNetwork || !spec.HostPID {
		t.Errorf("hostNetwork=%v hostPID=%v, want both", spec.HostNetwork, spec.HostPID)
	}

	daemon := find(t, spec.Containers, "weir-daemon")
	wantCaps := []string{"BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"}
	if got := daemon.SecurityContext.Capabilities.Add; !slices.Equal(got, wantCaps) {
		t.Errorf("daemon capabilities %v, want %v", got, wantCaps)
	}
	if got := daemon.SecurityContext.Capabilities.Drop; !slices.Equal(got, []string{"ALL"}) {
		t.Errorf("daemon drops %v, want ALL", got)
	}
	// Each capability is justified by the comment right above it.
	for _, c := range wantCaps {
		if !regexp.MustCompile(`# ` + c + `: [^\n]+\n(\s*#[^\n]*\n)*\s*- ` + c + `\n`).MatchString(raw) {
			t.Errorf("capability %s has no justifying comment directly above it", c)
		}
	}

	volumes := map[string]string{}
	for _, v := range spec.Volumes {
		switch {
		case v.HostPath != nil:
			volumes[v.Name] = v.HostPath.Path
		case v.ConfigMap != nil:
			if v.ConfigMap.Name != objs["ConfigMap"].Metadata.Name {
				t.Errorf("volume %s uses ConfigMap %q, manifest defines %q", v.Name, v.ConfigMap.Name, objs["ConfigMap"].Metadata.Name)
			}
			volumes[v.Name] = "configmap"
		}
	}
	hostPaths := map[string]bool{}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		for _, m := range c.VolumeMounts {
			p, ok := volumes[m.Name]
			if !ok {
				t.Errorf("container %s mounts undefined volume %q", c.Name, m.Name)
			}
			hostPaths[p] = true
		}
	}
	for _, p := range []string{"/sys/fs/bpf", "/sys/kernel/tracing", "/etc/cni/net.d", "/opt/cni/bin", "/run/weir", "/var/lib/weir", "/run/containerd/containerd.sock"} {
		if !hostPaths[p] {
			t.Errorf("host path %s is not mounted", p)
		}
	}

	install := find(t, spec.InitContainers, "install-cni")
	watch := find(t, spec.Containers, "cni-watch")
	for _, c := range []container{install, watch} {
		if len(c.Command) != 1 || filepath.Base(c.Command[0]) != "weir-install" {
			t.Errorf("container %s runs %v, want weir-install", c.Name, c.Command)
		}
	}
	if slices.Contains(install.Args, "--watch") || !slices.Contains(watch.Args, "--watch") {
		t.Errorf("init container args %v and sidecar args %v: want --watch on the sidecar only", install.Args, watch.Args)
	}
}

// The ConfigMap and the daemon's flags must load with the daemon's own
// (strict) config loader.
func TestDaemonConfigLoads(t *testing.T) {
	_, objs := load(t)
	spec := daemonSet(t, objs)
	daemon := find(t, spec.Containers, "weir-daemon")

	dir := t.TempDir()
	for name, content := range objs["ConfigMap"].Data {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Stand-ins for what kubelet substitutes from the pod's environment.
	expand := strings.NewReplacer("$(NODE_NAME)", "node-1", "$(NODE_IP)", "192.0.2.10")
	var args []string
	for _, a := range daemon.Args {
		a = expand.Replace(a)
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			a = "--config=" + filepath.Join(dir, filepath.Base(v))
		}
		args = append(args, a)
	}
	cfg, err := config.Load(args)
	if err != nil {
		t.Fatalf("daemon rejects the manifest's config %v: %v", args, err)
	}
	if cfg.NodeName != "node-1" || cfg.HTTP != "192.0.2.10:9847" {
		t.Errorf("node name %q, http %q: flags not applied", cfg.NodeName, cfg.HTTP)
	}

	// The plugin entry must point where the daemon listens and reads its spool.
	install := find(t, spec.InitContainers, "install-cni")
	if !slices.Contains(install.Args, "--daemon-socket="+cfg.Socket) {
		t.Errorf("install-cni args %v do not point the plugin at the daemon socket %s", install.Args, cfg.Socket)
	}
	if !slices.Contains(install.Args, "--spool-dir="+cfg.SpoolDir) {
		t.Errorf("install-cni args %v do not point the plugin at the daemon's spool %s", install.Args, cfg.SpoolDir)
	}
}
