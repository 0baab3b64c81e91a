// Package kmod finds kernel modules and their dependencies in an unpacked
// Debian kernel package, so that the kernel test harness can put exactly the
// modules a guest needs (veth, sch_ingress, ...) into its initramfs.
//
// Debian's linux-image packages ship no modules.dep (depmod runs at install
// time), so dependencies are read from each module's own .modinfo section,
// which is what depmod itself reads.
package kmod

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Index maps module names to their files under one modules directory.
type Index struct {
	root    string
	files   map[string]string // canonical name -> path
	builtin map[string]bool   // canonical names listed in modules.builtin
}

// Canonical returns the form of a module name the kernel uses: "-" and "_"
// are interchangeable in module names, and the kernel stores "_".
func Canonical(name string) string {
	return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(name), ".ko"), "-", "_")
}

// NewIndex indexes every *.ko file below root (for example the package's
// lib/modules/<release>) and the modules.builtin lists there, so that asking
// for a module the kernel has built in is not an error. Compressed modules
// (*.ko.xz, as Debian ships from 6.12 on) are not indexed: tests/kernels/run.sh
// decompresses them on the host, since finit_module would otherwise need the
// kernel's own decompression support.
func NewIndex(root string) (*Index, error) {
	idx := &Index{root: root, files: map[string]string{}, builtin: map[string]bool{}}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
		case strings.HasSuffix(path, ".ko"):
			idx.files[Canonical(path)] = path
		case d.Name() == "modules.builtin":
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, line := range strings.Fields(string(b)) {
				idx.builtin[Canonical(line)] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("indexing modules under %s: %w", root, err)
	}
	if len(idx.files) == 0 {
		return nil, fmt.Errorf("no *.ko modules under %s (compressed *.ko.xz/*.ko.zst are not indexed: decompress them first, as tests/kernels/run.sh does)", root)
	}
	return idx, nil
}

// Resolve returns the files of the named modules and of everything they
// depend on, dependencies first, each once: the order in which to load them.
// Built-in modules need no file and are left out.
func (idx *Index) Resolve(names ...string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1: visiting, 2: done
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		if idx.builtin[name] {
			return nil
		}
		switch state[name] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(chain, name), " -> "))
		}
		path, ok := idx.files[name]
		if !ok {
			if len(chain) == 0 {
				return fmt.Errorf("module %q not found under %s", name, idx.root)
			}
			return fmt.Errorf("module %q, needed by %s, not found under %s", name, chain[len(chain)-1], idx.root)
		}
		state[name] = 1
		deps, err := Depends(path)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, path)
		return nil
	}
	for _, n := range names {
		if err := visit(Canonical(n), nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// Depends reads the "depends=" entry of a module's .modinfo section.
func Depends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s has no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("reading .modinfo of %s: %w", path, err)
	}
	for _, entry := range bytes.Split(data, []byte{0}) {
		v, ok := bytes.CutPrefix(entry, []byte("depends="))
		if !ok {
			continue
		}
		if len(v) == 0 {
			return nil, nil
		}
		var deps []string
		for _, d := range strings.Split(string(v), ",") {
			deps = append(deps, Canonical(d))
		}
		return deps, nil
	}
	return nil, errors.New("module " + path + " has no depends= entry in .modinfo")
}
