// Package capture reads and writes the recorded connections under
// daemon/protocol/testdata, which tests, fuzz seeds and benchmarks replay.
//
// A file holds one TCP connection as the sequence of reads a proxy made,
// in arrival order: each chunk is one byte of direction ('>' client to
// server, '<' server to client), a 4-byte big-endian length and the bytes.
// Keeping the original read boundaries matters: they are the syscall
// boundaries the capture layer would report.
package capture

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// Chunk is one read of one direction.
type Chunk struct {
	FromClient bool
	Data       []byte
}

// MaxChunk bounds a chunk's length when reading, so a corrupt file cannot
// make the reader allocate without bound.
const MaxChunk = 16 << 20

// Write appends one chunk to w.
func Write(w io.Writer, c Chunk) error {
	var h [5]byte
	h[0] = '<'
	if c.FromClient {
		h[0] = '>'
	}
	binary.BigEndian.PutUint32(h[1:], uint32(len(c.Data)))
	if _, err := w.Write(h[:]); err != nil {
		return fmt.Errorf("write chunk header: %w", err)
	}
	if _, err := w.Write(c.Data); err != nil {
		return fmt.Errorf("write chunk: %w", err)
	}
	return nil
}

// Parse decodes a capture file's contents.
func Parse(b []byte) ([]Chunk, error) {
	var out []Chunk
	for off := 0; off < len(b); {
		if len(b)-off < 5 {
			return nil, fmt.Errorf("capture: truncated chunk header at offset %d", off)
		}
		d, n := b[off], binary.BigEndian.Uint32(b[off+1:])
		if d != '<' && d != '>' {
			return nil, fmt.Errorf("capture: bad direction byte %q at offset %d", d, off)
		}
		if n > MaxChunk || uint64(len(b)-off-5) < uint64(n) {
			return nil, fmt.Errorf("capture: chunk of %d bytes at offset %d exceeds the file", n, off)
		}
		out = append(out, Chunk{FromClient: d == '>', Data: b[off+5 : off+5+int(n)]})
		off += 5 + int(n)
	}
	return out, nil
}

// Load reads and parses a capture file.
func Load(path string) ([]Chunk, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load capture: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("load capture %s: %w", path, err)
	}
	return c, nil
}

// Stream concatenates one direction of a capture.
func Stream(cs []Chunk, fromClient bool) []byte {
	var b []byte
	for _, c := range cs {
		if c.FromClient == fromClient {
			b = append(b, c.Data...)
		}
	}
	return b
}

// Chop replays a client and a server stream as the capture layer might:
// interleaved, cut at pseudo-random points chosen by seed, with roughly one
// piece in skipEvery (0: never) reported as skipped instead of captured. It
// drives fuzz targets, so it accepts any input.
func Chop(client, server []byte, seed uint64, skipEvery int, data func(fromClient bool, b []byte), skip func(fromClient bool, n uint64)) {
	x := seed | 1
	next := func() uint64 { // xorshift64: deterministic, no allocation
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		return x
	}
	for len(client) > 0 || len(server) > 0 {
		r := next()
		fromClient := len(server) == 0 || (len(client) > 0 && r&1 == 0)
		b := &server
		if fromClient {
			b = &client
		}
		n := 1 + int((r>>1)%uint64(min(len(*b), 4096)))
		if skipEvery > 0 && (r>>20)%uint64(skipEvery) == 0 {
			skip(fromClient, uint64(n))
		} else {
			data(fromClient, (*b)[:n])
		}
		*b = (*b)[n:]
	}
}
