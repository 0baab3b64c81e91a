// Package atomicfile writes files so that a reader, or a daemon restarting
// after a crash, finds either the previous content or the new one — never a
// part — and so that a write reported done survives a power loss.
//
// The sequence is the classic one: write a temporary file in the same
// directory, fsync it, rename it over the final name, fsync the directory
// (the rename itself is only durable once the directory is).
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Options tune Write. The zero value is usable.
type Options struct {
	// Temp is the temporary file's path; it must be in final's directory
	// so the rename is atomic. Default: final + ".tmp".
	Temp string
	// Exclusive refuses to reuse an existing temporary file (O_EXCL): for
	// callers whose temp names are unique and must not collide.
	Exclusive bool
	// Perm is the new file's mode; default 0600.
	Perm os.FileMode
	// BeforeRename runs after the temporary file is durable and before it
	// is renamed into place; an error abandons the write (tests use it to
	// simulate a crash between the two steps).
	BeforeRename func() error
}

// Write makes data visible at final only once it is complete and durable.
// On error the temporary file is removed and final is untouched.
func Write(final string, data []byte, o Options) (err error) {
	tmp := o.Temp
	if tmp == "" {
		tmp = final + ".tmp"
	}
	perm := o.Perm
	if perm == 0 {
		perm = 0o600
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if o.Exclusive {
		flags = os.O_WRONLY | os.O_CREATE | os.O_EXCL
	}
	f, err := os.OpenFile(tmp, flags, perm)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if o.BeforeRename != nil {
		if err := o.BeforeRename(); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("rename %s into place: %w", tmp, err)
	}
	return SyncDir(filepath.Dir(final))
}

// SyncDir fsyncs a directory, making renames and removals in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s for fsync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
