package helm

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/strvals"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/weirnet/weir/daemon/config"
	"github.com/weirnet/weir/netconf"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const chartDir = "weir"

// defaultRelease is the release the README installs.
var defaultRelease = Release{Name: "weir", Namespace: "weir-system"}

// render renders the chart with `--set`-style overrides.
func render(t *testing.T, rel Release, sets ...string) Rendered {
	t.Helper()
	values := map[string]any{}
	for _, s := range sets {
		if err := strvals.ParseInto(s, values); err != nil {
			t.Fatalf("--set %s: %v", s, err)
		}
	}
	r, err := Render(chartDir, rel, values)
	if err != nil {
		t.Fatalf("render with %v: %v", sets, err)
	}
	return r
}

// objects is a rendered chart strictly decoded into its API types.
type objects struct {
	namespace          *corev1.Namespace
	serviceAccount     *corev1.ServiceAccount
	configMaps         map[string]*corev1.ConfigMap
	clusterRole        *rbacv1.ClusterRole
	clusterRoleBinding *rbacv1.ClusterRoleBinding
	service            *corev1.Service
	daemonSet          *appsv1.DaemonSet
	serviceMonitor     *serviceMonitor
	podMonitor         *podMonitor
}

// Prometheus Operator's types are not in client-go's scheme and their module
// is not worth its weight here: these mirror the fields the chart writes, and
// are decoded strictly, so a field the chart writes but these do not know
// fails the test until it is checked against monitoring.coreos.com/v1.
type (
	monitorMeta struct {
		APIVersion string           `json:"apiVersion"`
		Kind       string           `json:"kind"`
		Metadata   metav1ObjectMeta `json:"metadata"`
	}
	metav1ObjectMeta struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	}
	relabel struct {
		SourceLabels []string `json:"sourceLabels"`
		TargetLabel  string   `json:"targetLabel"`
	}
	endpoint struct {
		Port        string    `json:"port"`
		Path        string    `json:"path"`
		Interval    string    `json:"interval"`
		HonorLabels bool      `json:"honorLabels"`
		Relabelings []relabel `json:"relabelings"`
	}
	monitorSpec struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints           []endpoint `json:"endpoints,omitempty"`
		PodMetricsEndpoints []endpoint `json:"podMetricsEndpoints,omitempty"`
	}
	serviceMonitor struct {
		monitorMeta `json:",inline"`
		Spec        monitorSpec `json:"spec"`
	}
	podMonitor = serviceMonitor
)

