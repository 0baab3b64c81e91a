package cniconf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
)

// document is a decoded network config. Values are kept as the generic types
// encoding/json produces, with numbers as json.Number, so that re-encoding
// reproduces every value this package does not touch.
type document struct {
	obj    map[string]any
	isList bool // obj holds a "plugins" list; otherwise obj is a single plugin
}

// fileState is what was observed about a config file when it was read: the
// file actually holding the bytes (symlinks resolved) and its metadata. Writes
// go to that file and are refused if it changed in the meantime.
type fileState struct {
	real string
	info os.FileInfo
}

// errChanged is returned when a config file changed between being read and
// being replaced; the caller should read it again.
var errChanged = errors.New("changed while being patched")

// readConfig reads and decodes the network config at path. Every error names
// the file.
func readConfig(path string) (*document, fileState, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, fileState{}, fmt.Errorf("resolve CNI config %s: %w", path, err)
	}
	f, err := os.Open(real)
	if err != nil {
		return nil, fileState{}, fmt.Errorf("open CNI config %s: %w", path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fileState{}, fmt.Errorf("stat CNI config %s: %w", path, err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fileState{}, fmt.Errorf("read CNI config %s: %w", path, err)
	}
	doc, err := decode(data, filepath.Ext(path) == ".conflist")
	if err != nil {
		return nil, fileState{}, fmt.Errorf("CNI config %s: %w", path, err)
	}
	return doc, fileState{real: real, info: info}, nil
}

// decode parses a network config. requireList is set for .conflist files,
// which libcni only ever loads as plugin lists.
func decode(data []byte, requireList bool) (*document, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("file is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("malformed JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("malformed JSON: unexpected data after the top-level object")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("top level is a JSON %s, want an object", jsonKind(v))
	}

	if raw, ok := obj["plugins"]; ok {
		plugins, ok := raw.([]any)
		if !ok {
			return nil, fmt.Errorf(`"plugins" is a JSON %s, want an array`, jsonKind(raw))
		}
		for i, p := range plugins {
			po, ok := p.(map[string]any)
			if !ok {
				return nil, fmt.Errorf(`plugins[%d] is a JSON %s, want an object`, i, jsonKind(p))
			}
			if t, ok := po["type"].(string); !ok || t == "" {
				return nil, fmt.Errorf(`plugins[%d] has no "type"`, i)
			}
		}
		return &document{obj: obj, isList: true}, nil
	}
	if requireList {
		return nil, errors.New(`a .conflist must hold a "plugins" array`)
	}
	t, ok := obj["type"].(string)
	if !ok || t == "" {
		return nil, errors.New(`neither a plugin list ("plugins") nor a single plugin ("type")`)
	}
	if t == PluginType {
		return nil, fmt.Errorf("the config is a lone %q plugin; weir must be chained after a main plugin", PluginType)
	}
	return &document{obj: obj, isList: false}, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	default:
		return "object"
	}
}

func (d *document) plugins() []any {
	p, _ := d.obj["plugins"].([]any)
	return p
}

func isWeir(p any) bool {
	m, _ := p.(map[string]any)
	t, _ := m["type"].(string)
	return t == PluginType
}

// putEntry makes want the one and only Weir entry of the plugin list. A new
// entry goes last (chained after every other plugin); an existing one keeps
// its position and is replaced, and any further Weir entries are dropped.
func (d *document) putEntry(want map[string]any) Action {
	plugins := d.plugins()
	first, count := -1, 0
	for i, p := range plugins {
		if isWeir(p) {
			if first < 0 {
				first = i
			}
			count++
		}
	}
	switch {
	case first < 0:
		d.obj["plugins"] = append(plugins, any(want))
		return Added
	case count == 1 && reflect.DeepEqual(plugins[first], any(want)):
		return Unchanged
	}
	out := make([]any, 0, len(plugins)-count+1)
	for i, p := range plugins {
		switch {
		case i == first:
			out = append(out, want)
		case !isWeir(p):
			out = append(out, p)
		}
	}
	d.obj["plugins"] = out
	return Updated
}

// removeEntries drops every Weir entry and reports whether there was one.
func (d *document) removeEntries() bool {
	plugins := d.plugins()
	kept := slices.DeleteFunc(slices.Clone(plugins), isWeir)
	if len(kept) == len(plugins) {
		return false
	}
	d.obj["plugins"] = kept
	return true
}

// hasMainPlugin reports whether the plugin list holds a plugin that is not
// weir's entry.
func (d *document) hasMainPlugin() bool {
	return slices.ContainsFunc(d.plugins(), func(p any) bool { return !isWeir(p) })
}

// toList wraps a single-plugin config into a plugin list the way libcni's
// ConfListFromConf does: the list takes the plugin's name and cniVersion, and
// the plugin keeps all of its fields.
func (d *document) toList() *document {
	list := map[string]any{"plugins": []any{d.obj}}
	for _, k := range []string{"name", "cniVersion"} {
		if v, ok := d.obj[k]; ok {
			list[k] = v
		}
	}
	return &document{obj: list, isList: true}
}

// samePluginsExceptWeir reports whether both lists hold the same plugins once
// Weir's entries are ignored.
func (d *document) samePluginsExceptWeir(other *document) bool {
	a := slices.DeleteFunc(slices.Clone(d.plugins()), isWeir)
	b := slices.DeleteFunc(slices.Clone(other.plugins()), isWeir)
	return reflect.DeepEqual(a, b)
}

// encode renders the config as indented JSON with a trailing newline. HTML
// escaping is off so strings are written as they were read.
func (d *document) encode() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d.obj); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
