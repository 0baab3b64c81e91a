package cniconf

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// tempPattern names temporary files. Their ".tmp" extension keeps them out of
// libcni's view, so a runtime listing the directory never loads one.
const tempPattern = ".weir-install-*.tmp"

// replaceFile atomically replaces the config observed as st with data. The
// new file gets the old one's permission bits and owner. It fails with
// errChanged if the file was modified or replaced after it was read, rather
// than overwrite somebody else's newer content.
func replaceFile(path string, data []byte, st fileState) error {
	return writeAtomic(st.real, data, st.info, func() error { return unchanged(path, st) })
}

// unchanged returns an error wrapping errChanged unless the file observed as
// st is still the same file with the same size and modification time.
func unchanged(path string, st fileState) error {
	now, err := os.Stat(st.real)
	if err != nil {
		return fmt.Errorf("CNI config %s: %w: %w", path, errChanged, err)
	}
	if !os.SameFile(now, st.info) || !now.ModTime().Equal(st.info.ModTime()) || now.Size() != st.info.Size() {
		return fmt.Errorf("CNI config %s: %w", path, errChanged)
	}
	return nil
}

// writeNewFile atomically writes data to path with the permission bits and
// owner of like.
func writeNewFile(path string, data []byte, like os.FileInfo) error {
	return writeAtomic(path, data, like, nil)
}

// writeAtomic writes data to a temporary file next to path, fsyncs it, runs
// check (if any) and renames the file over path, then fsyncs the directory so
// the rename itself survives a crash.
func writeAtomic(path string, data []byte, like os.FileInfo, check func() error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, tempPattern)
	if err != nil {
		return fmt.Errorf("write %s: create temporary file: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// Chmod is not subject to the umask, so the mode is exactly the old one.
	if err := tmp.Chmod(like.Mode().Perm()); err != nil {
		return fmt.Errorf("write %s: chmod temporary file: %w", path, err)
	}
	if st, ok := like.Sys().(*syscall.Stat_t); ok && (int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid()) {
		if err := tmp.Chown(int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("write %s: keep owner %d:%d: %w", path, st.Uid, st.Gid, err)
		}
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: close: %w", path, err)
	}
	if check != nil {
		if err := check(); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: rename into place: %w", path, err)
	}
	return syncDir(dir)
}

// syncDir makes the directory's entries (renames, removals) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s for fsync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}
