package enroll

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckInstalledReportsEntriesNamingAnotherSocketOrSpool(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("10-ok.conflist", `{"cniVersion":"1.0.0","name":"ok","plugins":[{"type":"bridge"},{"type":"weir","daemonSocket":"/run/w.sock","spoolDir":"/var/lib/w/spool/"}]}`)
	write("20-bad.conflist", `{"cniVersion":"1.0.0","name":"bad","plugins":[{"type":"bridge"},{"type":"weir","spoolDir":"/elsewhere"}]}`)
	write("30-noweir.conflist", `{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"bridge"}]}`)
	write("40-broken.conflist", `{"plugins":[`)
	write("README", `{"plugins":[{"type":"weir"}]}`)

	got := CheckInstalled(dir, "/run/w.sock", "/var/lib/w/spool")
	if len(got) != 2 || !strings.Contains(got[0], `20-bad.conflist: plugins[1] (weir) has daemonSocket "/run/weir/weir.sock"`) ||
		!strings.Contains(got[1], `spoolDir "/elsewhere"`) {
		t.Fatalf("CheckInstalled = %q, want the default socket and /elsewhere of 20-bad.conflist", got)
	}
	if got := CheckInstalled(filepath.Join(dir, "missing"), "/run/w.sock", "/s"); got != nil {
		t.Errorf("missing dir = %q, want nothing", got)
	}
}
