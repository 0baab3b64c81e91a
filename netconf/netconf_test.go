package netconf

import (
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

// conf builds a weir conflist entry with extra raw JSON members appended.
func conf(extra string) []byte {
	s := `{"cniVersion":"1.1.0","name":"weirnet","type":"weir"`
	if extra != "" {
		s += "," + extra
	}
	return []byte(s + "}")
}

func TestParseAppliesDefaultsWhenKeysAreAbsent(t *testing.T) {
	c, err := Parse(conf(""))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.CNIVersion != "1.1.0" || c.Name != "weirnet" || c.Type != "weir" {
		t.Errorf("PluginConf = %+v, want cniVersion 1.1.0, name weirnet, type weir", c.PluginConf)
	}
	checks := []struct {
		field     string
		got, want any
	}{
		{"daemonSocket", c.DaemonSocket, "/run/weir/weir.sock"},
		{"timeout", c.Timeout, 2 * time.Second},
		{"failurePolicy", c.FailurePolicy, FailurePolicyIgnore},
		{"spoolDir", c.SpoolDir, "/var/lib/weir/spool"},
		{"spoolMaxRecords", c.SpoolMaxRecords, 1024},
		{"logFile", c.LogFile, ""},
		{"logLevel", c.LogLevel, slog.LevelInfo},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want default %v", ch.field, ch.got, ch.want)
		}
	}
	if !slices.Equal(c.ExcludeNamespaces, []string{"kube-system"}) {
		t.Errorf("excludeNamespaces = %q, want default [kube-system]", c.ExcludeNamespaces)
	}
}

func TestParseTakesExplicitValues(t *testing.T) {
	tests := []struct {
		name  string
		extra string
		check func(*NetConf) bool
	}{
		{"daemonSocket", `"daemonSocket":"/tmp/w.sock"`, func(c *NetConf) bool { return c.DaemonSocket == "/tmp/w.sock" }},
		{"timeout ms", `"timeout":"250ms"`, func(c *NetConf) bool { return c.Timeout == 250*time.Millisecond }},
		{"timeout at max", `"timeout":"1m"`, func(c *NetConf) bool { return c.Timeout == time.Minute }},
		{"failurePolicy fail", `"failurePolicy":"fail"`, func(c *NetConf) bool { return c.FailurePolicy == FailurePolicyFail }},
		{"failurePolicy ignore", `"failurePolicy":"ignore"`, func(c *NetConf) bool { return c.FailurePolicy == FailurePolicyIgnore }},
		{"spoolDir", `"spoolDir":"/srv/spool"`, func(c *NetConf) bool { return c.SpoolDir == "/srv/spool" }},
		{"spoolMaxRecords 1", `"spoolMaxRecords":1`, func(c *NetConf) bool { return c.SpoolMaxRecords == 1 }},
		{"spoolMaxRecords max", `"spoolMaxRecords":1048576`, func(c *NetConf) bool { return c.SpoolMaxRecords == MaxSpoolMaxRecords }},
		{"excludeNamespaces list", `"excludeNamespaces":["a","b"]`, func(c *NetConf) bool {
			return slices.Equal(c.ExcludeNamespaces, []string{"a", "b"})
		}},
		{"excludeNamespaces empty excludes nothing", `"excludeNamespaces":[]`, func(c *NetConf) bool {
			return len(c.ExcludeNamespaces) == 0 && !c.Excluded("kube-system")
		}},
		{"excludeNamespaces null is default", `"excludeNamespaces":null`, func(c *NetConf) bool {
			return slices.Equal(c.ExcludeNamespaces, []string{"kube-system"})
		}},
		{"logFile", `"logFile":"/var/log/weir.log"`, func(c *NetConf) bool { return c.LogFile == "/var/log/weir.log" }},
		{"logFile empty means none", `"logFile":""`, func(c *NetConf) bool { return c.LogFile == "" }},
		{"logLevel debug", `"logLevel":"debug"`, func(c *NetConf) bool { return c.LogLevel == slog.LevelDebug }},
		{"logLevel info", `"logLevel":"info"`, func(c *NetConf) bool { return c.LogLevel == slog.LevelInfo }},
		{"logLevel warn", `"logLevel":"warn"`, func(c *NetConf) bool { return c.LogLevel == slog.LevelWarn }},
		{"logLevel error", `"logLevel":"error"`, func(c *NetConf) bool { return c.LogLevel == slog.LevelError }},
		{"unknown keys tolerated", `"runtimeConfig":{"portMappings":[]},"capabilities":{"portMappings":true},"futureKey":42`,
			func(c *NetConf) bool { return c.Capabilities["portMappings"] }},
		{"prevResult kept raw", `"prevResult":{"cniVersion":"1.1.0","ips":[]}`,
			func(c *NetConf) bool { return c.RawPrevResult != nil && c.PrevResult == nil }},
		{"valid attachments", `"cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]`,
			func(c *NetConf) bool {
				return len(c.ValidAttachments) == 1 && c.ValidAttachments[0].ContainerID == "c1" && c.ValidAttachments[0].IfName == "eth0"
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(conf(tt.extra))
			if err != nil {
				t.Fatalf("Parse(%s): %v", tt.extra, err)
			}
			if !tt.check(c) {
				t.Errorf("Parse(%s) = %+v: value not taken", tt.extra, c)
			}
		})
	}
}

