package cniconf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/weirnet/weir/netconf"
)

// Entry is the Weir plugin entry to chain into the primary config. Each
// netconf field is written only when it differs from the plugin's default, so
// a config written with defaults keeps following the plugin's defaults.
type Entry struct {
	// DaemonSocket is netconf's daemonSocket; empty means the default.
	DaemonSocket string
	// Timeout is netconf's timeout; zero means the default.
	Timeout time.Duration
	// FailurePolicy is netconf's failurePolicy ("ignore" or "fail"); empty
	// means the default.
	FailurePolicy string
	// SpoolDir is netconf's spoolDir; empty means the default.
	SpoolDir string
	// SpoolMaxRecords is netconf's spoolMaxRecords; zero means the default.
	SpoolMaxRecords int
	// ExcludeNamespaces is netconf's excludeNamespaces. nil means the
	// default; an empty non-nil slice means "exclude nothing".
	ExcludeNamespaces []string
	// LogFile is netconf's logFile; empty means no log file.
	LogFile string
	// LogLevel is netconf's logLevel; empty means the default.
	LogLevel string

	// SupportedVersions are the CNI spec versions the installed weir binary
	// accepts (its VERSION answer). It is not written: Install refuses a
	// config whose cniVersion is not among them, because the runtime would
	// then fail every pod's ADD on the version mismatch. Empty skips the
	// check.
	SupportedVersions []string
}

// object renders the entry as the generic JSON object stored in a plugin
// list, normalized through an encode/decode round trip so it compares equal
// (reflect.DeepEqual) to the same entry decoded from a file.
func (e Entry) object() (map[string]any, error) {
	m := map[string]any{"type": PluginType}
	setString := func(key, v, def string) {
		if v != "" && v != def {
			m[key] = v
		}
	}
	setString("daemonSocket", e.DaemonSocket, netconf.DefaultDaemonSocket)
	if e.Timeout != 0 && e.Timeout != netconf.DefaultTimeout {
		m["timeout"] = e.Timeout.String()
	}
	setString("failurePolicy", e.FailurePolicy, string(netconf.DefaultFailurePolicy))
	setString("spoolDir", e.SpoolDir, netconf.DefaultSpoolDir)
	if e.SpoolMaxRecords != 0 && e.SpoolMaxRecords != netconf.DefaultSpoolMaxRecords {
		m["spoolMaxRecords"] = e.SpoolMaxRecords
	}
	if e.ExcludeNamespaces != nil && !slices.Equal(e.ExcludeNamespaces, netconf.DefaultExcludeNamespaces()) {
		m["excludeNamespaces"] = e.ExcludeNamespaces
	}
	setString("logFile", e.LogFile, "")
	setString("logLevel", e.LogLevel, strings.ToLower(netconf.DefaultLogLevel.String()))

	data, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode weir entry: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var out map[string]any
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("decode weir entry: %w", err)
	}
	return out, nil
}

// Validate checks the entry with the plugin's own rules (netconf.Parse), so
// weir-install never writes an entry the plugin would reject on every pod.
func (e Entry) Validate() error {
	obj, err := e.object()
	if err != nil {
		return err
	}
	// Parse also needs what libcni injects into a chained plugin's config.
	obj["name"] = "weir-install-validation"
	obj["cniVersion"] = "1.0.0"
	data, err := json.Marshal(obj)
	if err != nil {
		return fmt.Errorf("encode weir entry: %w", err)
	}
	if _, err := netconf.Parse(data); err != nil {
		return fmt.Errorf("weir entry: %w", err)
	}
	return nil
}

// checkVersion refuses configs whose cniVersion the weir binary does not
// support.
func (e Entry) checkVersion(path string, doc *document) error {
	if len(e.SupportedVersions) == 0 {
		return nil
	}
	v, _ := doc.obj["cniVersion"].(string)
	if v == "" {
		return fmt.Errorf("CNI config %s: no cniVersion; the weir plugin supports %s", path, strings.Join(e.SupportedVersions, ", "))
	}
	if !slices.Contains(e.SupportedVersions, v) {
		return fmt.Errorf("CNI config %s: cniVersion %q is not supported by the weir plugin (supports %s); chaining it would fail every pod's ADD",
			path, v, strings.Join(e.SupportedVersions, ", "))
	}
	return nil
}
