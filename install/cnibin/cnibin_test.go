package cnibin

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"
)

// A plugin that answers VERSION like a skel-based plugin does.
const versionScript = `#!/bin/sh
[ "$CNI_COMMAND" = VERSION ] || { echo "unexpected CNI_COMMAND $CNI_COMMAND" >&2; exit 1; }
echo '{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}'
`

func writeSrc(t *testing.T, content []byte) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "weir")
	if err := os.WriteFile(src, content, 0o700); err != nil {
		t.Fatal(err)
	}
	return src
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Sys().(*syscall.Stat_t).Ino
}

func TestInstallCopiesWithExecMode(t *testing.T) {
	content := bytes.Repeat([]byte("weir plugin bytes "), 10000) // spans several compare chunks
	src := writeSrc(t, content)
	dir := filepath.Join(t.TempDir(), "opt", "cni", "bin") // created on demand

	changed, err := Install(src, dir, "weir")
	if err != nil || !changed {
		t.Fatalf("Install = %v, %v; want a copy", changed, err)
	}
	dst := filepath.Join(dir, "weir")
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("installed binary differs from source (%v)", err)
	}
	info, _ := os.Stat(dst)
	if info.Mode().Perm() != Mode {
		t.Errorf("mode %v, want %v", info.Mode().Perm(), Mode)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("bin dir holds %d entries, want only weir (temporary file left?)", len(entries))
	}
}

func TestInstallSkipsIdenticalBinary(t *testing.T) {
	src := writeSrc(t, bytes.Repeat([]byte{0x7f, 'E', 'L', 'F'}, 50000))
	dir := t.TempDir()
	if _, err := Install(src, dir, "weir"); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "weir")
	before := inode(t, dst)
	changed, err := Install(src, dir, "weir")
	if err != nil || changed {
		t.Fatalf("second Install = %v, %v; want unchanged", changed, err)
	}
	if after := inode(t, dst); after != before {
		t.Errorf("identical binary was rewritten (inode %d → %d)", before, after)
	}
}

func TestInstallReplacesDifferentBinary(t *testing.T) {
	dir := t.TempDir()
	dst := filepath.Join(dir, "weir")
	for name, prepare := range map[string]func() error{
		"same size, one byte differs": func() error {
			return os.WriteFile(dst, append(bytes.Repeat([]byte("a"), 99999), 'b'), Mode)
		},
		"longer": func() error { return os.WriteFile(dst, bytes.Repeat([]byte("a"), 100001), Mode) },
		"same bytes, wrong mode": func() error {
			if err := os.WriteFile(dst, bytes.Repeat([]byte("a"), 100000), 0o644); err != nil {
				return err
			}
			return os.Chmod(dst, 0o644)
		},
	} {
		t.Run(name, func(t *testing.T) {
			if err := prepare(); err != nil {
				t.Fatal(err)
			}
			src := writeSrc(t, bytes.Repeat([]byte("a"), 100000))
			changed, err := Install(src, dir, "weir")
			if err != nil || !changed {
				t.Fatalf("Install = %v, %v; want a replacement", changed, err)
			}
			got, _ := os.ReadFile(dst)
			info, _ := os.Stat(dst)
			if !bytes.Equal(got, bytes.Repeat([]byte("a"), 100000)) || info.Mode().Perm() != Mode {
				t.Errorf("after replacement: %d bytes, mode %v", len(got), info.Mode().Perm())
			}
		})
	}
}

func TestInstallRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	if _, err := Install(filepath.Join(dir, "missing"), dir, "weir"); err == nil {
		t.Error("missing source accepted")
	}
	if _, err := Install(dir, t.TempDir(), "weir"); err == nil {
		t.Error("directory as source accepted")
	}
	src := writeSrc(t, []byte("x"))
	if _, err := Install(src, dir, "../weir"); err == nil {
		t.Error("binary name with a path accepted")
	}
}

func TestVersionsAsksThePlugin(t *testing.T) {
	src := writeSrc(t, []byte(versionScript))
	dir := t.TempDir()
	if _, err := Install(src, dir, "weir"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := Versions(ctx, filepath.Join(dir, "weir"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"0.4.0", "1.0.0", "1.1.0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("versions %v, want %v", got, want)
	}
	if _, err := Versions(ctx, filepath.Join(dir, "absent")); err == nil {
		t.Error("Versions of a missing plugin succeeded")
	}
}
