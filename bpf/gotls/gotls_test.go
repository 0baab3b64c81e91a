package gotls

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// build builds the tests' Go TLS peer (bpf/testdata/tlsgo) with extra go
// build flags and returns the binary's path.
func build(t testing.TB, flags ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "tlsgo")
	args := append(append([]string{"build", "-o", out}, flags...), "../testdata/tlsgo")
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build tlsgo: %v\n%s", err, b)
	}
	return out
}

// TestFunctionsFromSymtabOrPclntab pins how a Go binary's crypto/tls is
// found: the same entry and RET offsets, relative to each function, from
// .symtab and, in the same program stripped of it (-ldflags=-s -w), from
// .gopclntab; entries on the stack check's jump; files without crypto/tls
// are ErrNotGoTLS (nothing to report), and a Go binary with no symbol
// table at all is an error naming the problem (reported unprobed).
func TestFunctionsFromSymtabOrPclntab(t *testing.T) {
	full, err := Inspect(build(t))
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	strippedPath := build(t, "-ldflags=-s -w")
	stripped, err := Inspect(strippedPath)
	if err != nil {
		t.Fatalf("inspect stripped: %v", err)
	}
	if len(full.Handshakes) != 2 {
		t.Errorf("%d handshake functions found, want client and server", len(full.Handshakes))
	}
	for _, fn := range append([]Func{full.Write, full.Read}, full.Handshakes...) {
		if len(fn.Rets) == 0 || fn.Entry == 0 {
			t.Errorf("%s: entry %#x, %d RETs", fn.Name, fn.Entry, len(fn.Rets))
		}
		t.Logf("%s: entry %#x, RETs %#x", fn.Name, fn.Entry, fn.Rets)
	}
	// Stripping moves code, so compare the shape: the entry probe and
	// the RETs at the same distances from the first RET.
	rel := func(fn Func) string {
		var b strings.Builder
		fmt.Fprintf(&b, "entry -%#x:", fn.Rets[0]-fn.Entry)
		for _, r := range fn.Rets {
			fmt.Fprintf(&b, " +%#x", r-fn.Rets[0])
		}
		return b.String()
	}
	if rel(full.Write) != rel(stripped.Write) || rel(full.Read) != rel(stripped.Read) {
		t.Errorf("symtab and pclntab disagree: Write %s vs %s, Read %s vs %s",
			rel(full.Write), rel(stripped.Write), rel(full.Read), rel(stripped.Read))
	}
	for _, path := range []string{"/bin/true", buildWithoutTLS(t)} {
		if _, err := Inspect(path); !errors.Is(err, ErrNotGoTLS) {
			t.Errorf("%s: %v, want ErrNotGoTLS", path, err)
		}
	}
	bare := filepath.Join(t.TempDir(), "bare")
	if out, err := exec.Command("objcopy", "--remove-section=.gopclntab", strippedPath, bare).CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v\n%s", err, out)
	}
	_, err = Inspect(bare)
	if err == nil || errors.Is(err, ErrNotGoTLS) || !strings.Contains(err.Error(), "no .symtab and no .gopclntab") {
		t.Errorf("Go binary without symbols: %v, want an error saying it is stripped", err)
	}
}

func buildWithoutTLS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nfunc main() { println(\"no tls\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "notls")
	cmd := exec.Command("go", "build", "-o", out, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

// TestRegisterABI pins the Go versions probed.
func TestRegisterABI(t *testing.T) {
	for v, want := range map[string]bool{
		"go1.16.15": false, "go1.17": true, "go1.22.5": true, "go1.26rc1": true, "go1.9": false,
		"devel go1.27-abcdef": true, "": false, "go2": false,
	} {
		if got := registerABI(v); got != want {
			t.Errorf("registerABI(%q) = %v, want %v", v, got, want)
		}
	}
}

// FuzzInspect: any file, however malformed, is an error or a result,
// never a panic (the files come from pods). Seeds: the head of a real Go
// TLS binary, and its whole ELF header and program headers.
func FuzzInspect(f *testing.F) {
	real, err := os.ReadFile(build(f, "-ldflags=-s -w"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(real[:4096])
	f.Add(real[:64])
	f.Add([]byte("\x7fELF"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "bin")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := Inspect(p)
		if err == nil && (len(b.Write.Rets) == 0 || len(b.Read.Rets) == 0) {
			t.Fatalf("inspect succeeded without RETs: %+v", b)
		}
	})
}