func decode(t *testing.T, r Rendered) objects {
	t.Helper()
	o := objects{configMaps: map[string]*corev1.ConfigMap{}}
	dec := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	for _, d := range r.Documents {
		if d.Kind == "ServiceMonitor" || d.Kind == "PodMonitor" {
			var m serviceMonitor
			if err := yaml.UnmarshalStrict([]byte(d.YAML), &m); err != nil {
				t.Fatalf("%s %s: %v", d.Kind, d.Name, err)
			}
			if m.APIVersion != "monitoring.coreos.com/v1" {
				t.Errorf("%s apiVersion %q", d.Kind, m.APIVersion)
			}
			if d.Kind == "ServiceMonitor" {
				o.serviceMonitor = &m
			} else {
				o.podMonitor = &m
			}
			continue
		}
		obj, gvk, err := dec.Decode([]byte(d.YAML), nil, nil)
		if err != nil {
			t.Fatalf("%s (%s): %v", d.Name, d.Template, err)
		}
		dup := func(set bool) {
			if set {
				t.Fatalf("a second %s (%s)", gvk.Kind, d.Name)
			}
		}
		switch v := obj.(type) {
		case *corev1.Namespace:
			dup(o.namespace != nil)
			o.namespace = v
		case *corev1.ServiceAccount:
			dup(o.serviceAccount != nil)
			o.serviceAccount = v
		case *corev1.ConfigMap:
			dup(o.configMaps[v.Name] != nil)
			o.configMaps[v.Name] = v
		case *rbacv1.ClusterRole:
			dup(o.clusterRole != nil)
			o.clusterRole = v
		case *rbacv1.ClusterRoleBinding:
			dup(o.clusterRoleBinding != nil)
			o.clusterRoleBinding = v
		case *corev1.Service:
			dup(o.service != nil)
			o.service = v
		case *appsv1.DaemonSet:
			dup(o.daemonSet != nil)
			o.daemonSet = v
		default:
			t.Fatalf("unexpected kind %s (%s)", gvk, d.Template)
		}
	}
	if o.serviceAccount == nil || o.clusterRole == nil || o.clusterRoleBinding == nil || o.daemonSet == nil {
		t.Fatalf("rendered chart lacks a ServiceAccount, ClusterRole, ClusterRoleBinding or DaemonSet")
	}
	return o
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

func env(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// daemonConfig feeds the rendered ConfigMap and the daemon container's
// arguments to weir-daemon's own strict config loader, with the environment
// kubelet would substitute, and returns what the daemon would run with.
// daemonSetConfigMap returns the name of the ConfigMap the DaemonSet's
// config volume mounts, failing when the chart does not render it.
func (o objects) daemonSetConfigMap(t *testing.T) string {
	t.Helper()
	var name string
	for _, v := range o.daemonSet.Spec.Template.Spec.Volumes {
		if v.Name == "config" && v.ConfigMap != nil {
			name = v.ConfigMap.Name
		}
	}
	if o.configMaps[name] == nil {
		t.Fatalf("the config volume names ConfigMap %q, which the chart does not render", name)
	}
	return name
}

func daemonConfig(t *testing.T, o objects) config.Config {
	t.Helper()
	spec := o.daemonSet.Spec.Template.Spec
	daemon := container(t, spec.Containers, "weir-daemon")
	cm := o.configMaps[o.daemonSetConfigMap(t)]
	dir := t.TempDir()
	for name, content := range cm.Data {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	expand := strings.NewReplacer("$(NODE_NAME)", "node-1", "$(NODE_IP)", "192.0.2.10", "$(OAP_TOKEN)", "s3cret")
	var args []string
	for _, a := range daemon.Args {
		a = expand.Replace(a)
		if strings.Contains(a, "$(") {
			t.Errorf("daemon argument %q refers to a variable the test does not know", a)
		}
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			a = "--config=" + filepath.Join(dir, filepath.Base(v))
		}
		args = append(args, a)
	}
	cfg, err := config.Load(args)
	if err != nil {
		t.Fatalf("weir-daemon rejects the chart's config %v: %v\n%s", args, err, cm.Data["daemon.yaml"])
	}
	return cfg
}

// The default render is pinned by a golden file: a change to any template
// shows up as a reviewed diff of what `helm install` creates.
func TestDefaultRenderMatchesGolden(t *testing.T) {
	r := render(t, defaultRelease)
	got := r.Manifest("# helm template weir install/helm/weir --namespace weir-system (golden; go test ./install/helm -update rewrites it)\n")
	got = append(got, []byte("---\n# NOTES.txt\n"+commentLines(r.Notes))...)
	golden := filepath.Join("testdata", "default.yaml")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./install/helm -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("default render differs from %s; if intended, run go test ./install/helm -update and review the diff", golden)
	}
}

func commentLines(s string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(strings.TrimRight("# "+line, " ") + "\n")
	}
	return b.String()
}

