// Package cniconf finds the node's primary CNI config and adds or removes
// Weir's chained entry.
//
// Weir is a chained plugin: it only works when the container runtime runs it
// after the node's main plugin, inside the network configuration the runtime
// actually uses. Runtimes (containerd, CRI-O, kubelet's historic dockershim)
// pick that configuration with libcni's rule: list the files of the CNI config
// directory whose extension is .conf, .conflist or .json (libcni.ConfFiles),
// sort the names (sort.Strings) and take the first. [Primary] implements
// exactly that rule, so the file patched is the file the runtime reads.
//
// Runtimes skip a primary file that fails to load and fall back to the next
// one. This package deliberately does not: a malformed primary file is
// reported as an error naming the file and left untouched, because patching
// the next file would silently chain Weir into a network the operator may be
// in the middle of replacing. In watch mode the next change to the file
// triggers another attempt.
//
// The config is decoded into generic JSON values (numbers kept as their
// literal text) so that every field this package does not own survives a
// rewrite with its value unchanged; only key order and whitespace may change.
// Every write is atomic (temporary file in the same directory, fsync, rename,
// fsync of the directory) and keeps the file's permission bits and owner, so
// a runtime watching the directory never reads a half-written config.
package cniconf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/weirnet/weir/internal/atomicfile"
)

// PluginType is the "type" of Weir's entry in a plugin list. Any plugin with
// this type is considered Weir's own entry: Install keeps exactly one of them
// and Uninstall removes all of them.
const PluginType = "weir"

// extensions are the file extensions libcni and the runtimes consider to be
// network configs, in the order libcni's callers pass them to ConfFiles. An
// array, so it cannot be changed through a slice of it.
var extensions = [...]string{".conf", ".conflist", ".json"}

// ErrNoConfig is returned (wrapped, with the directory) when the CNI config
// directory holds no network config at all.
var ErrNoConfig = errors.New("no CNI network config found")

// ErrNoMainPlugin is returned (wrapped, with the file) by Install when the
// primary config's plugin list holds no plugin other than weir: weir only
// chains after a main plugin, and the file is left untouched.
var ErrNoMainPlugin = errors.New(`"plugins" holds no main plugin for weir to chain after (it is empty or holds only weir entries)`)

// Action says what an operation did to the primary config.
type Action string

const (
	// Unchanged: the config already had the requested content; nothing was
	// written (the file keeps its inode and mtime).
	Unchanged Action = "unchanged"
	// Added: a Weir entry was appended to a plugin list.
	Added Action = "added"
	// Updated: an existing Weir entry was replaced by the requested one (or
	// duplicate entries were collapsed into one).
	Updated Action = "updated"
	// Converted: a single-plugin config was rewritten as a .conflist that
	// chains Weir after the original plugin; the original file was removed.
	Converted Action = "converted"
	// Removed: Uninstall removed Weir's entry.
	Removed Action = "removed"
)

// Result describes the outcome of Install or Uninstall.
type Result struct {
	// Path is the primary config after the operation.
	Path string
	// Action is what was done to it.
	Action Action
	// Replaced is the single-plugin file that a conversion removed; empty
	// unless Action is Converted.
	Replaced string
}

// Changed reports whether the operation wrote anything.
func (r Result) Changed() bool { return r.Action != Unchanged }

// IsConfigFile reports whether libcni would consider a file with this name a
// network config.
func IsConfigFile(name string) bool {
	return slices.Contains(extensions[:], filepath.Ext(name))
}

// configFiles returns the network config files of dir in the order the
// runtimes consider them: libcni.ConfFiles (regular entries whose extension is
// one of extensions, directories excluded) followed by sort.Strings on the
// joined paths. A missing directory yields no files, as in libcni.
func configFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list CNI config dir %s: %w", dir, err)
	}
	var files []string
	for _, e := range entries {
		if e.IsDir() || !IsConfigFile(e.Name()) {
			continue
		}
		files = append(files, filepath.Join(dir, e.Name()))
	}
	slices.Sort(files)
	return files, nil
}

// Primary returns the path of the node's primary network config in dir: the
// lexicographically first file with a .conf, .conflist or .json extension. It
// returns an error wrapping ErrNoConfig when there is none.
func Primary(dir string) (string, error) {
	files, err := configFiles(dir)
	if err != nil {
		return "", err
	}
	if len(files) == 0 {
		return "", fmt.Errorf("%w in %s (looked for %s files)", ErrNoConfig, dir, strings.Join(extensions[:], ", "))
	}
	return files[0], nil
}

