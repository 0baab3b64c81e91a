package initramfs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildSample writes an archive with one entry of each kind the harness uses.
func buildSample(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	steps := []func() error{
		func() error { return w.Dir("dev", 0o755) },
		func() error { return w.CharDev("/dev/console", 0o600, 5, 1) },
		func() error { return w.Dir("tests", 0o755) },
		func() error { return w.Bytes("tests/hello", 0o755, []byte("hello, initramfs\n")) },
		func() error { return w.Bytes("tests/odd", 0o644, []byte("abc")) }, // size not a multiple of 4
		func() error { return w.Symlink("init", "tests/hello") },
		w.Close,
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	return buf.Bytes()
}

// TestArchiveIsReadableByCpio checks the output against an independent reader:
// GNU cpio must list and extract every entry with its type, mode and content.
func TestArchiveIsReadableByCpio(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Fatalf("cpio(1) is needed to check the archive format (apt-get install cpio): %v", err)
	}
	archive := buildSample(t)
	if len(archive)%4 != 0 {
		t.Errorf("archive length %d is not 4-byte aligned", len(archive))
	}

	dir := t.TempDir()
	cmd := exec.Command(cpio, "-i", "--make-directories", "--no-absolute-filenames", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(archive)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}

	got, err := os.ReadFile(filepath.Join(dir, "tests/hello"))
	if err != nil || string(got) != "hello, initramfs\n" {
		t.Errorf("tests/hello = %q, %v; want the written content", got, err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "tests/odd")); err != nil || string(got) != "abc" {
		t.Errorf("tests/odd = %q, %v; want %q", got, err, "abc")
	}
	if fi, err := os.Stat(filepath.Join(dir, "tests/hello")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("tests/hello mode = %v, %v; want 0755", fi.Mode(), err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "init")); err != nil || target != "tests/hello" {
		t.Errorf("init symlink -> %q, %v; want tests/hello", target, err)
	}

	list := exec.Command(cpio, "-t", "-v", "--quiet")
	list.Stdin = bytes.NewReader(archive)
	out, err := list.Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	var console string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasSuffix(line, "dev/console") {
			console = line
		}
	}
	// cpio -tv prints a character device as "crw-------  1 root root 5, 1 ...".
	if !strings.HasPrefix(console, "crw-------") || !strings.Contains(console, "5,") {
		t.Errorf("dev/console listed as %q; want a character device 5,1 with mode 0600", console)
	}
}

func TestArchiveIsReproducible(t *testing.T) {
	if !bytes.Equal(buildSample(t), buildSample(t)) {
		t.Error("two archives with the same entries differ")
	}
}

func TestWriterRejectsBadEntries(t *testing.T) {
	tests := []struct {
		name  string
		setup func(w *Writer) error
		want  string
	}{
		{"missing parent", func(w *Writer) error { return w.Bytes("a/b", 0o644, nil) }, "before its directory"},
		{"duplicate", func(w *Writer) error {
			if err := w.Dir("a", 0o755); err != nil {
				return err
			}
			return w.Dir("/a/", 0o755)
		}, "duplicate"},
		{"empty name", func(w *Writer) error { return w.Dir("/", 0o755) }, "invalid entry name"},
		{"reserved name", func(w *Writer) error { return w.Dir(trailerName, 0o755) }, "reserved"},
		{"short reader", func(w *Writer) error { return w.File("f", 0o644, 10, strings.NewReader("abc")) }, "copying 10 bytes"},
		{"after close", func(w *Writer) error {
			if err := w.Close(); err != nil {
				return err
			}
			return w.Dir("a", 0o755)
		}, "after Close"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.setup(NewWriter(&bytes.Buffer{}))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v; want one containing %q", err, tt.want)
			}
		})
	}
}