// The plain manifest is the chart rendered with the values its go:generate
// line names; `make check-generated` catches the same drift.
func TestPlainManifestIsTheChartRendered(t *testing.T) {
	data, err := os.ReadFile("../kubernetes/weir.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := render(t, defaultRelease, "createNamespace=true", "oap.address=")
	_, body, ok := bytes.Cut(data, []byte("\n---\n"))
	if !ok {
		t.Fatal("weir.yaml has no documents")
	}
	if want := r.Manifest(""); !bytes.Equal(append([]byte("---\n"), body...), want) {
		t.Error("install/kubernetes/weir.yaml is not the chart rendered: run make generate")
	}
}

// The chart copy of the dashboard is install/grafana/weir.json (go generate
// copies it: Helm cannot read files outside the chart).
func TestChartDashboardIsTheGrafanaDashboard(t *testing.T) {
	a, err := os.ReadFile("../grafana/weir.json")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("weir/files/weir.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("weir/files/weir.json differs from install/grafana/weir.json: run make generate")
	}
}

func TestChartLintsClean(t *testing.T) {
	for _, sets := range [][]string{nil, tlsOverrides} {
		values := map[string]any{}
		for _, s := range sets {
			if err := strvals.ParseInto(s, values); err != nil {
				t.Fatal(err)
			}
		}
		res := lint.RunAll(chartDir, values, "weir-system",
			lint.WithKubeVersion(&common.KubeVersion{Version: "v1.31.0", Major: "1", Minor: "31"}))
		for _, m := range res.Messages {
			if m.Severity > support.InfoSev {
				t.Errorf("helm lint %v: %s", sets, m.Error())
			} else {
				t.Logf("helm lint %v: %s", sets, m.Error())
			}
		}
	}
}

// tlsOverrides is a TLS OAP with its own CA, a token and monitoring
// objects: the most the chart renders.
var tlsOverrides = []string{
	"oap.address=oap.observability.svc:11800", "oap.tls.enabled=true", "oap.tls.caSecret.name=oap-ca",
	"oap.tls.serverName=oap.example.org", "oap.tokenSecret.name=oap-token", "cluster=prod-eu",
	"serviceMonitor.enabled=true", "grafanaDashboard.enabled=true", "grafanaDashboard.namespace=monitoring",
}

func TestDefaultsExportPlaintextToSkyWalkingsChart(t *testing.T) {
	o := decode(t, render(t, defaultRelease))
	cfg := daemonConfig(t, o)
	// SkyWalking's chart, installed as its README does, names its OAP
	// Service <release>-skywalking-helm-oap and serves gRPC on 11800
	// without TLS.
	if cfg.OAP.Address != "skywalking-skywalking-helm-oap.skywalking:11800" || !cfg.OAP.Insecure {
		t.Errorf("default OAP %q insecure=%v, want SkyWalking chart's OAP in plaintext", cfg.OAP.Address, cfg.OAP.Insecure)
	}
	if cfg.OAP.Token != "" || cfg.OAP.CAFile != "" {
		t.Errorf("default token %q CA %q, want none", cfg.OAP.Token, cfg.OAP.CAFile)
	}
	if cfg.NodeName != "node-1" || cfg.HTTP != "192.0.2.10:9847" {
		t.Errorf("node %q http %q, want the pod's node name and host IP", cfg.NodeName, cfg.HTTP)
	}
	if !slices.Equal(cfg.ExcludeNamespaces, []string{"kube-system"}) || !cfg.Capture.Enabled || !cfg.BPF.Payload {
		t.Errorf("excludeNamespaces %v capture %v payload %v", cfg.ExcludeNamespaces, cfg.Capture.Enabled, cfg.BPF.Payload)
	}
	spec := o.daemonSet.Spec.Template.Spec
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q, want system-node-critical: a monitor evicted first is useless", spec.PriorityClassName)
	}
	if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet || !spec.HostPID {
		t.Errorf("hostNetwork %v dnsPolicy %s hostPID %v", spec.HostNetwork, spec.DNSPolicy, spec.HostPID)
	}
	if o.namespace != nil || o.service != nil || o.serviceMonitor != nil || o.podMonitor != nil || len(o.configMaps) != 1 {
		t.Errorf("defaults render optional objects: namespace %v service %v serviceMonitor %v podMonitor %v configMaps %d",
			o.namespace != nil, o.service != nil, o.serviceMonitor != nil, o.podMonitor != nil, len(o.configMaps))
	}
}

