package cniconf

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the expected outputs under testdata/*/out from the current behaviour")

// pluginVersions mirrors what the weir plugin answers to VERSION.
var pluginVersions = []string{"0.4.0", "1.0.0", "1.1.0"}

func defaultEntry() Entry { return Entry{SupportedVersions: pluginVersions} }

func installWith(e Entry) func(string) (Result, error) {
	return func(dir string) (Result, error) { return Install(dir, e) }
}

// Each case copies testdata/<name>/in into a temporary directory, runs op on
// it and compares the whole directory with testdata/<name>/out, or, for a
// failing case, with the untouched input.
var goldenCases = []struct {
	name       string
	op         func(dir string) (Result, error)
	wantAction Action
	wantPath   string // primary config after the operation, relative
	wantErr    string // substring of the error; the directory must be untouched
	uninstall  bool   // op is Uninstall: no weir entry afterwards
}{
	{name: "conf-to-conflist", op: installWith(defaultEntry()), wantAction: Converted, wantPath: "10-bridge.conflist"},
	{name: "json-to-conflist", op: installWith(defaultEntry()), wantAction: Converted, wantPath: "10-net.conflist"},
	{name: "conflist-append", op: installWith(defaultEntry()), wantAction: Added, wantPath: "10-calico.conflist"},
	{
		name:       "already-installed",
		op:         installWith(Entry{FailurePolicy: "fail", Timeout: 5 * time.Second, SupportedVersions: pluginVersions}),
		wantAction: Unchanged, wantPath: "10-bridge.conflist",
	},
	{
		name: "update-entry",
		op: installWith(Entry{
			FailurePolicy: "fail", Timeout: 5 * time.Second, ExcludeNamespaces: []string{},
			LogFile: "/var/log/weir/plugin.log", LogLevel: "warn", SupportedVersions: pluginVersions,
		}),
		wantAction: Updated, wantPath: "10-bridge.conflist",
	},
	{name: "primary-choice", op: installWith(defaultEntry()), wantAction: Added, wantPath: "10-aa.json"},
	{name: "conversion-resumed", op: installWith(defaultEntry()), wantAction: Converted, wantPath: "10-bridge.conflist"},
	{name: "uninstall", op: Uninstall, uninstall: true, wantAction: Removed, wantPath: "10-bridge.conflist"},
	{name: "uninstall-absent", op: Uninstall, uninstall: true, wantAction: Unchanged, wantPath: "10-bridge.conflist"},

	{name: "malformed", op: installWith(defaultEntry()), wantErr: "10-broken.conflist: malformed JSON"},
	{name: "unsupported-version", op: installWith(defaultEntry()), wantErr: `cniVersion "0.3.1" is not supported by the weir plugin`},
	{name: "conversion-target-taken", op: installWith(defaultEntry()), wantErr: "10-bridge.conflist already exists and is not a conversion of it"},
	{name: "conversion-would-lose-primary", op: installWith(defaultEntry()), wantErr: "10-bridge.conf.json would then sort first"},
	{name: "lone-weir", op: installWith(defaultEntry()), wantErr: `10-weir.conf: the config is a lone "weir" plugin`},
	{name: "empty-plugins", op: installWith(defaultEntry()), wantErr: `10-empty.conflist: "plugins" holds no main plugin`},
	{name: "only-weir", op: installWith(defaultEntry()), wantErr: `10-w.conflist: "plugins" holds no main plugin`},
	{name: "not-a-list", op: installWith(defaultEntry()), wantErr: `10-odd.conflist: a .conflist must hold a "plugins" array`},
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			in := filepath.Join("testdata", tc.name, "in")
			dir := t.TempDir()
			copyTree(t, in, dir)

			res, err := tc.op(dir)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("got result %+v, want an error containing %q", res, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %q does not contain %q", err, tc.wantErr)
				}
				assertTreesEqual(t, readTree(t, in), readTree(t, dir))
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if res.Action != tc.wantAction || res.Path != filepath.Join(dir, tc.wantPath) {
				t.Errorf("result %+v, want action %q on %s", res, tc.wantAction, tc.wantPath)
			}

			out := filepath.Join("testdata", tc.name, "out")
			if *update {
				if err := os.RemoveAll(out); err != nil {
					t.Fatal(err)
				}
				copyTree(t, dir, out)
			}
			assertTreesEqual(t, readTree(t, out), readTree(t, dir))
			if res.Action == Unchanged {
				assertTreesEqual(t, readTree(t, in), readTree(t, dir))
			}
		})
	}
}

// Beyond the golden bytes: every value Install does not own must decode to
// exactly what it was, whatever the formatting.
func TestInstallKeepsOtherValues(t *testing.T) {
	for _, name := range []string{"conf-to-conflist", "json-to-conflist", "conflist-append", "primary-choice", "update-entry"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			copyTree(t, filepath.Join("testdata", name, "in"), dir)
			before, err := Primary(dir)
			if err != nil {
				t.Fatal(err)
			}
			orig := decodeFile(t, before)
			if _, ok := orig["plugins"]; !ok {
				orig = map[string]any{"name": orig["name"], "cniVersion": orig["cniVersion"], "plugins": []any{orig}}
			}

			res, err := Install(dir, Entry{FailurePolicy: "fail"})
			if err != nil {
				t.Fatal(err)
			}
			got := decodeFile(t, res.Path)
			if !reflect.DeepEqual(withoutWeir(got), withoutWeir(orig)) {
				t.Errorf("non-weir content changed:\n got %v\nwant %v", withoutWeir(got), withoutWeir(orig))
			}
			if n := countWeir(got); n != 1 {
				t.Errorf("%d weir entries, want 1", n)
			}
		})
	}
}

func TestInstallAlreadyInstalledDoesNotRewrite(t *testing.T) {
	dir := t.TempDir()
	copyTree(t, filepath.Join("testdata", "already-installed", "in"), dir)
	path := filepath.Join(dir, "10-bridge.conflist")
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	before := statT(t, path)

	for range 3 {
		res, err := Install(dir, Entry{FailurePolicy: "fail", Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if res.Changed() {
			t.Fatalf("result %+v, want unchanged", res)
		}
	}
	after := statT(t, path)
	if before.Ino != after.Ino || before.Mtim != after.Mtim || before.Ctim != after.Ctim {
		t.Errorf("file was rewritten: inode %d→%d, mtime %v→%v", before.Ino, after.Ino, before.Mtim, after.Mtim)
	}
	assertOnlyFiles(t, dir, "10-bridge.conflist")
}

func TestInstallIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	copyTree(t, filepath.Join("testdata", "conf-to-conflist", "in"), dir)
	first, err := Install(dir, defaultEntry())
	if err != nil {
		t.Fatal(err)
	}
	want := readTree(t, dir)
	second, err := Install(dir, defaultEntry())
	if err != nil {
		t.Fatal(err)
	}
	if first.Action != Converted || second.Action != Unchanged || second.Path != first.Path {
		t.Errorf("first %+v then %+v, want converted then unchanged on the same file", first, second)
	}
	assertTreesEqual(t, want, readTree(t, dir))
}

func TestInstallKeepsModeAndOwner(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode fs.FileMode
	}{
		{"conflist-append", 0o600},
		{"conf-to-conflist", 0o640},
		{"update-entry", 0o444}, // read-only: the rename replaces it anyway
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			copyTree(t, filepath.Join("testdata", tc.name, "in"), dir)
			src, err := Primary(dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(src, tc.mode); err != nil {
				t.Fatal(err)
			}
			root := os.Geteuid() == 0
			if root {
				if err := os.Chown(src, 4321, 8765); err != nil {
					t.Fatal(err)
				}
			}

			res, err := Install(dir, Entry{LogLevel: "debug"})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Changed() {
				t.Fatalf("result %+v, want a write", res)
			}
			st := statT(t, res.Path)
			if got := fs.FileMode(st.Mode).Perm(); got != tc.mode {
				t.Errorf("mode %v, want %v", got, tc.mode)
			}
			if root && (st.Uid != 4321 || st.Gid != 8765) {
				t.Errorf("owner %d:%d, want 4321:8765", st.Uid, st.Gid)
			}
			if !root {
				t.Log("not root: ownership preservation not checked")
			}
		})
	}
}

func TestUninstallRestoresPluginList(t *testing.T) {
	for _, name := range []string{"conflist-append", "conf-to-conflist", "json-to-conflist", "primary-choice"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			copyTree(t, filepath.Join("testdata", name, "in"), dir)
			before, err := Primary(dir)
			if err != nil {
				t.Fatal(err)
			}
			orig := decodeFile(t, before)

			inst, err := Install(dir, Entry{FailurePolicy: "fail", LogLevel: "debug"})
			if err != nil {
				t.Fatal(err)
			}
			un, err := Uninstall(dir)
			if err != nil {
				t.Fatal(err)
			}
			if un.Action != Removed || un.Path != inst.Path {
				t.Fatalf("uninstall %+v, want removed from %s", un, inst.Path)
			}
			got := decodeFile(t, un.Path)
			if _, ok := orig["plugins"]; ok {
				if !reflect.DeepEqual(got, orig) {
					t.Errorf("after install+uninstall:\n got %v\nwant %v", got, orig)
				}
				return
			}
			// A converted single plugin stays a list holding just that plugin.
			if want := []any{orig}; !reflect.DeepEqual(got["plugins"], want) {
				t.Errorf("plugins after install+uninstall: got %v, want %v", got["plugins"], want)
			}
		})
	}
}

func TestNoConfig(t *testing.T) {
	for name, dir := range map[string]string{
		"empty dir":   t.TempDir(),
		"missing dir": filepath.Join(t.TempDir(), "net.d"),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Install(dir, defaultEntry())
			if !errors.Is(err, ErrNoConfig) || !strings.Contains(err.Error(), dir) {
				t.Errorf("Install: %v, want ErrNoConfig naming %s", err, dir)
			}
			if _, err := Uninstall(dir); !errors.Is(err, ErrNoConfig) {
				t.Errorf("Uninstall: %v, want ErrNoConfig", err)
			}
		})
	}
}

func TestInstallThroughSymlinkKeepsLink(t *testing.T) {
	dir, store := t.TempDir(), t.TempDir()
	copyTree(t, filepath.Join("testdata", "conflist-append", "in"), store)
	target := filepath.Join(store, "10-calico.conflist")
	link := filepath.Join(dir, "10-calico.conflist")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Install(dir, defaultEntry()); err != nil {
		t.Fatal(err)
	}
	if dest, err := os.Readlink(link); err != nil || dest != target {
		t.Fatalf("link now %q (%v), want a symlink to %s", dest, err, target)
	}
	if n := countWeir(decodeFile(t, target)); n != 1 {
		t.Errorf("link target has %d weir entries, want 1", n)
	}
}

func TestReplaceRefusesConcurrentChange(t *testing.T) {
	for name, change := range map[string]func(path string) error{
		"rewritten in place": func(path string) error {
			return os.WriteFile(path, []byte(`{"cniVersion":"1.0.0","name":"newer","plugins":[{"type":"ptp"}]}`), 0o644)
		},
		"replaced by rename": func(path string) error {
			tmp := path + ".new"
			if err := os.WriteFile(tmp, []byte(`{"cniVersion":"1.0.0","name":"newer","plugins":[{"type":"ptp"}]}`), 0o644); err != nil {
				return err
			}
			return os.Rename(tmp, path)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			copyTree(t, filepath.Join("testdata", "conflist-append", "in"), dir)
			path := filepath.Join(dir, "10-calico.conflist")
			doc, st, err := readConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			// Make the change visible to a coarse mtime too.
			time.Sleep(10 * time.Millisecond)
			if err := change(path); err != nil {
				t.Fatal(err)
			}
			want, _ := os.ReadFile(path)
			out, err := doc.encode()
			if err != nil {
				t.Fatal(err)
			}
			if err := replaceFile(path, out, st); !errors.Is(err, errChanged) {
				t.Fatalf("replaceFile: %v, want errChanged", err)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
				t.Errorf("the newer content was overwritten:\n%s", got)
			}
			assertOnlyFiles(t, dir, "10-calico.conflist")
		})
	}
}

func TestEntryValidation(t *testing.T) {
	for _, tc := range []struct {
		entry   Entry
		wantErr string
	}{
		{Entry{}, ""},
		{Entry{FailurePolicy: "sometimes"}, `failurePolicy "sometimes"`},
		{Entry{Timeout: -time.Second}, `timeout "-1s"`},
		{Entry{Timeout: 2 * time.Minute}, `timeout "2m0s"`},
		{Entry{DaemonSocket: "run/weir.sock"}, `daemonSocket "run/weir.sock": must be an absolute path`},
		{Entry{SpoolDir: "spool"}, `spoolDir "spool"`},
		{Entry{SpoolMaxRecords: -1}, `spoolMaxRecords -1`},
		{Entry{LogLevel: "loud"}, `logLevel "loud"`},
		{Entry{LogFile: "weir.log"}, `logFile "weir.log"`},
		{Entry{ExcludeNamespaces: []string{"kube-system", ""}}, `excludeNamespaces[1] ""`},
	} {
		err := tc.entry.Validate()
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", tc.entry, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%+v: error %v, want one containing %q", tc.entry, err, tc.wantErr)
		}
		// An invalid entry is never written.
		if tc.wantErr != "" {
			dir := t.TempDir()
			copyTree(t, filepath.Join("testdata", "conflist-append", "in"), dir)
			if _, err := Install(dir, tc.entry); err == nil {
				t.Errorf("%+v: Install accepted an invalid entry", tc.entry)
			}
			assertTreesEqual(t, readTree(t, filepath.Join("testdata", "conflist-append", "in")), readTree(t, dir))
		}
	}
}

func TestEntryWritesOnlyNonDefaults(t *testing.T) {
	defaults := Entry{
		DaemonSocket: "/run/weir/weir.sock", Timeout: 2 * time.Second, FailurePolicy: "ignore",
		SpoolDir: "/var/lib/weir/spool", SpoolMaxRecords: 1024, ExcludeNamespaces: []string{"kube-system"},
		LogLevel: "info",
	}
	got, err := defaults.object()
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"type": "weir"}; !reflect.DeepEqual(got, want) {
		t.Errorf("entry with default values renders as %v, want %v", got, want)
	}

	custom := Entry{SpoolMaxRecords: 10, ExcludeNamespaces: []string{}, Timeout: 1500 * time.Millisecond}
	got, err = custom.object()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"type": "weir", "spoolMaxRecords": json.Number("10"), "excludeNamespaces": []any{}, "timeout": "1.5s"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("custom entry renders as %v, want %v", got, want)
	}
}

// --- helpers ---

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		t.Fatalf("copy %s to %s: %v", from, to, err)
	}
}

// readTree maps each regular file under root (relative path) to its bytes.
func readTree(t *testing.T, root string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files[rel] = string(data)
		return nil
	})
	if err != nil {
		t.Fatalf("read %s: %v", root, err)
	}
	return files
}

func assertTreesEqual(t *testing.T, want, got map[string]string) {
	t.Helper()
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s: missing", name)
		case g != w:
			t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, g, w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: unexpected file", name)
		}
	}
}

func assertOnlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !reflect.DeepEqual(got, names) {
		t.Errorf("dir holds %v, want %v (temporary files left behind?)", got, names)
	}
}

func statT(t *testing.T, path string) *syscall.Stat_t {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Sys().(*syscall.Stat_t)
}

func decodeFile(t *testing.T, path string) map[string]any {
	t.Helper()
	doc, _, err := readConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	return doc.obj
}

// withoutWeir returns a copy of a plugin-list config without Weir's entries.
func withoutWeir(obj map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range obj {
		out[k] = v
	}
	var kept []any
	for _, p := range obj["plugins"].([]any) {
		if !isWeir(p) {
			kept = append(kept, p)
		}
	}
	out["plugins"] = kept
	return out
}

func countWeir(obj map[string]any) int {
	n := 0
	for _, p := range obj["plugins"].([]any) {
		if isWeir(p) {
			n++
		}
	}
	return n
}