// Install adds entry to the primary config in dir, chained after every plugin
// already there, or updates Weir's existing entry in place to the requested
// values. A config that already holds exactly the requested entry is not
// rewritten. A single-plugin .conf or .json file is converted into
// <name>.conflist holding the original plugin followed by Weir's entry.
//
// Conversion order: the new .conflist is written (atomically) before the old
// file is removed. For a .conf, "<name>.conf" sorts before "<name>.conflist"
// (it is a prefix of it), so until the removal the runtime still sees the
// original, unchained network; after it, the chained one. For a .json,
// "<name>.conflist" sorts first, so the chained network is in force as soon as
// it is written. Either way the runtime sees a complete, valid config at every
// instant. Install refuses a conversion that would let some other file become
// the primary, and one that would overwrite an unrelated existing .conflist.
func Install(dir string, entry Entry) (Result, error) {
	if err := entry.Validate(); err != nil {
		return Result{}, err
	}
	want, err := entry.object()
	if err != nil {
		return Result{}, err
	}
	path, err := Primary(dir)
	if err != nil {
		return Result{}, err
	}
	doc, raw, err := readConfig(path)
	if err != nil {
		return Result{}, err
	}
	if err := entry.checkVersion(path, doc); err != nil {
		return Result{}, err
	}
	if !doc.isList {
		return convert(dir, path, doc, raw, want)
	}
	if !doc.hasMainPlugin() {
		// Chained after nothing, weir has no prevResult and every ADD on
		// the network would fail with CNI error 7.
		return Result{}, fmt.Errorf("CNI config %s: %w", path, ErrNoMainPlugin)
	}
	action := doc.putEntry(want)
	if action == Unchanged {
		return Result{Path: path, Action: Unchanged}, nil
	}
	out, err := doc.encode()
	if err != nil {
		return Result{}, fmt.Errorf("encode %s: %w", path, err)
	}
	if err := replaceFile(path, out, raw); err != nil {
		return Result{}, err
	}
	return Result{Path: path, Action: action}, nil
}

// convert turns the single-plugin config at path into a .conflist chaining
// want after the original plugin. See Install for the ordering argument.
func convert(dir, path string, doc *document, st fileState, want map[string]any) (Result, error) {
	base := filepath.Base(path)
	target := filepath.Join(dir, base[:len(base)-len(filepath.Ext(base))]+".conflist")

	// After the old file is gone, the new one must be what the runtime picks.
	files, err := configFiles(dir)
	if err != nil {
		return Result{}, err
	}
	rest := slices.DeleteFunc(files, func(f string) bool { return f == path })
	if !slices.Contains(rest, target) {
		rest = append(rest, target)
		slices.Sort(rest)
	}
	if rest[0] != target {
		return Result{}, fmt.Errorf("convert %s to %s: %s would then sort first and become the primary config; rename one of them", path, target, rest[0])
	}

	list := doc.toList()
	list.putEntry(want)
	out, err := list.encode()
	if err != nil {
		return Result{}, fmt.Errorf("encode %s: %w", target, err)
	}

	switch _, err := os.Lstat(target); {
	case errors.Is(err, os.ErrNotExist):
		// The common case: nothing in the way.
	case err != nil:
		return Result{}, fmt.Errorf("convert %s: stat %s: %w", path, target, err)
	default:
		// A previous run may have written the .conflist and died before
		// removing the .conf. Only then is it ours to overwrite.
		existing, _, rerr := readConfig(target)
		if rerr != nil || !existing.isList || !list.samePluginsExceptWeir(existing) {
			return Result{}, fmt.Errorf("convert %s: %s already exists and is not a conversion of it; remove one of them", path, target)
		}
	}

	if err := writeNewFile(target, out, st.info); err != nil {
		return Result{}, err
	}
	// If the main plugin's installer rewrote the original meanwhile, its new
	// content must win: take the conversion back and let the caller retry.
	if err := unchanged(path, st); err != nil {
		if rerr := os.Remove(target); rerr != nil {
			return Result{}, fmt.Errorf("%w (and removing %s failed: %v)", err, target, rerr)
		}
		return Result{}, err
	}
	if err := os.Remove(path); err != nil {
		return Result{}, fmt.Errorf("remove %s after writing %s: %w", path, target, err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return Result{}, err
	}
	return Result{Path: target, Action: Converted, Replaced: path}, nil
}

// Uninstall removes every Weir entry from the primary config in dir and
// leaves everything else as it is. A config without a Weir entry is not
// rewritten. A .conflist produced by Install's conversion stays a .conflist:
// its plugin list is restored to the original single plugin, which the
// runtimes treat exactly like the original .conf.
func Uninstall(dir string) (Result, error) {
	path, err := Primary(dir)
	if err != nil {
		return Result{}, err
	}
	doc, raw, err := readConfig(path)
	if err != nil {
		return Result{}, err
	}
	if !doc.isList || !doc.removeEntries() {
		return Result{Path: path, Action: Unchanged}, nil
	}
	out, err := doc.encode()
	if err != nil {
		return Result{}, fmt.Errorf("encode %s: %w", path, err)
	}
	if err := replaceFile(path, out, raw); err != nil {
		return Result{}, err
	}
	return Result{Path: path, Action: Removed}, nil
}
