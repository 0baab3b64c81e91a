// Package initramfs writes Linux initramfs archives: the "newc" cpio format
// that the kernel unpacks into its root filesystem before running /init.
//
// The kernel test harness builds one archive per run from a handful of files
// (a static /init, Go test binaries, kernel modules). Writing the format here
// instead of shelling out to cpio(1) keeps the archive's content explicit —
// every path, mode and device node is named by the caller — and independent
// of the host's file ownership and timestamps, so two runs with the same
// inputs produce the same bytes.
package initramfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
)

// newcMagic starts every newc header; the kernel also accepts "070702" (with
// checksums) but needs neither.
const newcMagic = "070701"

// trailerName marks the end of an archive.
const trailerName = "TRAILER!!!"

// Mode bits of the cpio header (the same as st_mode).
const (
	modeType    = 0o170000
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeCharDev = 0o020000
	modeSymlink = 0o120000
)

// Writer appends entries to a newc archive. Parent directories must be added
// before their entries, as the kernel does not create them implicitly.
// Writer is not safe for concurrent use.
type Writer struct {
	w      *bufio.Writer
	offset int64
	ino    uint32
	seen   map[string]bool
	closed bool
}

// NewWriter returns a Writer that writes the archive to w. Call Close to write
// the trailer and flush.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: bufio.NewWriter(w), seen: make(map[string]bool)}
}

// Dir adds a directory.
func (a *Writer) Dir(name string, perm fs.FileMode) error {
	return a.entry(name, modeDir|uint32(perm.Perm()), 0, 0, nil, 0)
}

// File adds a regular file of the given size whose content is read from r.
// Exactly size bytes must be readable.
func (a *Writer) File(name string, perm fs.FileMode, size int64, r io.Reader) error {
	return a.entry(name, modeRegular|uint32(perm.Perm()), 0, 0, r, size)
}

// Bytes adds a regular file holding data.
func (a *Writer) Bytes(name string, perm fs.FileMode, data []byte) error {
	return a.File(name, perm, int64(len(data)), bytes.NewReader(data))
}

// CharDev adds a character device node, such as /dev/console (5, 1), which the
// kernel opens as init's stdin/stdout/stderr before devtmpfs is mounted.
func (a *Writer) CharDev(name string, perm fs.FileMode, major, minor uint32) error {
	return a.entry(name, modeCharDev|uint32(perm.Perm()), major, minor, nil, 0)
}

// Symlink adds a symbolic link at name pointing to target.
func (a *Writer) Symlink(name, target string) error {
	return a.entry(name, modeSymlink|0o777, 0, 0, strings.NewReader(target), int64(len(target)))
}

// Close writes the trailer entry and flushes. It does not close the
// underlying writer.
func (a *Writer) Close() error {
	if a.closed {
		return errors.New("initramfs: archive already closed")
	}
	if err := a.header(0, trailerName, 0, 0, 0, 0, 1); err != nil {
		return err
	}
	a.closed = true
	return a.w.Flush()
}

func (a *Writer) entry(name string, mode, rmajor, rminor uint32, r io.Reader, size int64) error {
	if a.closed {
		return errors.New("initramfs: write after Close")
	}
	clean, err := cleanName(name)
	if err != nil {
		return err
	}
	if a.seen[clean] {
		return fmt.Errorf("initramfs: duplicate entry %q", clean)
	}
	if dir := path.Dir(clean); dir != "." && !a.seen[dir] {
		return fmt.Errorf("initramfs: entry %q added before its directory %q", clean, dir)
	}
	if size < 0 || size > 0xffffffff {
		return fmt.Errorf("initramfs: entry %q: size %d does not fit the newc format", clean, size)
	}
	a.seen[clean] = true
	a.ino++
	nlink := uint32(1)
	if mode&modeType == modeDir {
		nlink = 2
	}
	if err := a.header(a.ino, clean, mode, uint32(size), rmajor, rminor, nlink); err != nil {
		return err
	}
	if size > 0 {
		n, err := io.CopyN(a.w, r, size)
		a.offset += n
		if err != nil {
			return fmt.Errorf("initramfs: entry %q: copying %d bytes: %w", clean, size, err)
		}
	}
	return a.pad()
}

// header writes one 110-byte newc header followed by the NUL-terminated
// name, padded to a multiple of four bytes.
func (a *Writer) header(ino uint32, name string, mode, size, rmajor, rminor, nlink uint32) error {
	hdr := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		newcMagic,
		ino,
		mode,
		0, // uid: root
		0, // gid: root
		nlink,
		0, // mtime: fixed, so archives are reproducible
		size,
		0, 0, // device holding the file: irrelevant in an archive
		rmajor, rminor,
		len(name)+1,
		0, // checksum: unused by "070701"
	)
	n, err := io.WriteString(a.w, hdr+name+"\x00")
	a.offset += int64(n)
	if err != nil {
		return fmt.Errorf("initramfs: writing header of %q: %w", name, err)
	}
	return a.pad()
}

// pad aligns the stream to four bytes, as newc requires after each header+name
// and after each file's data.
func (a *Writer) pad() error {
	if rem := a.offset % 4; rem != 0 {
		n, err := a.w.Write(make([]byte, 4-rem))
		a.offset += int64(n)
		if err != nil {
			return fmt.Errorf("initramfs: padding: %w", err)
		}
	}
	return nil
}

// cleanName turns a path into the archive's form: relative to the root, no
// "." or ".." elements.
func cleanName(name string) (string, error) {
	clean := strings.TrimPrefix(path.Clean("/"+name), "/")
	if clean == "" || clean == "." {
		return "", fmt.Errorf("initramfs: invalid entry name %q", name)
	}
	if clean == trailerName {
		return "", fmt.Errorf("initramfs: entry name %q is reserved", name)
	}
	return clean, nil
}
