// Package cnibin places the weir plugin binary in the node's CNI bin dir and
// asks it which CNI spec versions it speaks.
//
// The runtime may exec the plugin at any moment (a pod starting while the
// installer runs), so the binary is never written in place: it is copied to a
// temporary file in the same directory and renamed over the old one, which
// keeps running executions on the old inode and gives new ones the complete
// new file. An identical binary is left alone, so re-running the installer
// (every DaemonSet restart) does not churn the node.
package cnibin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/invoke"
)

// Mode is the permission of the installed plugin binary.
const Mode os.FileMode = 0o755

// compareChunk is the read size used when comparing binaries.
const compareChunk = 64 << 10

// Install copies the executable src to dir/name atomically with mode Mode.
// It reports whether it wrote anything: an existing file with the same bytes
// and mode is left untouched.
func Install(src, dir, name string) (changed bool, err error) {
	if name == "" || name != filepath.Base(name) {
		return false, fmt.Errorf("install plugin: invalid binary name %q", name)
	}
	dst := filepath.Join(dir, name)
	in, err := os.Open(src)
	if err != nil {
		return false, fmt.Errorf("install plugin: open source: %w", err)
	}
	defer in.Close()
	srcInfo, err := in.Stat()
	if err != nil {
		return false, fmt.Errorf("install plugin: stat source %s: %w", src, err)
	}
	if !srcInfo.Mode().IsRegular() {
		return false, fmt.Errorf("install plugin: source %s is not a regular file", src)
	}

	same, err := sameContent(in, srcInfo.Size(), dst)
	if err != nil {
		return false, err
	}
	if same {
		return false, nil
	}
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		return false, fmt.Errorf("install plugin: rewind %s: %w", src, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("install plugin: create CNI bin dir: %w", err)
	}

	tmp, err := os.CreateTemp(dir, "."+name+"-*.tmp")
	if err != nil {
		return false, fmt.Errorf("install plugin: create temporary file in %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, in); err != nil {
		return false, fmt.Errorf("install plugin: copy %s: %w", src, err)
	}
	if err := tmp.Chmod(Mode); err != nil {
		return false, fmt.Errorf("install plugin: chmod: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return false, fmt.Errorf("install plugin: fsync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("install plugin: close: %w", err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return false, fmt.Errorf("install plugin: rename into %s: %w", dst, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return false, fmt.Errorf("install plugin: open %s for fsync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return false, fmt.Errorf("install plugin: fsync %s: %w", dir, err)
	}
	return true, nil
}

// sameContent reports whether dst is a regular file with mode Mode holding
// exactly the size bytes readable from src.
func sameContent(src io.Reader, size int64, dst string) (bool, error) {
	out, err := os.Open(dst)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("install plugin: open existing %s: %w", dst, err)
	}
	defer out.Close()
	info, err := out.Stat()
	if err != nil {
		return false, fmt.Errorf("install plugin: stat existing %s: %w", dst, err)
	}
	if !info.Mode().IsRegular() || info.Mode().Perm() != Mode || info.Size() != size {
		return false, nil
	}
	a, b := make([]byte, compareChunk), make([]byte, compareChunk)
	for {
		na, errA := io.ReadFull(src, a)
		nb, errB := io.ReadFull(out, b)
		if !bytes.Equal(a[:na], b[:nb]) {
			return false, nil
		}
		switch {
		case errA == io.EOF || errA == io.ErrUnexpectedEOF:
			return errB == io.EOF || errB == io.ErrUnexpectedEOF, nil
		case errA != nil:
			return false, fmt.Errorf("install plugin: read source: %w", errA)
		case errB != nil && errB != io.EOF && errB != io.ErrUnexpectedEOF:
			return false, fmt.Errorf("install plugin: read existing %s: %w", dst, errB)
		}
	}
}

// Versions runs the plugin at path with CNI_COMMAND=VERSION and returns the
// CNI spec versions it supports.
func Versions(ctx context.Context, path string) ([]string, error) {
	info, err := invoke.GetVersionInfo(ctx, path, nil)
	if err != nil {
		return nil, fmt.Errorf("ask %s for its CNI versions: %w", path, err)
	}
	return info.SupportedVersions(), nil
}
