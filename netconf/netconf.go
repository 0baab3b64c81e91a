// Package netconf is the weir CNI plugin's network configuration: its fields,
// their defaults and their validation.
//
// It lives apart from the plugin binary so that weir-install can validate the
// entry it patches into a conflist with exactly the rules the plugin applies
// at run time, and so the rules are tested without a CNI runtime.
//
// Parse rejects unknown values (a typo in failurePolicy must not silently
// become the default) but tolerates unknown keys: runtimes inject
// runtimeConfig, capabilities and other keys the plugin does not use, and a
// newer weir-install may write keys an older plugin does not know yet.
// ParseLenient applies the same rules but always returns a usable
// configuration, for the commands (DEL, GC) that must not fail on a bad one.
package netconf

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/weirnet/weir/enrollapi"
)

// FailurePolicy says what the plugin does when it cannot do its own work
// (reach weir-daemon, inspect the pod's network namespace) during ADD.
type FailurePolicy string

const (
	// FailurePolicyIgnore lets the pod start unmonitored for now: the plugin
	// spools the enrollment for the daemon to replay and returns success.
	// This is the default because a monitor must never be the reason a
	// pod cannot start.
	FailurePolicyIgnore FailurePolicy = "ignore"
	// FailurePolicyFail makes ADD fail (CNI error 11, try again later), for
	// clusters where an unmonitored pod is worse than a delayed one.
	FailurePolicyFail FailurePolicy = "fail"
)

// Defaults applied by Parse to absent (or empty) fields. The socket, spool
// directory and spool bound are the enrollment contract's (package
// enrollapi), shared with weir-daemon's defaults.
const (
	DefaultDaemonSocket    = enrollapi.DefaultSocket
	DefaultTimeout         = 2 * time.Second
	DefaultFailurePolicy   = FailurePolicyIgnore
	DefaultSpoolDir        = enrollapi.DefaultSpoolDir
	DefaultSpoolMaxRecords = enrollapi.DefaultSpoolMaxRecords
	DefaultLogLevel        = slog.LevelInfo
)

// DefaultExcludeNamespaces is the excludeNamespaces value used when the key
// is absent. It is a function so callers cannot mutate a shared default.
func DefaultExcludeNamespaces() []string { return []string{"kube-system"} }

// Bounds enforced by Parse.
const (
	// MaxTimeout bounds one call to the daemon. The plugin runs inside the
	// runtime's pod-creation path; a minute is already far longer than any
	// healthy local daemon needs.
	MaxTimeout = time.Minute
	// MaxSpoolMaxRecords bounds the spool so a typo cannot let a daemon
	// that never comes back fill the node's disk.
	MaxSpoolMaxRecords = 1 << 20
	// maxUnixSocketPath is the usable length of sockaddr_un.sun_path on
	// Linux (108 bytes including the terminating NUL).
	maxUnixSocketPath = 107
)

// NetConf is the weir plugin's configuration, as found in its entry of a
// conflist, after defaults have been applied.
//
// Do not json.Marshal a NetConf: it would pick up the embedded PluginConf's
// MarshalJSON and drop the weir fields.
type NetConf struct {
	types.PluginConf

	// DaemonSocket is the path of weir-daemon's enrollment gRPC socket.
	DaemonSocket string
	// Timeout bounds each call to the daemon.
	Timeout time.Duration
	// FailurePolicy says what ADD does when the daemon is unreachable.
	FailurePolicy FailurePolicy
	// SpoolDir is where calls the daemon could not take are queued.
	SpoolDir string
	// SpoolMaxRecords bounds the number of queued calls.
	SpoolMaxRecords int
	// ExcludeNamespaces lists Kubernetes namespaces whose pods are passed
	// through without enrollment. Empty means exclude nothing.
	ExcludeNamespaces []string
	// LogFile is where the plugin appends JSON logs; empty means no logs
	// (the plugin's stdout belongs to the CNI result).
	LogFile string
	// LogLevel is the minimum level written to LogFile.
	LogLevel slog.Level
}

