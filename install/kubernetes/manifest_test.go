package kubernetes

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/weirnet/weir/daemon/config"
)

// criSocket is the runtime socket the daemon reads pod labels and container
// names from (daemon/identity). containerd's default; CRI-O users change the
// mount and the path together.
const criSocket = "/run/containerd/containerd.sock"

// manifests are the files this package ships.
func manifests(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests found (%v)", err)
	}
	return files
}

// strictDecoder decodes with the Kubernetes API types registered in
// client-go's scheme and fails on unknown or duplicated fields, as
// `kubectl apply --validate=strict` would: a misspelt field is an error, not
// a silently ignored setting.
func strictDecoder() runtime.Decoder {
	return serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
}

// documents splits a multi-document YAML file, dropping documents that hold
// only comments.
func documents(t *testing.T, data []byte) [][]byte {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("split documents: %v", err)
		}
		empty := true
		for _, line := range strings.Split(string(doc), "\n") {
			if l := strings.TrimSpace(line); l != "" && l != "---" && !strings.HasPrefix(l, "#") {
				empty = false
				break
			}
		}
		if !empty {
			docs = append(docs, doc)
		}
	}
}

// bundle is the decoded manifest, one object per kind (the manifest has one
// of each).
type bundle struct {
	raw                string
	namespace          *corev1.Namespace
	serviceAccount     *corev1.ServiceAccount
	configMap          *corev1.ConfigMap
	clusterRole        *rbacv1.ClusterRole
	clusterRoleBinding *rbacv1.ClusterRoleBinding
	daemonSet          *appsv1.DaemonSet
}

func load(t *testing.T) bundle {
	t.Helper()
	var b bundle
	dec := strictDecoder()
	for _, file := range manifests(t) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		b.raw += string(data)
		for i, doc := range documents(t, data) {
			obj, gvk, err := dec.Decode(doc, nil, nil)
			if err != nil {
				t.Fatalf("%s document %d: %v", file, i, err)
			}
			dup := func() { t.Fatalf("%s document %d: a second %s", file, i, gvk.Kind) }
			switch o := obj.(type) {
			case *corev1.Namespace:
				if b.namespace != nil {
					dup()
				}
				b.namespace = o
			case *corev1.ServiceAccount:
				if b.serviceAccount != nil {
					dup()
				}
				b.serviceAccount = o
			case *corev1.ConfigMap:
				if b.configMap != nil {
					dup()
				}
				b.configMap = o
			case *rbacv1.ClusterRole:
				if b.clusterRole != nil {
					dup()
				}
				b.clusterRole = o
			case *rbacv1.ClusterRoleBinding:
				if b.clusterRoleBinding != nil {
					dup()
				}
				b.clusterRoleBinding = o
			case *appsv1.DaemonSet:
				if b.daemonSet != nil {
					dup()
				}
				b.daemonSet = o
			default:
				t.Fatalf("%s document %d: unexpected kind %s", file, i, gvk)
			}
		}
	}
	for name, missing := range map[string]bool{
		"Namespace": b.namespace == nil, "ServiceAccount": b.serviceAccount == nil, "ConfigMap": b.configMap == nil,
		"ClusterRole": b.clusterRole == nil, "ClusterRoleBinding": b.clusterRoleBinding == nil, "DaemonSet": b.daemonSet == nil,
	} {
		if missing {
			t.Fatalf("the manifests have no %s", name)
		}
	}
	return b
}

func container(t *testing.T, cs []corev1.Container, name string) corev1.Container {
	t.Helper()
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return corev1.Container{}
}

func TestManifestsDecodeStrictlyAsKubernetesTypes(t *testing.T) {
	load(t) // fails on any unknown field, unknown kind or malformed value
}