func TestTLSTokenAndMonitoringOverrides(t *testing.T) {
	r := render(t, Release{Name: "obs", Namespace: "observability"}, tlsOverrides...)
	o := decode(t, r)
	cfg := daemonConfig(t, o)
	if cfg.OAP.Address != "oap.observability.svc:11800" || cfg.OAP.Insecure || cfg.OAP.ServerName != "oap.example.org" ||
		cfg.OAP.Token != "s3cret" || cfg.Cluster != "prod-eu" {
		t.Errorf("OAP config %+v cluster %q", cfg.OAP, cfg.Cluster)
	}
	spec := o.daemonSet.Spec.Template.Spec
	daemon := container(t, spec.Containers, "weir-daemon")
	// The token comes from the Secret, never from the ConfigMap.
	if e := env(daemon, "OAP_TOKEN"); e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil ||
		e.ValueFrom.SecretKeyRef.Name != "oap-token" || e.ValueFrom.SecretKeyRef.Key != "token" {
		t.Errorf("OAP_TOKEN env %+v, want secretKeyRef oap-token/token", e)
	}
	for name, cm := range o.configMaps {
		for _, v := range cm.Data {
			if strings.Contains(v, "s3cret") || strings.Contains(v, "token:") {
				t.Errorf("ConfigMap %s holds a token", name)
			}
		}
	}
	// The CA file the config names is in the mounted Secret.
	var caMount string
	for _, m := range daemon.VolumeMounts {
		if m.Name == "oap-ca" {
			caMount = m.MountPath
		}
	}
	var caVol *corev1.Volume
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == "oap-ca" {
			caVol = &spec.Volumes[i]
		}
	}
	if caMount == "" || caVol == nil || caVol.Secret == nil || caVol.Secret.SecretName != "oap-ca" ||
		cfg.OAP.CAFile != filepath.Join(caMount, "ca.crt") {
		t.Errorf("caFile %q, mount %q, volume %+v: want the oap-ca Secret's ca.crt", cfg.OAP.CAFile, caMount, caVol)
	}
	// Monitoring: the Service selects the daemon pods and the
	// ServiceMonitor selects the Service, on the named port.
	if o.service == nil || o.serviceMonitor == nil {
		t.Fatal("serviceMonitor.enabled renders no Service or ServiceMonitor")
	}
	podLabels := o.daemonSet.Spec.Template.Labels
	for k, v := range o.service.Spec.Selector {
		if podLabels[k] != v {
			t.Errorf("Service selector %v does not select pod labels %v", o.service.Spec.Selector, podLabels)
		}
	}
	for k, v := range o.serviceMonitor.Spec.Selector.MatchLabels {
		if o.service.Labels[k] != v {
			t.Errorf("ServiceMonitor selector %v does not select Service labels %v", o.serviceMonitor.Spec.Selector.MatchLabels, o.service.Labels)
		}
	}
	if len(o.serviceMonitor.Spec.Endpoints) != 1 || o.serviceMonitor.Spec.Endpoints[0].Port != o.service.Spec.Ports[0].Name ||
		o.serviceMonitor.Spec.Endpoints[0].Path != "/metrics" || !o.serviceMonitor.Spec.Endpoints[0].HonorLabels {
		t.Errorf("ServiceMonitor endpoints %+v, Service ports %+v", o.serviceMonitor.Spec.Endpoints, o.service.Spec.Ports)
	}
	// The dashboard ConfigMap carries the dashboard, for the sidecar.
	dash := o.configMaps["obs-weir-grafana-dashboard"]
	if dash == nil || dash.Namespace != "monitoring" || dash.Labels["grafana_dashboard"] != "1" {
		t.Fatalf("dashboard ConfigMap %+v", dash)
	}
	want, err := os.ReadFile("../grafana/weir.json")
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid([]byte(dash.Data["weir.json"])) || strings.TrimSpace(dash.Data["weir.json"]) != strings.TrimSpace(string(want)) {
		t.Error("dashboard ConfigMap's weir.json is not install/grafana/weir.json")
	}
	if !strings.Contains(r.Notes, "TLS") || !strings.Contains(r.Notes, "obs-weir-grafana-dashboard") {
		t.Errorf("NOTES.txt does not say how the export and the dashboard are set up:\n%s", r.Notes)
	}
}

func TestNodeAndCNIOverrides(t *testing.T) {
	r := render(t, Release{Name: "weir", Namespace: "monitoring"},
		"cni.binDir=/home/kubernetes/bin", "cni.confDir=/etc/cni/conf.d", "cni.failurePolicy=fail",
		"excludeNamespaces={kube-system,istio-system}", "cri.socketDir=/var/run/crio", "cri.socket=crio.sock",
		"oap.address=", "priorityClassName=", "podMonitor.enabled=true", "daemon.capture.maxConnections=1000",
		"daemon.bpf.payload=false", "daemon.metrics.maxEndpointsPerService=20", "daemon.extraConfig.maxPods=512",
		"image.repository=registry.example.org/weir", "image.tag=v1.2.3", "daemon.httpPort=9900")
	o := decode(t, r)
	cfg := daemonConfig(t, o)
	if cfg.OAP.Address != "" || cfg.Capture.MaxConnections != 1000 || cfg.BPF.Payload || cfg.Metrics.MaxEndpointsPerService != 20 ||
		cfg.MaxPods != 512 || cfg.Identity.CRISocket != "/var/run/crio/crio.sock" || cfg.HTTP != "192.0.2.10:9900" ||
		!slices.Equal(cfg.ExcludeNamespaces, []string{"kube-system", "istio-system"}) {
		t.Errorf("daemon config does not follow the values: %+v", cfg)
	}
	spec := o.daemonSet.Spec.Template.Spec
	if spec.PriorityClassName != "" {
		t.Errorf("priorityClassName %q, want none when unset", spec.PriorityClassName)
	}
	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	if hostPaths["cni-bin"] != "/home/kubernetes/bin" || hostPaths["cni-conf"] != "/etc/cni/conf.d" || hostPaths["cri-runtime"] != "/var/run/crio" {
		t.Errorf("host paths %v do not follow cni.* and cri.*", hostPaths)
	}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		if c.Image != "registry.example.org/weir:v1.2.3" {
			t.Errorf("container %s image %q", c.Name, c.Image)
		}
	}
	install := container(t, spec.InitContainers, "install-cni")
	for _, want := range []string{"--failure-policy=fail", "--exclude-namespaces=kube-system,istio-system"} {
		if !slices.Contains(install.Args, want) {
			t.Errorf("install-cni args %v lack %s", install.Args, want)
		}
	}
	if o.podMonitor == nil || len(o.podMonitor.Spec.PodMetricsEndpoints) != 1 || o.podMonitor.Spec.PodMetricsEndpoints[0].Port != "http" ||
		!o.podMonitor.Spec.PodMetricsEndpoints[0].HonorLabels {
		t.Errorf("podMonitor %+v", o.podMonitor)
	}
	if !strings.Contains(r.Notes, "export is off") {
		t.Errorf("NOTES.txt does not say the export is off:\n%s", r.Notes)
	}
}

