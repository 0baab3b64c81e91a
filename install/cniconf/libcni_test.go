package cniconf

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

// What Install writes must load with libcni, the parser every runtime uses,
// with Weir chained exactly once (or, after Uninstall, not at all).
func TestOutputLoadsWithLibcni(t *testing.T) {
	for _, tc := range goldenCases {
		if tc.wantErr != "" {
			continue
		}
		wantWeir := 1
		if tc.uninstall {
			wantWeir = 0
		}
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join("testdata", tc.name, "out", tc.wantPath)
			list, err := libcni.NetworkConfFromFile(path)
			if err != nil {
				t.Fatalf("libcni rejects %s: %v", path, err)
			}
			weir := 0
			for _, p := range list.Plugins {
				if p.Network.Type == PluginType {
					weir++
				}
			}
			if weir != wantWeir {
				t.Errorf("libcni sees %d weir plugins, want %d", weir, wantWeir)
			}
		})
	}
}

// A converted .conf holds the same plugin list libcni's own upconversion
// (ConfListFromConf) produces, plus Weir.
func TestConversionMatchesLibcni(t *testing.T) {
	for _, tc := range []struct{ name, in, out string }{
		{"conf-to-conflist", "10-bridge.conf", "10-bridge.conflist"},
		{"json-to-conflist", "10-net.json", "10-net.conflist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			//lint:ignore SA1019 the legacy .conf reader is the reference this test compares the installer's upconversion with
			single, err := libcni.ConfFromFile(filepath.Join("testdata", tc.name, "in", tc.in))
			if err != nil {
				t.Fatal(err)
			}
			//lint:ignore SA1019 libcni's own upconversion of a .conf is what the installer must match
			want, err := libcni.ConfListFromConf(single)
			if err != nil {
				t.Fatal(err)
			}
			got, err := libcni.NetworkConfFromFile(filepath.Join("testdata", tc.name, "out", tc.out))
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != want.Name || got.CNIVersion != want.CNIVersion {
				t.Errorf("list name/version %q/%q, libcni's %q/%q", got.Name, got.CNIVersion, want.Name, want.CNIVersion)
			}
			if len(got.Plugins) != 2 || got.Plugins[1].Network.Type != PluginType {
				t.Fatalf("plugins %d, want the original then weir", len(got.Plugins))
			}
			var a, b any
			if err := json.Unmarshal(got.Plugins[0].Bytes, &a); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(want.Plugins[0].Bytes, &b); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(a, b) {
				t.Errorf("converted plugin %v, libcni's %v", a, b)
			}
		})
	}
}