// The decoder used above must actually be strict, or the test proves
// nothing.
func TestStrictDecoderRejectsUnknownAndDuplicateFields(t *testing.T) {
	dec := strictDecoder()
	for name, doc := range map[string]string{
		"unknown field":   "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: x\nautomountServiceAccountTokn: false\n",
		"duplicate field": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  name: y\n",
		"wrong type":      "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: x\nspec:\n  template:\n    spec:\n      hostNetwork: \"yes\"\n",
		"unknown kind":    "apiVersion: v1\nkind: Servce\nmetadata:\n  name: x\n",
	} {
		if _, _, err := dec.Decode([]byte(doc), nil, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestManifestObjectsReferenceEachOther(t *testing.T) {
	b := load(t)
	ns := b.namespace.Name
	for kind, got := range map[string]string{
		"ServiceAccount": b.serviceAccount.Namespace, "ConfigMap": b.configMap.Namespace, "DaemonSet": b.daemonSet.Namespace,
	} {
		if got != ns {
			t.Errorf("%s is in namespace %q, the manifest creates %q", kind, got, ns)
		}
	}

	ds := b.daemonSet
	spec := ds.Spec.Template.Spec
	if spec.ServiceAccountName != b.serviceAccount.Name {
		t.Errorf("DaemonSet runs as service account %q, manifest defines %q", spec.ServiceAccountName, b.serviceAccount.Name)
	}
	sel, err := metav1LabelSelector(ds)
	if err != nil {
		t.Fatalf("DaemonSet selector: %v", err)
	}
	if sel.Empty() || !sel.Matches(labels.Set(ds.Spec.Template.Labels)) {
		t.Errorf("DaemonSet selector %v does not select its own template labels %v", sel, ds.Spec.Template.Labels)
	}

	crb := b.clusterRoleBinding
	if crb.RoleRef.APIGroup != rbacv1.GroupName || crb.RoleRef.Kind != "ClusterRole" || crb.RoleRef.Name != b.clusterRole.Name {
		t.Errorf("ClusterRoleBinding roleRef %+v, want ClusterRole %q of %s", crb.RoleRef, b.clusterRole.Name, rbacv1.GroupName)
	}
	want := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: b.serviceAccount.Name, Namespace: ns}
	if !slices.Equal(crb.Subjects, []rbacv1.Subject{want}) {
		t.Errorf("ClusterRoleBinding subjects %+v, want exactly %+v", crb.Subjects, want)
	}

	configMaps := 0
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil {
			configMaps++
			if v.ConfigMap.Name != b.configMap.Name {
				t.Errorf("volume %s uses ConfigMap %q, manifest defines %q", v.Name, v.ConfigMap.Name, b.configMap.Name)
			}
		}
	}
	if configMaps != 1 {
		t.Errorf("DaemonSet has %d ConfigMap volumes, want the daemon config's one", configMaps)
	}
}

func metav1LabelSelector(ds *appsv1.DaemonSet) (labels.Selector, error) {
	if ds.Spec.Selector == nil {
		return labels.Nothing(), nil
	}
	return labels.ValidatedSelectorFromSet(ds.Spec.Selector.MatchLabels)
}

// The daemon reads pods, Services and EndpointSlices (daemon/identity) and
// nothing else; it writes nothing.
func TestClusterRoleIsReadOnlyOnWhatIdentityWatches(t *testing.T) {
	b := load(t)
	type grant struct{ group, resource string }
	granted := map[grant][]string{}
	for _, r := range b.clusterRole.Rules {
		if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
			t.Errorf("rule %+v: resourceNames/nonResourceURLs are not expected", r)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				granted[grant{g, res}] = append(granted[grant{g, res}], r.Verbs...)
			}
		}
	}
	want := map[grant]bool{{"", "pods"}: true, {"", "services"}: true, {"discovery.k8s.io", "endpointslices"}: true}
	for g, verbs := range granted {
		if !want[g] {
			t.Errorf("ClusterRole grants %v on %q/%s, which the daemon does not use", verbs, g.group, g.resource)
			continue
		}
		slices.Sort(verbs)
		if !slices.Equal(verbs, []string{"get", "list", "watch"}) {
			t.Errorf("ClusterRole grants %v on %q/%s, want exactly get, list, watch", verbs, g.group, g.resource)
		}
	}
	for g := range want {
		if _, ok := granted[g]; !ok {
			t.Errorf("ClusterRole does not grant %q/%s", g.group, g.resource)
		}
	}
}