// Values the chart cannot honour fail the render with a message naming
// them, instead of a DaemonSet that starts and does not work.
func TestChartRejectsValuesItCannotHonour(t *testing.T) {
	for _, c := range []struct {
		sets []string
		want string
	}{
		{[]string{"hostNetwork=false"}, "hostNetwork=false needs daemon.capture.enabled=false"},
		// values.schema.json: a misspelt key, a wrong type or value.
		{[]string{"cni.failurePolicy=sometimes"}, "'/cni/failurePolicy': value must be one of 'ignore', 'fail'"},
		{[]string{"oap.adress=oap:11800"}, "additional properties 'adress' not allowed"},
		{[]string{"oap.tls.enabled=yes"}, "'/oap/tls/enabled': got string, want boolean"},
		{[]string{"oap.address=oap.observability"}, "'/oap/address'"},
		{[]string{"daemon.extraConfig.captur.enabled=false"}, ""}, // rendered; the daemon's loader rejects it below
	} {
		values := map[string]any{}
		for _, s := range c.sets {
			if err := strvals.ParseInto(s, values); err != nil {
				t.Fatal(err)
			}
		}
		r, err := Render(chartDir, defaultRelease, values)
		if c.want != "" {
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%v: render error %v, want %q", c.sets, err, c.want)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", c.sets, err)
		}
		o := decode(t, r)
		cm := o.configMaps["weir-daemon"]
		dir := t.TempDir()
		file := filepath.Join(dir, "daemon.yaml")
		if err := os.WriteFile(file, []byte(cm.Data["daemon.yaml"]), 0o600); err != nil {
			t.Fatal(err)
		}
		var cerr *config.Error
		if _, err := config.Load([]string{"--config=" + file}); !errors.As(err, &cerr) || !strings.Contains(err.Error(), "captur") {
			t.Errorf("%v: daemon loader error %v, want one naming the misspelt key", c.sets, err)
		}
	}
	// hostNetwork=false is accepted for an enrollment-only daemon, which
	// then serves on the pod's IP.
	o := decode(t, render(t, defaultRelease, "hostNetwork=false", "daemon.capture.enabled=false"))
	spec := o.daemonSet.Spec.Template.Spec
	daemon := container(t, spec.Containers, "weir-daemon")
	if spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirst || env(daemon, "NODE_IP").ValueFrom.FieldRef.FieldPath != "status.podIP" {
		t.Errorf("hostNetwork=false: hostNetwork %v dnsPolicy %s NODE_IP %+v", spec.HostNetwork, spec.DNSPolicy, env(daemon, "NODE_IP"))
	}
	if cfg := daemonConfig(t, o); cfg.Capture.Enabled {
		t.Error("capture enabled")
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if installBin != "" {
		os.RemoveAll(filepath.Dir(installBin))
	}
	os.Exit(code)
}

var (
	installOnce sync.Once
	installBin  string
	installErr  error
)

