package guestproto

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestMarkerRoundTrips(t *testing.T) {
	markers := []Marker{
		{Kind: KindBegin, Fields: map[string]string{"name": "selftest"}},
		{Kind: KindEnd, Fields: map[string]string{"name": "bpf", "exit": "1", "passed": "3", "failed": "1", "seconds": "2.50"}},
		{Kind: KindError, Fields: map[string]string{"msg": `loading module "veth": exec format error`, "empty": ""}},
		{Kind: KindError, Fields: map[string]string{"msg": "tab\there\nnewline \x00 nul \\ backslash"}},
		{Kind: KindDone, Fields: map[string]string{}},
	}
	for _, want := range markers {
		line := Format("n0nce", want)
		if strings.Contains(line, "\n") {
			t.Errorf("Format(%v) spans lines: %q", want, line)
		}
		got, ok, err := Parse("n0nce", line)
		if !ok || err != nil {
			t.Fatalf("Parse(%q) = ok %v, err %v", line, ok, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Parse(Format(%v)) = %v", want, got)
		}
	}
}

func TestParseFindsMarkerAfterKernelNoiseAndIgnoresOtherRuns(t *testing.T) {
	line := "[    3.1] random: crng init done" + Format("abc", Marker{Kind: KindDone, Fields: map[string]string{"exit": "0"}}) + "\r\n"
	m, ok, err := Parse("abc", line)
	if !ok || err != nil || m.Kind != KindDone || m.Fields["exit"] != "0" {
		t.Errorf("Parse with noise before marker = %v, %v, %v", m, ok, err)
	}
	if _, ok, _ := Parse("other", line); ok {
		t.Error("a marker of another run's nonce was accepted")
	}
	if _, ok, _ := Parse("abc", "--- PASS: TestX (0.00s)"); ok {
		t.Error("an ordinary line was taken for a marker")
	}
}

func TestParseRejectsMalformedMarkers(t *testing.T) {
	for _, line := range []string{
		"WEIR-KERNELS:abc ",
		"WEIR-KERNELS:abc end novalue",
		`WEIR-KERNELS:abc end msg="unterminated`,
	} {
		if _, ok, err := Parse("abc", line); !ok || err == nil {
			t.Errorf("Parse(%q) = ok %v, err %v; want a malformed-marker error", line, ok, err)
		}
	}
}

func TestMarkerIntNamesTheBadField(t *testing.T) {
	m := Marker{Kind: KindEnd, Fields: map[string]string{"exit": "x"}}
	if _, err := m.Int("exit"); err == nil || !strings.Contains(err.Error(), `exit="x"`) {
		t.Errorf("Int(exit) error = %v; want it to name the field and value", err)
	}
	if _, err := m.Int("passed"); err == nil || !strings.Contains(err.Error(), "no passed field") {
		t.Errorf("Int(passed) error = %v; want a missing-field error", err)
	}
}

func TestCountsOnlyTopLevelResults(t *testing.T) {
	out := `=== RUN   TestA
--- PASS: TestA (0.01s)
=== RUN   TestB
=== RUN   TestB/sub
    --- FAIL: TestB/sub (0.00s)
--- FAIL: TestB (0.00s)
--- SKIP: TestC (0.00s)
    x_test.go:12: --- PASS: printed by a test
PASS`
	var c Counts
	for _, l := range strings.Split(out, "\n") {
		c.Observe(l)
	}
	if want := (Counts{Passed: 1, Failed: 1, Skipped: 1}); c != want || c.Total() != 3 {
		t.Errorf("counts = %+v (total %d); want %+v", c, c.Total(), want)
	}
}

func TestManifestRoundTripsAndValidates(t *testing.T) {
	m := Manifest{
		Nonce:   "n1",
		Modules: []string{"/lib/modules/veth.ko"},
		Env:     map[string]string{"WEIR_KERNEL_EXPECT": "btf,kprobe"},
		Tests:   []Test{{Name: "selftest", Path: "/tests/selftest/selftest.test", Dir: "/tests/selftest", Args: []string{"-test.v"}, Timeout: Duration(90 * time.Second)}},
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"timeout":"1m30s"`) {
		t.Errorf("timeout not written as a duration string: %s", b)
	}
	path := filepath.Join(t.TempDir(), "manifest.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadManifest(path)
	if err != nil {
		t.Fatalf("ReadManifest: %v", err)
	}
	if !reflect.DeepEqual(*got, m) {
		t.Errorf("manifest after round trip = %+v; want %+v", *got, m)
	}

	bad := []struct {
		name   string
		mutate func(*Manifest)
		want   string
	}{
		{"no nonce", func(m *Manifest) { m.Nonce = "" }, "nonce"},
		{"no tests", func(m *Manifest) { m.Tests = nil }, "no tests"},
		{"duplicate name", func(m *Manifest) { m.Tests = append(m.Tests, m.Tests[0]) }, "used twice"},
		{"name with space", func(m *Manifest) { m.Tests[0].Name = "a b" }, "name"},
		{"zero timeout", func(m *Manifest) { m.Tests[0].Timeout = 0 }, "timeout must be positive"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			c := m
			c.Tests = append([]Test(nil), m.Tests...)
			tt.mutate(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v; want an error mentioning %q", err, tt.want)
			}
		})
	}
	if err := os.WriteFile(path, []byte(`{"nonce":"x","tests":[{"name":"a","path":"/a","timeout":"soon"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadManifest(path); err == nil || !strings.Contains(err.Error(), `"soon"`) {
		t.Errorf("ReadManifest with a bad duration = %v; want an error naming it", err)
	}
}