func TestDaemonSetShape(t *testing.T) {
	b := load(t)
	spec := b.daemonSet.Spec.Template.Spec
	if !spec.HostNetwork || !spec.HostPID {
		t.Errorf("hostNetwork=%v hostPID=%v, want both", spec.HostNetwork, spec.HostPID)
	}
	if spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("dnsPolicy %q: a hostNetwork pod needs ClusterFirstWithHostNet to resolve cluster names", spec.DNSPolicy)
	}

	daemon := container(t, spec.Containers, "weir-daemon")
	sc := daemon.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("weir-daemon has no securityContext.capabilities")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("weir-daemon is privileged; it must run with the listed capabilities only")
	}
	wantCaps := []corev1.Capability{"BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"}
	if !slices.Equal(sc.Capabilities.Add, wantCaps) {
		t.Errorf("daemon capabilities %v, want exactly %v", sc.Capabilities.Add, wantCaps)
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("daemon drops %v, want ALL", sc.Capabilities.Drop)
	}
	// Each capability is justified by the comment right above it.
	for _, c := range wantCaps {
		if !regexp.MustCompile(`# ` + string(c) + `: [^\n]+\n(\s*#[^\n]*\n)*\s*- ` + string(c) + `\n`).MatchString(b.raw) {
			t.Errorf("capability %s has no justifying comment directly above it", c)
		}
	}

	install := container(t, spec.InitContainers, "install-cni")
	watch := container(t, spec.Containers, "cni-watch")
	for _, c := range []corev1.Container{install, watch} {
		if len(c.Command) != 1 || filepath.Base(c.Command[0]) != "weir-install" {
			t.Errorf("container %s runs %v, want weir-install", c.Name, c.Command)
		}
	}
	if slices.Contains(install.Args, "--watch") || !slices.Contains(watch.Args, "--watch") {
		t.Errorf("init container args %v and sidecar args %v: want --watch on the sidecar only", install.Args, watch.Args)
	}
}

// Every mount has a volume, and each container sees the host paths its
// binary uses at the paths it uses them.
func TestDaemonSetMountsTheHostPathsItsBinariesUse(t *testing.T) {
	b := load(t)
	spec := b.daemonSet.Spec.Template.Spec
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		if _, dup := volumes[v.Name]; dup {
			t.Errorf("volume %q defined twice", v.Name)
		}
		volumes[v.Name] = v
	}
	// host path → mount, per container.
	mounts := map[string]map[string]corev1.VolumeMount{}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		mounts[c.Name] = map[string]corev1.VolumeMount{}
		for _, m := range c.VolumeMounts {
			v, ok := volumes[m.Name]
			if !ok {
				t.Errorf("container %s mounts undefined volume %q", c.Name, m.Name)
				continue
			}
			if v.HostPath != nil {
				mounts[c.Name][v.HostPath.Path] = m
			}
		}
	}

	type want struct {
		container, hostPath, mountPath string
		propagation                    corev1.MountPropagationMode // "" means not checked
		readOnly                       bool
	}
	hostToContainer := corev1.MountPropagationHostToContainer
	for _, w := range []want{
		{"install-cni", "/opt/cni/bin", "/host/opt/cni/bin", "", false},
		{"install-cni", "/etc/cni/net.d", "/host/etc/cni/net.d", "", false},
		{"cni-watch", "/opt/cni/bin", "/host/opt/cni/bin", "", false},
		{"cni-watch", "/etc/cni/net.d", "/host/etc/cni/net.d", "", false},
		// bpffs mounted on the host after the pod started must show up.
		{"weir-daemon", "/sys/fs/bpf", "/sys/fs/bpf", hostToContainer, false},
		{"weir-daemon", "/sys/kernel/tracing", "/sys/kernel/tracing", "", false},
		// The plugin runs on the host and dials the socket at this path.
		{"weir-daemon", "/run/weir", "/run/weir", "", false},
		{"weir-daemon", "/var/lib/weir", "/var/lib/weir", "", false},
		// The runtime's netns files are bind mounts made after the pod
		// started: without HostToContainer the daemon's reconcile would
		// see every pod's netns as gone.
		{"weir-daemon", "/var/run/netns", "/var/run/netns", hostToContainer, true},
		// The socket's directory, not the socket: a runtime restart
		// replaces the socket file, which a file bind mount would not see.
		{"weir-daemon", filepath.Dir(criSocket), filepath.Dir(criSocket), "", true},
		// Repair reads libcni's cache; the mismatch check the CNI config.
		{"weir-daemon", "/var/lib/cni", "/var/lib/cni", "", true},
		{"weir-daemon", "/etc/cni/net.d", "/etc/cni/net.d", "", true},
	} {
		m, ok := mounts[w.container][w.hostPath]
		if !ok {
			t.Errorf("container %s does not mount host path %s", w.container, w.hostPath)
			continue
		}
		if m.MountPath != w.mountPath {
			t.Errorf("container %s mounts %s at %s, want %s", w.container, w.hostPath, m.MountPath, w.mountPath)
		}
		if w.propagation != "" && (m.MountPropagation == nil || *m.MountPropagation != w.propagation) {
			t.Errorf("container %s mounts %s with propagation %v, want %s", w.container, w.hostPath, m.MountPropagation, w.propagation)
		}
		if m.ReadOnly != w.readOnly {
			t.Errorf("container %s mounts %s readOnly=%v, want %v", w.container, w.hostPath, m.ReadOnly, w.readOnly)
		}
	}
}

