package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// refStream is what the x/net reference decoding learns about one stream.
type refStream struct {
	method, path, status, grpcStatus string
	respBody                         uint64
}

// xnetDecode decodes one direction with x/net's Framer and hpack.Decoder:
// the baseline for the benchmark and the reference for the differential
// test. It returns the number of frames read.
func xnetDecode(b []byte, client bool, streams map[uint32]*refStream) (int, error) {
	if client {
		if !bytes.HasPrefix(b, []byte(http2.ClientPreface)) {
			return 0, errors.New("no preface")
		}
		b = b[len(http2.ClientPreface):]
	}
	fr := http2.NewFramer(nil, bytes.NewReader(b))
	fr.SetReuseFrames()
	fr.MaxHeaderListSize = 1 << 20
	var cur *refStream
	dec := hpack.NewDecoder(4096, func(f hpack.HeaderField) {
		if cur == nil {
			return
		}
		switch f.Name {
		case ":method":
			cur.method = f.Value
		case ":path":
			cur.path = f.Value
		case ":status":
			cur.status = f.Value
		case "grpc-status":
			cur.grpcStatus = f.Value
		}
	})
	n := 0
	for {
		f, err := fr.ReadFrame()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("frame %d: %w", n, err)
		}
		n++
		var frag []byte
		ended := false
		switch f := f.(type) {
		case *http2.HeadersFrame:
			frag, ended = f.HeaderBlockFragment(), f.HeadersEnded()
		case *http2.ContinuationFrame:
			frag, ended = f.HeaderBlockFragment(), f.HeadersEnded()
		case *http2.DataFrame:
			if streams != nil && !client {
				if s := streams[f.StreamID]; s != nil {
					s.respBody += uint64(len(f.Data()))
				}
			}
		}
		if frag != nil {
			id := f.Header().StreamID
			cur = nil
			if streams != nil {
				if streams[id] == nil {
					streams[id] = &refStream{}
				}
				cur = streams[id]
			}
			if _, err := dec.Write(frag); err != nil {
				return n, err
			}
			if ended {
				if err := dec.Close(); err != nil {
					return n, err
				}
			}
		}
	}
}

func (r refStream) String() string {
	return fmt.Sprintf("%s %s %s grpc=%s body=%d", r.method, r.path, r.status, r.grpcStatus, r.respBody)
}

func refSummary(streams map[uint32]*refStream) string {
	ids := make([]uint32, 0, len(streams))
	for id := range streams {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var b strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&b, "%d %s\n", id, streams[id])
	}
	return b.String()
}
