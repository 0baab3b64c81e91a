package http2

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/net/http2/hpack"
)

// hpackDecoder is a passive HPACK (RFC 7541) decoder for one direction.
//
// It differs from a protocol endpoint's decoder in two ways. It hands out
// names and values as byte slices valid during the callback, so a header
// field the parser does not keep costs no allocation. And it knows when its
// state is incomplete: after a gap in the captured stream the entries inserted
// before the gap are unknown, so references to them are reported as unknown
// instead of resolving to a wrong entry. Entries inserted after the gap are
// the newest, so they keep their exact indexes and stay usable.
type hpackDecoder struct {
	tab dynTable
	// limit bounds the table size the decoder will hold (Limits.MaxHPACKTable).
	limit uint32
	// allowed is the largest size the peer's SETTINGS_HEADER_TABLE_SIZE
	// permitted so far; an update beyond it is a protocol error, counted but
	// applied (a passive observer follows what the encoder did).
	allowed uint32
	// lost: entries older than the ones in tab are unknown.
	lost bool
	// overAllowed counts size updates beyond the advertised setting.
	overAllowed int

	nameBuf, valBuf bytes.Buffer
}

// fieldFunc receives one decoded header field. name is nil when the name is
// unknown; unknown is set when the value is unknown.
type fieldFunc func(name, value []byte, unknown bool)

const initialTableSize = 4096

func newHPACKDecoder(limit uint32) *hpackDecoder {
	d := &hpackDecoder{limit: limit, allowed: initialTableSize}
	d.tab.max = min(initialTableSize, limit)
	return d
}

var (
	errTruncated = errors.New("hpack: truncated header block")
	errIndex     = errors.New("hpack: invalid index")
	errInteger   = errors.New("hpack: integer overflow")
)

// markLost records that an unknown number of entries were inserted. The
// entries held so far are no longer the encoder's newest, so their indexes
// are unknown too: they are dropped, and only entries inserted from now on
// (which are the newest, in order) resolve.
func (d *hpackDecoder) markLost() {
	d.tab.clear()
	d.lost = true
}

// setAllowed applies the receiving peer's SETTINGS_HEADER_TABLE_SIZE.
func (d *hpackDecoder) setAllowed(v uint32) { d.allowed = max(d.allowed, v) }

// decode decodes one complete header block, calling emit per field. On error
// the table state is no longer trustworthy and the caller marks it lost.
func (d *hpackDecoder) decode(b []byte, emit fieldFunc) error {
	for len(b) > 0 {
		c := b[0]
		switch {
		case c&0x80 != 0: // indexed field
			idx, rest, err := readInt(b, 7)
			if err != nil {
				return err
			}
			b = rest
			name, value, known, err := d.lookup(idx)
			if err != nil {
				return err
			}
			if !known {
				emit(nil, nil, true)
				continue
			}
			emit(name, value, false)
		case c&0xe0 == 0x20: // dynamic table size update
			v, rest, err := readInt(b, 5)
			if err != nil {
				return err
			}
			b = rest
			if v > uint64(d.allowed) {
				d.overAllowed++
			}
			if v > uint64(d.limit) {
				// More than we are willing to hold: keep a smaller table,
				// whose evictions leave older entries unknown.
				v = uint64(d.limit)
				d.lost = true
			}
			d.tab.setMax(uint32(v))
			if v == 0 {
				d.lost = false // the table is empty: state known again
			}
		default:
			var prefix uint8
			index := false
			switch {
			case c&0xc0 == 0x40:
				prefix, index = 6, true
			default: // 0000xxxx without indexing, 0001xxxx never indexed
				prefix = 4
			}
			idx, rest, err := readInt(b, prefix)
			if err != nil {
				return err
			}
			b = rest
			var name []byte
			nameKnown := true
			if idx == 0 {
				name, b, err = d.readString(b, &d.nameBuf)
				if err != nil {
					return err
				}
			} else {
				var known bool
				name, _, known, err = d.lookup(idx)
				if err != nil {
					return err
				}
				nameKnown = known
				if known && index && idx > uint64(len(staticTable)) {
					// The name lives in the table that add may compact.
					d.nameBuf.Reset()
					d.nameBuf.Write(name)
					name = d.nameBuf.Bytes()
				}
			}
			var value []byte
			value, b, err = d.readString(b, &d.valBuf)
			if err != nil {
				return err
			}
			if !nameKnown {
				emit(nil, value, false)
				if index {
					// An entry of unknown size enters the table: every
					// entry's fate is now unknown.
					d.tab.clear()
					d.lost = true
				}
				continue
			}
			emit(name, value, false)
			if index {
				d.tab.add(name, value)
			}
		}
	}
	return nil
}

// lookup resolves an index. known is false when it refers to an entry lost
// with the decoder state.
func (d *hpackDecoder) lookup(idx uint64) (name, value []byte, known bool, err error) {
	if idx == 0 {
		return nil, nil, false, errIndex
	}
	if idx <= uint64(len(staticTable)) {
		f := &staticTable[idx-1]
		return f.name, f.value, true, nil
	}
	i := idx - uint64(len(staticTable)) - 1
	if i < uint64(d.tab.len()) {
		n, v := d.tab.get(int(i))
		return n, v, true, nil
	}
	if d.lost {
		return nil, nil, false, nil
	}
	return nil, nil, false, fmt.Errorf("%w: %d beyond dynamic table of %d entries", errIndex, idx, d.tab.len())
}