// The ConfigMap and the daemon's flags must load with the daemon's own
// (strict) config loader.
func TestDaemonConfigLoads(t *testing.T) {
	b := load(t)
	spec := b.daemonSet.Spec.Template.Spec
	daemon := container(t, spec.Containers, "weir-daemon")

	dir := t.TempDir()
	for name, content := range b.configMap.Data {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Stand-ins for what kubelet substitutes from the pod's environment.
	expand := strings.NewReplacer("$(NODE_NAME)", "node-1", "$(NODE_IP)", "192.0.2.10")
	var args []string
	configMounted := false
	for _, a := range daemon.Args {
		a = expand.Replace(a)
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			for _, m := range daemon.VolumeMounts {
				if filepath.Dir(v) == m.MountPath && m.Name == configVolume(spec) {
					configMounted = true
				}
			}
			a = "--config=" + filepath.Join(dir, filepath.Base(v))
		}
		args = append(args, a)
	}
	if !configMounted {
		t.Errorf("the daemon's --config file is not in the ConfigMap volume's mount")
	}
	cfg, err := config.Load(args)
	if err != nil {
		t.Fatalf("daemon rejects the manifest's config %v: %v", args, err)
	}
	if cfg.NodeName != "node-1" || cfg.HTTP != "192.0.2.10:9847" {
		t.Errorf("node name %q, http %q: flags not applied", cfg.NodeName, cfg.HTTP)
	}

	// The plugin entry must point where the daemon listens and reads its
	// spool: weir-install reads the daemon's own config file for both.
	for _, c := range []corev1.Container{container(t, spec.InitContainers, "install-cni"), container(t, spec.Containers, "cni-watch")} {
		var daemonConfig string
		for _, a := range daemon.Args {
			if v, ok := strings.CutPrefix(a, "--config="); ok {
				daemonConfig = v
			}
		}
		if !slices.Contains(c.Args, "--daemon-config="+daemonConfig) {
			t.Errorf("%s args %v do not read the daemon's config %s", c.Name, c.Args, daemonConfig)
		}
		for _, a := range c.Args {
			if strings.HasPrefix(a, "--daemon-socket") || strings.HasPrefix(a, "--spool-dir") {
				t.Errorf("%s sets %s: a second source for what the daemon's config says", c.Name, a)
			}
		}
		mounted := false
		for _, m := range c.VolumeMounts {
			mounted = mounted || (m.Name == configVolume(spec) && m.MountPath == filepath.Dir(daemonConfig))
		}
		if !mounted {
			t.Errorf("%s does not mount the daemon's config at %s", c.Name, filepath.Dir(daemonConfig))
		}
	}
}

func configVolume(spec corev1.PodSpec) string {
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil {
			return v.Name
		}
	}
	return ""
}