// fileConf is the JSON shape of the weir fields. Pointers and nil slices
// tell an absent key (take the default) from an explicit value.
type fileConf struct {
	DaemonSocket      *string   `json:"daemonSocket"`
	Timeout           *string   `json:"timeout"`
	FailurePolicy     *string   `json:"failurePolicy"`
	SpoolDir          *string   `json:"spoolDir"`
	SpoolMaxRecords   *int      `json:"spoolMaxRecords"`
	ExcludeNamespaces *[]string `json:"excludeNamespaces"`
	LogFile           *string   `json:"logFile"`
	LogLevel          *string   `json:"logLevel"`
}

var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

// Parse decodes the plugin's stdin configuration, fills defaults and
// validates every weir field. Errors name the offending field and value.
// prevResult is left raw (PluginConf.RawPrevResult): only ADD and CHECK need
// it, and they parse it with version.ParsePrevResult.
func Parse(stdin []byte) (*NetConf, error) {
	c, err := ParseLenient(stdin)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ParseLenient is Parse for commands that must succeed whatever the weir
// entry says (DEL and GC: a failing DEL stops libcni before the main plugin
// runs, leaking the pod's address and veth). It always returns a usable
// configuration: every field that is malformed or invalid keeps its default
// (logFile: no log), and the returned error, if any, lists what was wrong so
// the caller can log it. Only stdin that is not a JSON object at all leaves
// the CNI fields (name, cniVersion) empty.
func ParseLenient(stdin []byte) (*NetConf, error) {
	c := &NetConf{
		DaemonSocket:      DefaultDaemonSocket,
		Timeout:           DefaultTimeout,
		FailurePolicy:     DefaultFailurePolicy,
		SpoolDir:          DefaultSpoolDir,
		SpoolMaxRecords:   DefaultSpoolMaxRecords,
		ExcludeNamespaces: DefaultExcludeNamespaces(),
		LogLevel:          DefaultLogLevel,
	}
	// The CNI fields and the weir fields are decoded apart, and each weir
	// field on its own, so one field of the wrong JSON type costs only
	// that field.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(stdin, &raw); err != nil {
		return c, decodeError(err)
	}
	var errs []error
	if err := json.Unmarshal(stdin, &c.PluginConf); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			err = fieldDecodeError(typeErr.Field, err)
		}
		errs = append(errs, err)
	}
	var fc fileConf
	for _, f := range []struct {
		key string
		dst any
	}{
		{"daemonSocket", &fc.DaemonSocket}, {"timeout", &fc.Timeout}, {"failurePolicy", &fc.FailurePolicy},
		{"spoolDir", &fc.SpoolDir}, {"spoolMaxRecords", &fc.SpoolMaxRecords},
		{"excludeNamespaces", &fc.ExcludeNamespaces}, {"logFile", &fc.LogFile}, {"logLevel", &fc.LogLevel},
	} {
		if v, ok := raw[f.key]; ok {
			if err := json.Unmarshal(v, f.dst); err != nil {
				errs = append(errs, fieldDecodeError(f.key, err))
			}
		}
	}

	if c.Name == "" {
		errs = append(errs, errors.New(`name: must not be empty (weir keys enrollments by network name)`))
	}
	if fc.DaemonSocket != nil {
		if err := checkAbsPath("daemonSocket", *fc.DaemonSocket); err != nil {
			errs = append(errs, err)
		} else if len(*fc.DaemonSocket) > maxUnixSocketPath {
			errs = append(errs, fmt.Errorf("daemonSocket %q: %d bytes, longer than the %d a unix socket path can hold",
				*fc.DaemonSocket, len(*fc.DaemonSocket), maxUnixSocketPath))
		} else {
			c.DaemonSocket = *fc.DaemonSocket
		}
	}
	if fc.Timeout != nil {
		d, err := time.ParseDuration(*fc.Timeout)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("timeout %q: not a Go duration such as \"2s\" or \"500ms\"", *fc.Timeout))
		case d <= 0 || d > MaxTimeout:
			errs = append(errs, fmt.Errorf("timeout %q: must be greater than 0 and at most %s", *fc.Timeout, MaxTimeout))
		default:
			c.Timeout = d
		}
	}
	if fc.FailurePolicy != nil {
		if fp := FailurePolicy(*fc.FailurePolicy); fp == FailurePolicyIgnore || fp == FailurePolicyFail {
			c.FailurePolicy = fp
		} else {
			errs = append(errs, fmt.Errorf("failurePolicy %q: must be %q or %q",
				*fc.FailurePolicy, FailurePolicyIgnore, FailurePolicyFail))
		}
	}
	if fc.SpoolDir != nil {
		if err := checkAbsPath("spoolDir", *fc.SpoolDir); err != nil {
			errs = append(errs, err)
		} else {
			c.SpoolDir = *fc.SpoolDir
		}
	}
	if fc.SpoolMaxRecords != nil {
		if n := *fc.SpoolMaxRecords; n < 1 || n > MaxSpoolMaxRecords {
			errs = append(errs, fmt.Errorf("spoolMaxRecords %d: must be between 1 and %d", n, MaxSpoolMaxRecords))
		} else {
			c.SpoolMaxRecords = n
		}
	}
	if fc.ExcludeNamespaces != nil {
		// An explicit list, even an empty one, replaces the default; JSON
		// null counts as absent.
		c.ExcludeNamespaces = nil
		for i, ns := range *fc.ExcludeNamespaces {
			if ns == "" {
				errs = append(errs, fmt.Errorf("excludeNamespaces[%d] %q: must not be empty", i, ns))
				continue
			}
			c.ExcludeNamespaces = append(c.ExcludeNamespaces, ns)
		}
		if c.ExcludeNamespaces == nil {
			c.ExcludeNamespaces = []string{}
		}
	}
	if fc.LogFile != nil && *fc.LogFile != "" {
		if err := checkAbsPath("logFile", *fc.LogFile); err != nil {
			errs = append(errs, err)
		} else {
			c.LogFile = *fc.LogFile
		}
	}
	if fc.LogLevel != nil {
		if lvl, ok := logLevels[*fc.LogLevel]; ok {
			c.LogLevel = lvl
		} else {
			errs = append(errs, fmt.Errorf(`logLevel %q: must be one of "debug", "info", "warn", "error"`, *fc.LogLevel))
		}
	}

	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("invalid weir network configuration: %w", err)
	}
	return c, nil
}