// readString reads a string literal, Huffman-decoding into buf if needed.
func (d *hpackDecoder) readString(b []byte, buf *bytes.Buffer) ([]byte, []byte, error) {
	if len(b) == 0 {
		return nil, nil, errTruncated
	}
	huff := b[0]&0x80 != 0
	n, rest, err := readInt(b, 7)
	if err != nil {
		return nil, nil, err
	}
	if uint64(len(rest)) < n {
		return nil, nil, errTruncated
	}
	s, rest := rest[:n], rest[n:]
	if !huff {
		return s, rest, nil
	}
	buf.Reset()
	if _, err := hpack.HuffmanDecode(buf, s); err != nil {
		return nil, nil, fmt.Errorf("hpack: huffman: %w", err)
	}
	return buf.Bytes(), rest, nil
}

// readInt reads an HPACK integer with an n-bit prefix (RFC 7541 §5.1),
// bounded to 32 bits.
func readInt(b []byte, n uint8) (uint64, []byte, error) {
	if len(b) == 0 {
		return 0, nil, errTruncated
	}
	mask := uint64(1)<<n - 1
	v := uint64(b[0]) & mask
	b = b[1:]
	if v < mask {
		return v, b, nil
	}
	var m uint
	for len(b) > 0 {
		c := b[0]
		b = b[1:]
		v += uint64(c&0x7f) << m
		if c&0x80 == 0 {
			if v > 1<<32 {
				return 0, nil, errInteger
			}
			return v, b, nil
		}
		m += 7
		if m > 28 {
			return 0, nil, errInteger
		}
	}
	return 0, nil, errTruncated
}

// dynTable is the HPACK dynamic table. Entries are stored back to back in one
// byte slice (oldest first) so inserting costs no allocation once the slice
// has grown to about twice the table size; eviction advances head and the
// live part is moved to the front when the dead part dominates.
type dynTable struct {
	data []byte
	ents []entry // ents[head:] are live, oldest first
	head int
	size uint32 // RFC 7541 size: sum of len(name)+len(value)+32
	max  uint32
}

type entry struct{ off, nlen, vlen uint32 }

func (t *dynTable) len() int { return len(t.ents) - t.head }

// get returns entry i counting from the newest (0).
func (t *dynTable) get(i int) (name, value []byte) {
	e := t.ents[len(t.ents)-1-i]
	return t.data[e.off : e.off+e.nlen], t.data[e.off+e.nlen : e.off+e.nlen+e.vlen]
}

func (t *dynTable) clear() {
	t.data, t.ents, t.head, t.size = t.data[:0], t.ents[:0], 0, 0
}

func (t *dynTable) setMax(m uint32) {
	t.max = m
	t.evict(0)
}

func (t *dynTable) evict(need uint32) {
	for t.size+need > t.max && t.head < len(t.ents) {
		e := t.ents[t.head]
		t.size -= e.nlen + e.vlen + 32
		t.head++
	}
	if t.head == len(t.ents) {
		t.clear()
	}
}

func (t *dynTable) add(name, value []byte) {
	sz := uint32(len(name)+len(value)) + 32
	if sz > t.max {
		t.clear() // RFC 7541 §4.4: an entry larger than the table empties it
		return
	}
	t.evict(sz)
	if t.head > 0 && (t.head > len(t.ents)/2 || len(t.data)+int(sz) > cap(t.data)) {
		t.compact()
	}
	off := uint32(len(t.data))
	t.data = append(t.data, name...)
	t.data = append(t.data, value...)
	t.ents = append(t.ents, entry{off: off, nlen: uint32(len(name)), vlen: uint32(len(value))})
	t.size += sz
}

func (t *dynTable) compact() {
	live := t.ents[t.head:]
	base := live[0].off
	n := copy(t.data, t.data[base:])
	t.data = t.data[:n]
	for i := range live {
		live[i].off -= base
	}
	m := copy(t.ents, live)
	t.ents = t.ents[:m]
	t.head = 0
}

type staticField struct{ name, value []byte }

// staticTable is RFC 7541 Appendix A.
var staticTable = func() []staticField {
	src := [...][2]string{
		{":authority", ""}, {":method", "GET"}, {":method", "POST"}, {":path", "/"},
		{":path", "/index.html"}, {":scheme", "http"}, {":scheme", "https"}, {":status", "200"},
		{":status", "204"}, {":status", "206"}, {":status", "304"}, {":status", "400"},
		{":status", "404"}, {":status", "500"}, {"accept-charset", ""}, {"accept-encoding", "gzip, deflate"},
		{"accept-language", ""}, {"accept-ranges", ""}, {"accept", ""}, {"access-control-allow-origin", ""},
		{"age", ""}, {"allow", ""}, {"authorization", ""}, {"cache-control", ""},
		{"content-disposition", ""}, {"content-encoding", ""}, {"content-language", ""}, {"content-length", ""},
		{"content-location", ""}, {"content-range", ""}, {"content-type", ""}, {"cookie", ""},
		{"date", ""}, {"etag", ""}, {"expect", ""}, {"expires", ""},
		{"from", ""}, {"host", ""}, {"if-match", ""}, {"if-modified-since", ""},
		{"if-none-match", ""}, {"if-range", ""}, {"if-unmodified-since", ""}, {"last-modified", ""},
		{"link", ""}, {"location", ""}, {"max-forwards", ""}, {"proxy-authenticate", ""},
		{"proxy-authorization", ""}, {"range", ""}, {"referer", ""}, {"refresh", ""},
		{"retry-after", ""}, {"server", ""}, {"set-cookie", ""}, {"strict-transport-security", ""},
		{"transfer-encoding", ""}, {"user-agent", ""}, {"vary", ""}, {"via", ""},
		{"www-authenticate", ""},
	}
	t := make([]staticField, len(src))
	for i, f := range src {
		t[i] = staticField{[]byte(f[0]), []byte(f[1])}
	}
	return t
}()
