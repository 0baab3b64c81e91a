package walker

import (
	"bytes"
	"fmt"
	"math/rand/v2"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// conversation is an HTTP/2 connection's two byte streams, each as the
// writes a peer made, in the order the writes happened (dir 0: client).
type conversation struct {
	writes    []write
	exchanges int
}

type write struct {
	client bool
	b      []byte
}

// genConversation builds an h2c conversation from seed: n gRPC-like
// exchanges whose responses lag one request behind (so writes pack frames
// of several streams), with header churn for HPACK, DATA payloads of
// varied size (some padded, some empty), and PING/WINDOW_UPDATE frames in
// between. Bodies are large enough to pass any small capture budget.
func genConversation(seed uint64, n int) conversation {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	cv := conversation{exchanges: n}
	var cbuf, sbuf bytes.Buffer
	cf, sf := http2.NewFramer(&cbuf, nil), http2.NewFramer(&sbuf, nil)
	var chb, shb bytes.Buffer
	cenc, senc := hpack.NewEncoder(&chb), hpack.NewEncoder(&shb)
	flush := func(client bool) {
		b := &sbuf
		if client {
			b = &cbuf
		}
		if b.Len() > 0 {
			cv.writes = append(cv.writes, write{client: client, b: bytes.Clone(b.Bytes())})
			b.Reset()
		}
	}
	cbuf.WriteString(Preface)
	cf.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	flush(true)
	sf.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100})
	sf.WriteSettingsAck()
	flush(false)
	cf.WriteSettingsAck()

	body := func(f *http2.Framer, sid uint32, end bool) {
		size := []int{0, 5, 200, 300, 4000, 16384, 40000}[r.IntN(7)]
		for size > 0 || end {
			k := min(size, 16384)
			b := bytes.Repeat([]byte{byte('a' + r.IntN(26))}, k)
			size -= k
			last := end && size == 0
			if r.IntN(4) == 0 {
				f.WriteDataPadded(sid, last, b, make([]byte, r.IntN(20)))
			} else {
				f.WriteData(sid, last, b)
			}
			if last || size == 0 {
				break
			}
		}
	}
	headers := func(f *http2.Framer, hb *bytes.Buffer, enc *hpack.Encoder, sid uint32, end bool, fields ...string) {
		hb.Reset()
		for i := 0; i+1 < len(fields); i += 2 {
			enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		f.WriteHeaders(http2.HeadersFrameParam{StreamID: sid, BlockFragment: hb.Bytes(), EndStream: end, EndHeaders: true})
	}
	respond := func(i int) {
		sid := uint32(2*i + 1)
		if i%7 == 3 { // trailers-only error
			headers(sf, &shb, senc, sid, true, ":status", "200", "content-type", "application/grpc", "grpc-status", "10")
		} else {
			headers(sf, &shb, senc, sid, false, ":status", "200", "content-type", "application/grpc")
			body(sf, sid, false)
			headers(sf, &shb, senc, sid, true, "grpc-status", fmt.Sprint(i%3), "x-churn", fmt.Sprint(r.Uint64()))
		}
		if r.IntN(3) == 0 {
			sf.WriteWindowUpdate(0, uint32(1+r.IntN(1<<16)))
		}
		flush(false)
	}
	for i := range n {
		sid := uint32(2*i + 1)
		headers(cf, &chb, cenc, sid, false, ":method", "POST", ":scheme", "http", ":authority", "svc",
			":path", fmt.Sprintf("/pkg.Svc/M%d", i%5), "content-type", "application/grpc",
			"x-req", fmt.Sprint(r.Uint64()))
		body(cf, sid, true)
		if r.IntN(4) == 0 {
			cf.WritePing(false, [8]byte{byte(i)})
		}
		flush(true)
		if i > 0 {
			respond(i - 1)
		}
	}
	if n > 0 {
		respond(n - 1)
	}
	return cv
}
