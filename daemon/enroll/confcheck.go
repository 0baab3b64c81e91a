package enroll

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/weirnet/weir/netconf"
)

// Bounds of CheckInstalled: a CNI config directory holds a handful of small
// files.
const (
	maxConfFiles     = 64
	maxConfFileBytes = 1 << 20
)

// InstalledCheck keeps the latest CheckInstalled result, for /readyz.
type InstalledCheck struct {
	Dir, Socket, SpoolDir string // Dir "": no check

	mu   sync.Mutex
	last []string
}

// Refresh checks again and returns the problems found.
func (c *InstalledCheck) Refresh() []string {
	var w []string
	if c.Dir != "" {
		w = CheckInstalled(c.Dir, c.Socket, c.SpoolDir)
	}
	c.mu.Lock()
	c.last = w
	c.mu.Unlock()
	return w
}

// Warnings returns what the last Refresh found.
func (c *InstalledCheck) Warnings() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// CheckInstalled reads the network configs in confDir (the .conf,
// .conflist and .json files runtimes load) and returns one message for each
// weir entry that names a daemon socket or spool directory other than
// socket and spoolDir. Such a plugin dials a socket nobody serves, or
// spools records this daemon never reads: its pods are only found by
// repair. weir-install --daemon-config writes the daemon's own values, so
// a mismatch means the two were configured apart. A missing directory has
// no entries; unreadable files are skipped (the runtime reports them).
func CheckInstalled(confDir, socket, spoolDir string) []string {
	ents, err := os.ReadDir(confDir)
	if err != nil {
		return nil
	}
	var out []string
	n := 0
	for _, e := range ents {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".conf" && ext != ".conflist" && ext != ".json") {
			continue
		}
		if n++; n > maxConfFiles {
			break
		}
		path := filepath.Join(confDir, e.Name())
		b, err := readBounded(path, maxConfFileBytes)
		if err != nil {
			continue
		}
		var list struct {
			Name       string           `json:"name"`
			CNIVersion string           `json:"cniVersion"`
			Plugins    []map[string]any `json:"plugins"`
		}
		if json.Unmarshal(b, &list) != nil {
			continue
		}
		for i, p := range list.Plugins {
			if p["type"] != "weir" {
				continue
			}
			p["name"], p["cniVersion"] = list.Name, list.CNIVersion
			raw, _ := json.Marshal(p)
			c, _ := netconf.ParseLenient(raw) // always usable; defaults stand in for bad fields
			if c.DaemonSocket != socket {
				out = append(out, fmt.Sprintf("%s: plugins[%d] (weir) has daemonSocket %q, this daemon serves %q",
					path, i, c.DaemonSocket, socket))
			}
			if filepath.Clean(c.SpoolDir) != filepath.Clean(spoolDir) {
				out = append(out, fmt.Sprintf("%s: plugins[%d] (weir) has spoolDir %q, this daemon drains %q",
					path, i, c.SpoolDir, spoolDir))
			}
		}
	}
	slices.Sort(out)
	return out
}