// Excluded reports whether pods of the Kubernetes namespace podNamespace are
// passed through without enrollment. Pods without a namespace (runtimes that
// are not Kubernetes) are never excluded.
func (c *NetConf) Excluded(podNamespace string) bool {
	return podNamespace != "" && slices.Contains(c.ExcludeNamespaces, podNamespace)
}

func checkAbsPath(field, p string) error {
	if p == "" {
		return fmt.Errorf("%s %q: must not be empty", field, p)
	}
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%s %q: must be an absolute path", field, p)
	}
	return nil
}

// decodeError turns encoding/json's errors into ones that name the field in
// the configuration's own terms.
func decodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return fmt.Errorf("invalid weir network configuration: %s: got a JSON %s, want %s",
			typeErr.Field, typeErr.Value, jsonKind(typeErr.Type.String()))
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return fmt.Errorf("invalid weir network configuration: malformed JSON at byte %d: %w", syntaxErr.Offset, err)
	}
	return fmt.Errorf("invalid weir network configuration: %w", err)
}

// fieldDecodeError names the weir field whose JSON value has the wrong type.
func fieldDecodeError(key string, err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return fmt.Errorf("%s: got a JSON %s, want %s", key, typeErr.Value, jsonKind(typeErr.Type.String()))
	}
	return fmt.Errorf("%s: %w", key, err)
}

// jsonKind names the JSON kind a Go type of fileConf decodes from.
func jsonKind(goType string) string {
	switch goType {
	case "string", "*string":
		return "string"
	case "int", "*int":
		return "number"
	case "[]string", "*[]string":
		return "list of strings"
	default:
		return goType
	}
}
