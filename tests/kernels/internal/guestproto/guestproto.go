// Package guestproto is the contract between the kernel test harness's host
// side (vmrun) and its guest side (the /init program): the manifest the host
// packs into the initramfs, and the marker lines the guest prints on the
// serial console.
//
// The serial console is the only channel out of the guest, and it also
// carries kernel messages and whatever the tests print. Markers therefore
// start with a per-run nonce chosen by the host, so a test that happens to
// print something marker-like cannot forge a result, and the host treats a
// run without a "done" marker as failed however the VM exited.
package guestproto

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// GuestEnv is set to "1" in the environment of every test binary the guest
// runs, so a test can tell the harness's guest from a host.
const GuestEnv = "WEIR_KERNEL_GUEST"

// ManifestPath is where the host places the manifest inside the initramfs.
const ManifestPath = "/weir/manifest.json"

// Exit codes the guest reports in its "done" marker and through the
// isa-debug-exit device.
const (
	ExitPassed      = 0 // every test binary exited 0
	ExitTestsFailed = 1 // at least one test binary failed or timed out
	ExitHarness     = 2 // the guest could not set itself up (mounts, modules, lo)
)

// Manifest tells the guest what to run.
type Manifest struct {
	// Nonce prefixes every marker line of this run.
	Nonce string `json:"nonce"`
	// Modules are paths of kernel modules inside the initramfs, in load order
	// (dependencies first).
	Modules []string `json:"modules,omitempty"`
	// Env is added to every test binary's environment.
	Env map[string]string `json:"env,omitempty"`
	// Tests run one after the other, in order.
	Tests []Test `json:"tests"`
}

// Test is one Go test binary to run in the guest.
type Test struct {
	Name string   `json:"name"`
	Path string   `json:"path"`           // binary inside the initramfs
	Dir  string   `json:"dir"`            // working directory (holds testdata/ if any)
	Args []string `json:"args,omitempty"` // e.g. -test.v -test.timeout=2m
	// Timeout bounds the binary's run; the guest kills it when exceeded.
	Timeout Duration `json:"timeout"`
}

// Duration is a time.Duration that reads and writes as "1m30s" in JSON.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"90s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// Validate reports the first problem that would make the guest unable to
// follow the manifest.
func (m *Manifest) Validate() error {
	if m.Nonce == "" || strings.ContainsAny(m.Nonce, " \t\r\n") {
		return fmt.Errorf("manifest: nonce %q must be non-empty and without spaces", m.Nonce)
	}
	if len(m.Tests) == 0 {
		return errors.New("manifest: no tests to run")
	}
	seen := map[string]bool{}
	for i, t := range m.Tests {
		switch {
		case t.Name == "" || strings.ContainsAny(t.Name, " \t\r\n=\""):
			return fmt.Errorf("manifest: test %d: name %q must be non-empty, without spaces, '=' or quotes", i, t.Name)
		case seen[t.Name]:
			return fmt.Errorf("manifest: test name %q used twice", t.Name)
		case t.Path == "":
			return fmt.Errorf("manifest: test %q: empty path", t.Name)
		case t.Timeout <= 0:
			return fmt.Errorf("manifest: test %q: timeout must be positive, got %v", t.Name, time.Duration(t.Timeout))
		}
		seen[t.Name] = true
	}
	return nil
}

// ReadManifest reads and validates a manifest file.
func ReadManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parsing manifest %s: %w", path, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Marker kinds, in the order a guest prints them.
const (
	KindInfo  = "info"  // release=... once setup is done
	KindBegin = "begin" // name=...
	KindEnd   = "end"   // name=... exit=... passed=... failed=... skipped=... seconds=...
	KindError = "error" // msg=... : a harness failure in the guest
	KindDone  = "done"  // exit=...
)

// markerTag starts every marker; the nonce follows it after a colon.
const markerTag = "WEIR-KERNELS:"

// Marker is one structured line from the guest.
type Marker struct {
	Kind   string
	Fields map[string]string
}

// Format renders m as a single line (without newline) for the run with nonce.
// Fields are written in sorted order; values are quoted when they need it.
func Format(nonce string, m Marker) string {
	var b strings.Builder
	b.WriteString(markerTag)
	b.WriteString(nonce)
	b.WriteByte(' ')
	b.WriteString(m.Kind)
	keys := make([]string, 0, len(m.Fields))
	for k := range m.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := m.Fields[k]
		b.WriteByte(' ')
		b.WriteString(k)
		b.WriteByte('=')
		if needsQuote(v) {
			v = strconv.Quote(v)
		}
		b.WriteString(v)
	}
	return b.String()
}

// needsQuote reports whether v would not survive Parse unquoted.
func needsQuote(v string) bool {
	return v == "" || strings.IndexFunc(v, func(r rune) bool {
		return r == ' ' || r == '"' || r == '\\' || !unicode.IsPrint(r)
	}) >= 0
}

// Parse recognises a marker of the run with nonce anywhere in line (kernel
// messages on the same console can end up before it on the same line). It
// returns ok=false for lines that carry no marker of this run, and an error
// for a marker of this run that is malformed.
func Parse(nonce, line string) (m Marker, ok bool, err error) {
	prefix := markerTag + nonce + " "
	i := strings.Index(line, prefix)
	if i < 0 {
		return Marker{}, false, nil
	}
	rest := strings.TrimRight(line[i+len(prefix):], "\r\n")
	kind, rest, _ := strings.Cut(rest, " ")
	if kind == "" {
		return Marker{}, true, fmt.Errorf("marker without kind: %q", line)
	}
	m = Marker{Kind: kind, Fields: map[string]string{}}
	for rest = strings.TrimLeft(rest, " "); rest != ""; rest = strings.TrimLeft(rest, " ") {
		key, after, found := strings.Cut(rest, "=")
		if !found || key == "" || strings.Contains(key, " ") {
			return Marker{}, true, fmt.Errorf("marker field without key=value at %q", rest)
		}
		var val string
		if strings.HasPrefix(after, `"`) {
			q, err := strconv.QuotedPrefix(after)
			if err != nil {
				return Marker{}, true, fmt.Errorf("marker field %s: bad quoted value: %w", key, err)
			}
			val, _ = strconv.Unquote(q)
			rest = after[len(q):]
		} else {
			val, rest, _ = strings.Cut(after, " ")
		}
		m.Fields[key] = val
	}
	return m, true, nil
}

// Int returns the integer value of field key, or an error naming the field.
func (m Marker) Int(key string) (int, error) {
	v, ok := m.Fields[key]
	if !ok {
		return 0, fmt.Errorf("%s marker has no %s field", m.Kind, key)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s marker field %s=%q is not an integer", m.Kind, key, v)
	}
	return n, nil
}

// Counts tallies the top-level results a `go test -test.v` binary prints.
// Subtests are not counted: they are indented, and their parent's result
// already reflects them.
type Counts struct {
	Passed, Failed, Skipped int
}

// Observe updates c from one line of test output.
func (c *Counts) Observe(line string) {
	switch {
	case strings.HasPrefix(line, "--- PASS: "):
		c.Passed++
	case strings.HasPrefix(line, "--- FAIL: "):
		c.Failed++
	case strings.HasPrefix(line, "--- SKIP: "):
		c.Skipped++
	}
}

// Total is the number of top-level tests that reported a result.
func (c Counts) Total() int { return c.Passed + c.Failed + c.Skipped }
