// Package atomicfile writes files so that a reader, or a daemon restarting
// after a crash, finds either the previous content or the new one — never a
// part — and so that a write reported done survives a power loss.
//
// The sequence is the classic one: write a temporary file in the same
// directory, fsync it, rename it over the final name, fsync the directory
// (the rename itself is only durable once the directory is).
//
// weir-daemon's registry, the plugin's spool and weir-install's CNI config
// rewrites all use it; it lives in the module's internal tree so each of
// them imports it downward.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Options tune Write. The zero value is usable.
type Options struct {
	// Temp is the temporary file's path; it must be in final's directory
	// so the rename is atomic. Default: final + ".tmp".
	Temp string
	// TempPattern, when set, names the temporary file as os.CreateTemp
	// does (a random string replaces the last "*"), in final's directory;
	// Temp and Exclusive are then ignored. For callers that may write the
	// same file concurrently, or that must pick a name a directory's
	// reader ignores.
	TempPattern string
	// Exclusive refuses to reuse an existing temporary file (O_EXCL): for
	// callers whose temp names are unique and must not collide.
	Exclusive bool
	// Perm is the new file's mode, subject to the umask; default 0600.
	Perm os.FileMode
	// Like, when set, gives the new file Like's permission bits exactly
	// (not subject to the umask) and Like's owner and group, so a
	// replacement keeps the mode and ownership of the file it replaces.
	// Perm is then ignored. Changing the owner needs the privilege to.
	Like os.FileInfo
	// BeforeRename runs after the temporary file is durable and before it
	// is renamed into place; an error abandons the write (tests use it to
	// simulate a crash between the two steps).
	BeforeRename func() error
}

// Write makes data visible at final only once it is complete and durable.
// On error the temporary file is removed and final is untouched.
func Write(final string, data []byte, o Options) (err error) {
	f, err := create(final, o)
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close() // after a successful Close, only returns an error
			os.Remove(tmp)
		}
	}()
	if o.Like != nil {
		if err := sameModeAndOwner(f, o.Like); err != nil {
			return err
		}
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
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

// create opens the temporary file for Write.
func create(final string, o Options) (*os.File, error) {
	if o.TempPattern != "" {
		f, err := os.CreateTemp(filepath.Dir(final), o.TempPattern)
		if err != nil {
			return nil, fmt.Errorf("create temporary file for %s: %w", final, err)
		}
		return f, nil
	}
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
		return nil, fmt.Errorf("create %s: %w", tmp, err)
	}
	return f, nil
}

// sameModeAndOwner gives f like's permission bits and, when they differ
// from the process's, like's owner and group.
func sameModeAndOwner(f *os.File, like os.FileInfo) error {
	// Chmod is not subject to the umask, so the mode is exactly like's.
	if err := f.Chmod(like.Mode().Perm()); err != nil {
		return fmt.Errorf("chmod %s: %w", f.Name(), err)
	}
	st, ok := like.Sys().(*syscall.Stat_t)
	if !ok || (int(st.Uid) == os.Geteuid() && int(st.Gid) == os.Getegid()) {
		return nil
	}
	if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("keep owner %d:%d on %s: %w", st.Uid, st.Gid, f.Name(), err)
	}
	return nil
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