// weirInstall builds weir-install once, to run the chart's arguments
// through the binary the image ships.
func weirInstall(t *testing.T) string {
	t.Helper()
	installOnce.Do(func() {
		dir, err := os.MkdirTemp("", "weir-install-")
		if err != nil {
			installErr = err
			return
		}
		installBin = filepath.Join(dir, "weir-install")
		out, err := exec.Command("go", "build", "-o", installBin,
			"github.com/weirnet/weir/install/cmd/weir-install").CombinedOutput()
		if err != nil {
			installErr = errors.New(string(out))
		}
	})
	if installErr != nil {
		t.Fatalf("build weir-install: %v", installErr)
	}
	return installBin
}

// weir-install runs the chart's init container arguments for real, against
// a node's CNI directories in a temporary directory standing in for the
// host paths the containers mount, and accepts the sidecar's.
func TestWeirInstallAcceptsTheChartsArguments(t *testing.T) {
	bin := weirInstall(t)
	for _, sets := range [][]string{nil, {"cni.failurePolicy=fail", "excludeNamespaces={a,b}", "cni.resync=1m"}} {
		o := decode(t, render(t, defaultRelease, sets...))
		spec := o.daemonSet.Spec.Template.Spec
		root := t.TempDir()
		hostDir := func(p string) string { return filepath.Join(root, p) }
		binDir, confDir := hostDir("/host/opt/cni/bin"), hostDir("/host/etc/cni/net.d")
		for _, d := range []string{binDir, confDir} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		conflist := `{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge","bridge":"cni0","ipam":{"type":"host-local","subnet":"10.22.0.0/16"}}]}`
		if err := os.WriteFile(filepath.Join(confDir, "10-bridge.conflist"), []byte(conflist), 0o644); err != nil {
			t.Fatal(err)
		}
		// A stand-in for the weir plugin that answers CNI VERSION, which
		// weir-install asks before writing the entry.
		plugin := filepath.Join(root, "weir")
		script := "#!/bin/sh\necho '{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\",\"1.1.0\"]}'\n"
		if err := os.WriteFile(plugin, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		// weir-install --daemon-config reads the daemon's ConfigMap, mounted
		// at /etc/weir in both containers.
		cfgDir := hostDir("/etc/weir")
		if err := os.MkdirAll(cfgDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range o.configMaps[o.daemonSetConfigMap(t)].Data {
			if err := os.WriteFile(filepath.Join(cfgDir, name), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		rewrite := strings.NewReplacer("=/host/opt/cni/bin", "="+binDir, "=/host/etc/cni/net.d", "="+confDir,
			"=/etc/weir/", "="+cfgDir+"/")
		run := func(args []string, extra ...string) (string, error) {
			var all []string
			for _, a := range args {
				all = append(all, rewrite.Replace(a))
			}
			out, err := exec.Command(bin, append(all, extra...)...).CombinedOutput()
			return string(out), err
		}
		install := container(t, spec.InitContainers, "install-cni")
		if out, err := run(install.Args, "--plugin-src="+plugin); err != nil {
			t.Fatalf("%v: weir-install %v: %v\n%s", sets, install.Args, err, out)
		}
		data, err := os.ReadFile(filepath.Join(confDir, "10-bridge.conflist"))
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Plugins []map[string]any `json:"plugins"`
		}
		if err := json.Unmarshal(data, &got); err != nil || len(got.Plugins) != 2 || got.Plugins[1]["type"] != "weir" {
			t.Fatalf("%v: conflist after install-cni: %s (%v)", sets, data, err)
		}
		cfg := daemonConfig(t, o)
		// The entry leaves out what equals the plugin's default.
		entry := got.Plugins[1]
		orDefault := func(key, def string) any {
			if v, ok := entry[key]; ok {
				return v
			}
			return def
		}
		if orDefault("daemonSocket", netconf.DefaultDaemonSocket) != cfg.Socket ||
			orDefault("spoolDir", netconf.DefaultSpoolDir) != filepath.Join(cfg.StateDir, "spool") {
			t.Errorf("%v: plugin entry %v, daemon socket %q state %q: they must agree", sets, entry, cfg.Socket, cfg.StateDir)
		}
		// The sidecar watches forever; --help after its arguments exits 0
		// only when every flag before it exists and its value parses.
		watch := container(t, spec.Containers, "cni-watch")
		if out, err := run(watch.Args, "--help"); err != nil {
			t.Errorf("%v: weir-install rejects the sidecar's arguments %v: %v\n%s", sets, watch.Args, err, out)
		}
	}
}