func TestParseRejectsBadValuesNamingFieldAndValue(t *testing.T) {
	tests := []struct {
		name  string
		stdin []byte
		want  []string // substrings the error must contain
	}{
		{"malformed JSON", []byte(`{"name":"x",`), []string{"malformed JSON"}},
		{"not an object", []byte(`[1,2]`), []string{"invalid weir network configuration"}},
		{"missing name", []byte(`{"cniVersion":"1.1.0","type":"weir"}`), []string{"name: must not be empty"}},
		{"failurePolicy unknown", conf(`"failurePolicy":"sometimes"`), []string{`failurePolicy "sometimes": must be "ignore" or "fail"`}},
		{"failurePolicy case", conf(`"failurePolicy":"Ignore"`), []string{`failurePolicy "Ignore"`}},
		{"timeout not a duration", conf(`"timeout":"soon"`), []string{`timeout "soon": not a Go duration`}},
		{"timeout empty", conf(`"timeout":""`), []string{`timeout "": not a Go duration`}},
		{"timeout zero", conf(`"timeout":"0s"`), []string{`timeout "0s": must be greater than 0 and at most 1m0s`}},
		{"timeout negative", conf(`"timeout":"-1s"`), []string{`timeout "-1s": must be greater than 0`}},
		{"timeout over max", conf(`"timeout":"61s"`), []string{`timeout "61s": must be greater than 0 and at most 1m0s`}},
		{"timeout as number", conf(`"timeout":5`), []string{"timeout: got a JSON number, want string"}},
		{"daemonSocket relative", conf(`"daemonSocket":"weir.sock"`), []string{`daemonSocket "weir.sock": must be an absolute path`}},
		{"daemonSocket empty", conf(`"daemonSocket":""`), []string{`daemonSocket "": must not be empty`}},
		{"daemonSocket too long", conf(`"daemonSocket":"/` + strings.Repeat("s", 120) + `"`), []string{"longer than the 107 a unix socket path can hold"}},
		{"spoolDir relative", conf(`"spoolDir":"spool"`), []string{`spoolDir "spool": must be an absolute path`}},
		{"spoolDir empty", conf(`"spoolDir":""`), []string{`spoolDir "": must not be empty`}},
		{"spoolMaxRecords zero", conf(`"spoolMaxRecords":0`), []string{"spoolMaxRecords 0: must be between 1 and 1048576"}},
		{"spoolMaxRecords negative", conf(`"spoolMaxRecords":-5`), []string{"spoolMaxRecords -5: must be between 1"}},
		{"spoolMaxRecords over max", conf(`"spoolMaxRecords":1048577`), []string{"spoolMaxRecords 1048577: must be between 1 and 1048576"}},
		{"spoolMaxRecords string", conf(`"spoolMaxRecords":"10"`), []string{"spoolMaxRecords: got a JSON string, want number"}},
		{"spoolMaxRecords fraction", conf(`"spoolMaxRecords":1.5`), []string{"spoolMaxRecords: got a JSON number 1.5, want number"}},
		{"excludeNamespaces not a list", conf(`"excludeNamespaces":"kube-system"`), []string{"excludeNamespaces: got a JSON string, want list of strings"}},
		{"excludeNamespaces empty entry", conf(`"excludeNamespaces":["a",""]`), []string{`excludeNamespaces[1] "": must not be empty`}},
		{"logFile relative", conf(`"logFile":"weir.log"`), []string{`logFile "weir.log": must be an absolute path`}},
		{"logLevel unknown", conf(`"logLevel":"trace"`), []string{`logLevel "trace": must be one of "debug", "info", "warn", "error"`}},
		{"logLevel upper case", conf(`"logLevel":"DEBUG"`), []string{`logLevel "DEBUG"`}},
		{"every error reported at once", conf(`"failurePolicy":"x","logLevel":"y"`), []string{`failurePolicy "x"`, `logLevel "y"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.stdin)
			if err == nil {
				t.Fatalf("Parse(%s) = %+v, want an error", tt.stdin, c)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse(%s) error %q does not contain %q", tt.stdin, err, w)
				}
			}
		})
	}
}

func TestExcludedOnlyMatchesListedNamespaces(t *testing.T) {
	c, err := Parse(conf(`"excludeNamespaces":["kube-system","monitoring"]`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	for ns, want := range map[string]bool{
		"kube-system": true, "monitoring": true, "default": false,
		"Kube-System": false, "": false, // no namespace: not Kubernetes, never excluded
	} {
		if got := c.Excluded(ns); got != want {
			t.Errorf("Excluded(%q) = %v, want %v", ns, got, want)
		}
	}
}

func TestDefaultExcludeNamespacesIsNotShared(t *testing.T) {
	a, err := Parse(conf(""))
	if err != nil {
		t.Fatal(err)
	}
	a.ExcludeNamespaces[0] = "mutated"
	b, err := Parse(conf(""))
	if err != nil {
		t.Fatal(err)
	}
	if b.ExcludeNamespaces[0] != "kube-system" {
		t.Errorf("mutating one NetConf's default list changed another's: %q", b.ExcludeNamespaces)
	}
}

func TestParseLenientKeepsDefaultsForBadFieldsAndReportsThem(t *testing.T) {
	c, err := ParseLenient(conf(`"failurePolicy":"Ignore","timeout":5,"spoolDir":"/s","daemonSocket":"rel.sock","excludeNamespaces":["a",""]`))
	if err == nil {
		t.Fatal("ParseLenient returned no error for an invalid entry")
	}
	for _, field := range []string{"failurePolicy", "timeout", "daemonSocket", "excludeNamespaces[1]"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error %q does not name %s", err, field)
		}
	}
	if c.Name != "weirnet" || c.FailurePolicy != DefaultFailurePolicy || c.Timeout != DefaultTimeout ||
		c.DaemonSocket != DefaultDaemonSocket || c.SpoolDir != "/s" || !slices.Equal(c.ExcludeNamespaces, []string{"a"}) {
		t.Errorf("lenient conf = %+v, want name weirnet, defaults for the bad fields, spoolDir /s, excludeNamespaces [a]", c)
	}
	if _, err := Parse(conf(`"failurePolicy":"Ignore"`)); err == nil {
		t.Error("Parse accepted what ParseLenient reported")
	}
}

func TestParseLenientOnGarbageReturnsDefaults(t *testing.T) {
	c, err := ParseLenient([]byte("not json"))
	if err == nil || c == nil || c.DaemonSocket != DefaultDaemonSocket || c.Name != "" {
		t.Errorf("ParseLenient(garbage) = %+v, %v; want defaults and an error", c, err)
	}
}

// Parse and ParseLenient read whatever the runtime hands the plugin: they
// must never panic, ParseLenient must always return a usable configuration,
// and the two must agree on what is valid.
func FuzzParse(f *testing.F) {
	f.Add(conf(""))
	f.Add(conf(`"failurePolicy":"Ignore","timeout":5,"excludeNamespaces":["",""],"logLevel":"loud"`))
	f.Add(conf(`"daemonSocket":"/` + strings.Repeat("s", 200) + `","spoolMaxRecords":-1`))
	f.Add([]byte(`{"name":42}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		strict, serr := Parse(b)
		lenient, lerr := ParseLenient(b)
		if lenient == nil {
			t.Fatal("ParseLenient returned no configuration")
		}
		if (serr == nil) != (lerr == nil) {
			t.Fatalf("Parse error %v, ParseLenient error %v: they disagree", serr, lerr)
		}
		if serr == nil && (strict.DaemonSocket != lenient.DaemonSocket || strict.Timeout != lenient.Timeout ||
			strict.SpoolDir != lenient.SpoolDir || strict.FailurePolicy != lenient.FailurePolicy) {
			t.Fatalf("valid input parsed differently: %+v vs %+v", strict, lenient)
		}
		if lenient.Timeout <= 0 || lenient.Timeout > MaxTimeout || lenient.DaemonSocket == "" || lenient.SpoolDir == "" ||
			lenient.SpoolMaxRecords < 1 {
			t.Fatalf("lenient configuration is not usable: %+v", lenient)
		}
	})
}
