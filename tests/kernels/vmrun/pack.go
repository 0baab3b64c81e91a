package main

import (
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/weirnet/weir/tests/kernels/internal/guestproto"
	"github.com/weirnet/weir/tests/kernels/internal/initramfs"
)

// Guest layout.
const (
	guestTestsDir   = "/tests"
	guestToolsDir   = "/tools"
	guestModulesDir = "/lib/modules"
)

// killMargin is how much longer than -test.timeout the guest lets a binary
// run before killing it: Go's own timeout panics with every goroutine's
// stack, which is worth more than a kill.
const killMargin = 15 * time.Second

// pack writes the gzip-compressed initramfs to dst and returns the manifest
// it holds.
func pack(dst string, c *config, nonce string, env map[string]string, modules []string) (*guestproto.Manifest, error) {
	m := &guestproto.Manifest{Nonce: nonce, Env: env}
	for _, mod := range modules {
		m.Modules = append(m.Modules, path.Join(guestModulesDir, filepath.Base(mod)))
	}
	for _, t := range c.tests {
		if err := checkStatic(t.binary); err != nil {
			return nil, fmt.Errorf("test %s: %w", t.name, err)
		}
		dir := path.Join(guestTestsDir, t.name)
		args := append([]string{"-test.v", "-test.count=1", "-test.timeout=" + c.testTimeout.String()}, c.testArgs...)
		m.Tests = append(m.Tests, guestproto.Test{
			Name:    t.name,
			Path:    path.Join(dir, t.name+".test"),
			Dir:     dir,
			Args:    args,
			Timeout: guestproto.Duration(c.testTimeout + killMargin),
		})
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if err := checkStatic(c.initBin); err != nil {
		return nil, fmt.Errorf("-init: %w", err)
	}
	for _, tl := range c.tools {
		if err := checkStatic(tl.binary); err != nil {
			return nil, fmt.Errorf("-tool %s: %w", tl.name, err)
		}
	}
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding manifest: %w", err)
	}

	f, err := os.Create(dst)
	if err != nil {
		return nil, fmt.Errorf("creating initramfs: %w", err)
	}
	defer f.Close()
	// Fastest compression: the guest decompresses under emulation, and the
	// archive only lives for one run.
	gz, err := gzip.NewWriterLevel(f, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	w := initramfs.NewWriter(gz)

	// The first error wins; later writes are harmless no-ops on a broken
	// archive and keep this list readable.
	var addErr error
	add := func(err error) {
		if err != nil && addErr == nil {
			addErr = err
		}
	}
	for _, d := range []string{"dev", "proc", "sys", "tmp", "run", "root", "weir", "lib", "lib/modules", "tests", "tools"} {
		add(w.Dir(d, 0o755))
	}
	// The kernel opens /dev/console for init's stdio before anything is
	// mounted, so the node must be in the archive.
	add(w.CharDev("dev/console", 0o600, 5, 1))
	add(addFile(w, "init", c.initBin, 0o755))
	add(w.Bytes(guestproto.ManifestPath, 0o644, manifest))
	for i, mod := range modules {
		add(addFile(w, m.Modules[i], mod, 0o644))
	}
	for _, tl := range c.tools {
		add(addFile(w, path.Join(guestToolsDir, tl.name), tl.binary, 0o755))
	}
	for i, t := range c.tests {
		gt := m.Tests[i]
		add(w.Dir(gt.Dir, 0o755))
		add(addFile(w, gt.Path, t.binary, 0o755))
		if t.pkgDir != "" {
			add(addTree(w, path.Join(gt.Dir, "testdata"), filepath.Join(t.pkgDir, "testdata")))
		}
	}
	add(w.Close())
	add(gz.Close())
	add(f.Close())
	if addErr != nil {
		return nil, fmt.Errorf("writing initramfs %s: %w", dst, addErr)
	}
	return m, nil
}

// addFile copies the host file src into the archive as name.
func addFile(w *initramfs.Writer, name, src string, perm fs.FileMode) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	return w.File(name, perm, fi.Size(), f)
}

// addTree copies the directory src (if it exists) into the archive as name,
// keeping regular files, directories and symlinks.
func addTree(w *initramfs.Writer, name, src string) error {
	if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		dst := path.Join(name, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return w.Dir(dst, info.Mode().Perm())
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return w.Symlink(dst, target)
		case info.Mode().IsRegular():
			return addFile(w, dst, p, info.Mode().Perm())
		default:
			return fmt.Errorf("testdata entry %s is neither file, directory nor symlink", p)
		}
	})
}

// checkStatic rejects binaries that need a dynamic loader: the guest has no
// libc. Go binaries link dynamically when cgo is on (net, os/user).
func checkStatic(bin string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("reading %s: %w", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked, but the guest has no libc: build it with CGO_ENABLED=0", bin)
		}
	}
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("%s is built for %v, the guest is x86-64", bin, f.Machine)
	}
	return nil
}
