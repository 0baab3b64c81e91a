package cniconf

import (
	"errors"
	"fmt"
	"os"

	"github.com/weirnet/weir/internal/atomicfile"
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

// writeAtomic writes data to path through a temporary file next to it (see
// package atomicfile), with like's mode and owner; check (if any) runs just
// before the rename and its error is returned as is.
func writeAtomic(path string, data []byte, like os.FileInfo, check func() error) error {
	err := atomicfile.Write(path, data, atomicfile.Options{TempPattern: tempPattern, Like: like, BeforeRename: check})
	if err != nil && !errors.Is(err, errChanged) {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return err
}
