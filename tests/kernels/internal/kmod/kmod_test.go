package kmod

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeModule compiles an ELF object whose .modinfo section holds the given
// depends= entry, laid out like a real module's (NUL-separated key=value).
func writeModule(t *testing.T, root, rel, depends string) {
	t.Helper()
	clang, err := exec.LookPath("clang")
	if err != nil {
		t.Fatalf("clang is needed to build test modules: %v", err)
	}
	path := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`__attribute__((section(".modinfo"), used)) static const char info[] = "license=GPL\0depends=%s\0vermagic=test";`, depends)
	cmd := exec.Command(clang, "-x", "c", "-c", "-o", path, "-")
	cmd.Stdin = strings.NewReader(src)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("clang: %v\n%s", err, out)
	}
}

func TestResolveOrdersDependenciesFirstOnce(t *testing.T) {
	root := t.TempDir()
	writeModule(t, root, "net/bridge.ko", "stp,llc")
	writeModule(t, root, "net/stp.ko", "llc")
	writeModule(t, root, "net/llc.ko", "")
	writeModule(t, root, "drivers/net/veth.ko", "")
	writeModule(t, root, "net/sch-dash.ko", "llc")
	if err := os.WriteFile(filepath.Join(root, "modules.builtin"), []byte("kernel/net/unix/unix.ko\nkernel/net/ipv6/ipv6.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	idx, err := NewIndex(root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := idx.Resolve("veth", "unix", "bridge", "sch_dash", "llc", "ipv6")
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	want := []string{"drivers/net/veth.ko", "net/llc.ko", "net/stp.ko", "net/bridge.ko", "net/sch-dash.ko"}
	for i := range want {
		want[i] = filepath.Join(root, want[i])
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Resolve order =\n%v\nwant\n%v", got, want)
	}
}

func TestResolveNamesMissingAndCyclicModules(t *testing.T) {
	root := t.TempDir()
	writeModule(t, root, "a.ko", "b")
	writeModule(t, root, "b.ko", "a")
	writeModule(t, root, "c.ko", "gone")

	idx, err := NewIndex(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, want string }{
		{"a", "cycle: a -> b -> a"},
		{"c", `"gone", needed by c, not found`},
		{"nope", `"nope" not found`},
	} {
		if _, err := idx.Resolve(tt.name); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Resolve(%s) error = %v; want it to contain %q", tt.name, err, tt.want)
		}
	}
}

func TestNewIndexRejectsTreeWithoutModules(t *testing.T) {
	if _, err := NewIndex(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no *.ko modules") {
		t.Errorf("NewIndex(empty) error = %v; want a no-modules error", err)
	}
}
