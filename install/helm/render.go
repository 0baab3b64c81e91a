// Package helm renders Weir's Helm chart (install/helm/weir) with Helm's own
// Go SDK, the same template engine `helm install` and `helm template` use.
// The chart's tests and the generator of install/kubernetes/weir.yaml use it,
// so the plain manifest is the chart rendered, never a second copy that can
// drift. Nothing in the daemon or the plugin imports this package: Helm's
// dependency tree stays out of Weir's binaries.
package helm

//go:generate cp ../grafana/weir.json weir/files/weir.json

import (
	"bytes"
	"cmp"
	"fmt"
	"path"
	"slices"
	"strings"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	"sigs.k8s.io/yaml"
)

// Release names the release a chart is rendered for.
type Release struct {
	Name      string
	Namespace string
}

// Document is one Kubernetes object of a rendered chart.
type Document struct {
	Template string // the template it came from, e.g. "weir/templates/daemonset.yaml"
	Kind     string
	Name     string
	YAML     string // the object, comments included, without a "---" separator
}

// Rendered is a chart rendered for one release and set of values.
type Rendered struct {
	Documents []Document // in installation order (see kindOrder)
	Notes     string     // templates/NOTES.txt, what `helm install` prints
}

// kindOrder is the order objects are written in: what others refer to
// first, as Helm's install order does.
var kindOrder = []string{"Namespace", "ServiceAccount", "Secret", "ConfigMap", "ClusterRole",
	"ClusterRoleBinding", "Service", "DaemonSet", "ServiceMonitor", "PodMonitor"}

// Render renders the chart in chartDir with values over the chart's
// values.yaml, as `helm template --namespace NS NAME DIR` would. A template
// error (including the chart's own `fail` checks) is returned.
func Render(chartDir string, rel Release, values map[string]any) (Rendered, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return Rendered{}, fmt.Errorf("load chart %s: %w", chartDir, err)
	}
	top, err := util.ToRenderValues(ch, values, common.ReleaseOptions{
		Name: rel.Name, Namespace: rel.Namespace, Revision: 1, IsInstall: true,
	}, nil)
	if err != nil {
		return Rendered{}, fmt.Errorf("chart values: %w", err)
	}
	files, err := engine.Render(ch, top)
	if err != nil {
		return Rendered{}, fmt.Errorf("render chart: %w", err)
	}
	var r Rendered
	for name, out := range files {
		switch base := path.Base(name); {
		case base == "NOTES.txt":
			r.Notes = out
			continue
		case strings.HasPrefix(base, "_"):
			continue
		}
		docs, err := split(name, out)
		if err != nil {
			return Rendered{}, err
		}
		r.Documents = append(r.Documents, docs...)
	}
	slices.SortStableFunc(r.Documents, func(a, b Document) int {
		return cmp.Or(cmp.Compare(kindRank(a.Kind), kindRank(b.Kind)), cmp.Compare(a.Name, b.Name),
			cmp.Compare(a.Template, b.Template))
	})
	return r, nil
}

func kindRank(kind string) int {
	if i := slices.Index(kindOrder, kind); i >= 0 {
		return i
	}
	return len(kindOrder)
}

// split cuts one template's output into its objects, dropping documents
// that hold only comments or nothing (a template switched off by a value).
func split(template, out string) ([]Document, error) {
	var docs []Document
	for i, part := range strings.Split("\n"+out, "\n---") {
		part = strings.Trim(part, "\n")
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(part), &head); err != nil {
			return nil, fmt.Errorf("%s document %d: %w", template, i, err)
		}
		if head.Kind == "" {
			if onlyComments(part) {
				continue
			}
			return nil, fmt.Errorf("%s document %d has no kind", template, i)
		}
		docs = append(docs, Document{Template: template, Kind: head.Kind, Name: head.Metadata.Name, YAML: part + "\n"})
	}
	return docs, nil
}

func onlyComments(s string) bool {
	for line := range strings.SplitSeq(s, "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// Manifest joins the documents into one multi-document YAML file, each
// object after a "---" line, under header (comment lines).
func (r Rendered) Manifest(header string) []byte {
	var b bytes.Buffer
	b.WriteString(header)
	for _, d := range r.Documents {
		b.WriteString("---\n")
		b.WriteString(d.YAML)
	}
	return b.Bytes()
}
