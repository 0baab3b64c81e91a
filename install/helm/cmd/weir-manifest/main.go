// Command weir-manifest writes install/kubernetes/weir.yaml: Weir's Helm
// chart rendered with Helm's Go SDK for `kubectl apply` users (`make
// generate`; `make check-generated` fails when the committed file differs).
//
//	weir-manifest -chart DIR -name weir -namespace weir-system [-set key=value ...] -o FILE
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"helm.sh/helm/v4/pkg/strvals"

	"github.com/weirnet/weir/install/helm"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "weir-manifest:", err)
		os.Exit(1)
	}
}

// sets collects -set flags, applied in order as `helm --set` applies them.
type sets []string

func (s *sets) String() string     { return strings.Join(*s, ",") }
func (s *sets) Set(v string) error { *s = append(*s, v); return nil }

func run(args []string) error {
	fs := flag.NewFlagSet("weir-manifest", flag.ContinueOnError)
	chart := fs.String("chart", "", "chart `directory`")
	name := fs.String("name", "weir", "release `name`")
	ns := fs.String("namespace", "weir-system", "release `namespace`")
	out := fs.String("o", "", "output `file`")
	var set sets
	fs.Var(&set, "set", "`key=value` over the chart's values, as helm --set (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *chart == "" || *out == "" {
		return fmt.Errorf("-chart and -o are required")
	}
	values := map[string]any{}
	for _, s := range set {
		if err := strvals.ParseInto(s, values); err != nil {
			return fmt.Errorf("-set %q: %w", s, err)
		}
	}
	r, err := helm.Render(*chart, helm.Release{Name: *name, Namespace: *ns}, values)
	if err != nil {
		return err
	}
	header := fmt.Sprintf(`# Weir on Kubernetes without Helm: one weir-daemon per node, plus the weir
# CNI plugin chained into the node's primary CNI config.
#
#   kubectl apply -f install/kubernetes/weir.yaml
#
# GENERATED from the Helm chart install/helm/weir by `+"`make generate`"+`; do
# not edit. Release %q in namespace %q, the chart's defaults with:
#   %s
# The image (install/Containerfile) holds weir-daemon, weirctl, weir-install
# and the weir plugin. Replace %q with the image you built and pushed.
`, *name, *ns, strings.Join(set, "\n#   "), imageOf(r))
	return os.WriteFile(*out, r.Manifest(header), 0o644)
}

// imageOf is the image the DaemonSet runs, for the header.
func imageOf(r helm.Rendered) string {
	for _, d := range r.Documents {
		if d.Kind != "DaemonSet" {
			continue
		}
		for line := range strings.SplitSeq(d.YAML, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "image: "); ok {
				return v
			}
		}
	}
	return ""
}
