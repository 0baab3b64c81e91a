// Package streamdump writes the stream dump, a debugging aid (config
// capture.dumpDir): for every connection it writes exactly the bytes the
// parsers were given, so that a test, or a user chasing a parser problem,
// can compare them with what the peers really sent:
//
//	<dir>/<connID>-egress.bin   bytes the monitored process sent
//	<dir>/<connID>-ingress.bin  bytes it received
//	<dir>/<connID>.json         {"connection": ConnInfo at close, "gaps": [...]}
//
// Bytes the capture does not have (lost events, truncated chunks, past the
// capture limit) are not written; each such run is a gap {direction,
// offset, length} where offset is the position in the stream, so the .bin
// file is the stream with the gaps cut out. While the connection is open
// the files are named *.bin.partial; when it leaves the table they are
// closed and renamed, then the .json is written, so a reader that finds a
// file under its final name finds it complete. Nothing removes them.
package streamdump

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/api/wire"
)

// Bounds of the stream dump.
const (
	// MaxConns bounds the connections dumped at once (two open files
	// each); connections beyond it are not dumped, and counted.
	MaxConns = 1024
	// MaxGaps bounds the gaps recorded per connection.
	MaxGaps = 4096
)

// Writer writes the stream dump of a directory. It is safe for concurrent
// use; each Conn is used by one goroutine.
type Writer struct {
	dir string
	log *slog.Logger

	mu   sync.Mutex
	live map[*Conn]struct{}

	skipped atomic.Uint64 // connections not dumped (MaxConns)
	errors  atomic.Uint64 // write failures (the connection's dump stops)
}

// New creates dir if needed and returns a Writer into it.
func New(dir string, log *slog.Logger) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("monitor: capture.dumpDir: %w", err)
	}
	log.Warn("dumping every connection's bytes: a debugging aid, not for production", "dir", dir)
	return &Writer{dir: dir, log: log, live: make(map[*Conn]struct{})}, nil
}

// Skipped counts the connections not dumped because MaxConns were open.
func (d *Writer) Skipped() uint64 { return d.skipped.Load() }

// Errors counts the dump's file failures (each stops one connection's dump).
func (d *Writer) Errors() uint64 { return d.errors.Load() }

// Gap is one run of stream bytes missing from a .bin file.
type Gap struct {
	Direction string `json:"direction"`
	Offset    uint64 `json:"offset"`
	Length    uint64 `json:"length"`
}

// Summary is the content of <connID>.json.
type Summary struct {
	Connection    wire.ConnInfo `json:"connection"`
	Gaps          []Gap         `json:"gaps"`
	GapsTruncated bool          `json:"gapsTruncated,omitempty"`
}

// Conn is one connection's dump. Its methods do nothing on a nil
// receiver, so the pipeline calls them unconditionally.
type Conn struct {
	d      *Writer
	id     event.ConnID
	files  [2]*os.File
	off    [2]uint64
	gaps   []Gap
	gapsTr bool
	failed bool
}

// partialSuffix marks dump files of connections still open.
const partialSuffix = ".partial"

func (d *Writer) path(id event.ConnID, suffix string) string {
	return filepath.Join(d.dir, fmt.Sprintf("%d%s", uint64(id), suffix))
}

func (d *Writer) binPath(id event.ConnID, dir event.Direction) string {
	return d.path(id, "-"+dir.String()+".bin")
}

// Open starts the dump of connection id, or returns nil (a no-op Conn)
// when MaxConns are open or its files cannot be created (counted).
func (d *Writer) Open(id event.ConnID) *Conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.live) >= MaxConns {
		d.skipped.Add(1)
		return nil
	}
	cd := &Conn{d: d, id: id, gaps: []Gap{}}
	for dir := range cd.files {
		f, err := os.Create(d.binPath(id, event.Direction(dir)) + partialSuffix)
		if err != nil {
			d.errors.Add(1)
			d.log.Error("stream dump: create file", "conn", uint64(id), "error", err)
			for _, f := range cd.files {
				if f != nil {
					f.Close()
				}
			}
			return nil
		}
		cd.files[dir] = f
	}
	d.live[cd] = struct{}{}
	return cd
}

// Data appends bytes the parsers were given in direction dir.
func (cd *Conn) Data(dir event.Direction, b []byte) {
	if cd == nil || cd.failed {
		return
	}
	if _, err := cd.files[dir].Write(b); err != nil {
		cd.fail(err)
		return
	}
	cd.off[dir] += uint64(len(b))
}

// Skip records n stream bytes of direction dir the parsers did not get.
func (cd *Conn) Skip(dir event.Direction, n uint64) {
	if cd == nil {
		return
	}
	if len(cd.gaps) < MaxGaps {
		cd.gaps = append(cd.gaps, Gap{Direction: dir.String(), Offset: cd.off[dir], Length: n})
	} else {
		cd.gapsTr = true
	}
	cd.off[dir] += n
}

func (cd *Conn) fail(err error) {
	cd.failed = true
	cd.d.errors.Add(1)
	cd.d.log.Error("stream dump: write failed; this connection's dump stops", "conn", uint64(cd.id), "error", err)
}

// Close writes the summary and closes the files.
func (cd *Conn) Close(info wire.ConnInfo) {
	if cd == nil {
		return
	}
	err := cd.closeFiles()
	for dir := range cd.files {
		if err == nil {
			p := cd.d.binPath(cd.id, event.Direction(dir))
			err = os.Rename(p+partialSuffix, p)
		}
	}
	if err == nil && !cd.failed {
		var b []byte
		b, err = json.MarshalIndent(Summary{Connection: info, Gaps: cd.gaps, GapsTruncated: cd.gapsTr}, "", "  ")
		if err == nil {
			err = os.WriteFile(cd.d.path(cd.id, ".json"), append(b, '\n'), 0o600)
		}
	}
	if err != nil {
		cd.fail(err)
	}
}

func (cd *Conn) closeFiles() error {
	cd.d.mu.Lock()
	delete(cd.d.live, cd)
	cd.d.mu.Unlock()
	var errs []error
	for i, f := range cd.files {
		if f != nil {
			errs = append(errs, f.Close())
			cd.files[i] = nil
		}
	}
	return errors.Join(errs...)
}

// CloseAll closes the files of connections still open (at shutdown, after
// the table closed its connections this finds none).
func (d *Writer) CloseAll() {
	d.mu.Lock()
	conns := make([]*Conn, 0, len(d.live))
	for cd := range d.live {
		conns = append(conns, cd)
	}
	d.mu.Unlock()
	for _, cd := range conns {
		_ = cd.closeFiles()
	}
}
