package main

import (
	"encoding/json"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The Kubernetes manifest runs weir-install twice (init container and
// sidecar); both argument lists must parse, describe the same entry, and
// differ only by the watch flags.
func TestKubernetesManifestArgsParse(t *testing.T) {
	data, err := os.ReadFile("../../kubernetes/weir.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type ctr struct {
		Name    string   `json:"name"`
		Command []string `json:"command"`
		Args    []string `json:"args"`
	}
	args := map[string][]string{}
	for _, doc := range strings.Split(string(data), "\n---\n") {
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		var o struct {
			Kind string `json:"kind"`
			Spec struct {
				Template struct {
					Spec struct {
						InitContainers []ctr `json:"initContainers"`
						Containers     []ctr `json:"containers"`
					} `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(js, &o); err != nil || o.Kind != "DaemonSet" {
			continue
		}
		for _, c := range slices.Concat(o.Spec.Template.Spec.InitContainers, o.Spec.Template.Spec.Containers) {
			if len(c.Command) == 1 && strings.HasSuffix(c.Command[0], "/weir-install") {
				args[c.Name] = c.Args
			}
		}
	}
	if len(args) != 2 {
		t.Fatalf("found weir-install in %d containers (%v), want init container and sidecar", len(args), args)
	}

	parsed := map[string]options{}
	for name, a := range args {
		o, err := parseFlags(a, io.Discard)
		if err != nil {
			t.Fatalf("%s: weir-install rejects %v: %v", name, a, err)
		}
		parsed[name] = o
	}
	initC, watch := parsed["install-cni"], parsed["cni-watch"]
	if initC.watch || !watch.watch || !watch.uninstallOnExit {
		t.Errorf("install-cni watch=%v; cni-watch watch=%v uninstall-on-exit=%v", initC.watch, watch.watch, watch.uninstallOnExit)
	}
	if !reflect.DeepEqual(initC.entry, watch.entry) || initC.cniConfDir != watch.cniConfDir || initC.cniBinDir != watch.cniBinDir {
		t.Errorf("init container and sidecar disagree:\n%+v\n%+v", initC, watch)
	}
}
