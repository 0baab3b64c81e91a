package http2

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// TestHPACKMatchesXNetDecoder decodes random header blocks produced by
// x/net's encoder (dynamic table insertions, evictions, size updates,
// Huffman and raw literals, never-indexed fields) with both decoders and
// requires identical fields.
func TestHPACKMatchesXNetDecoder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var blk bytes.Buffer
	enc := hpack.NewEncoder(&blk)
	ref := hpack.NewDecoder(4096, nil)
	ours := newHPACKDecoder(64 << 10)
	names := []string{":path", ":authority", "x-a", "x-bb", "cookie", "content-type", "user-agent", "grpc-status"}
	for round := 0; round < 2000; round++ {
		blk.Reset()
		if rng.IntN(20) == 0 {
			sz := uint32(rng.IntN(4097))
			enc.SetMaxDynamicTableSize(sz)
		}
		var want []string
		for i := rng.IntN(8); i >= 0; i-- {
			f := hpack.HeaderField{
				Name:      names[rng.IntN(len(names))],
				Value:     fmt.Sprintf("v%d-%s", rng.IntN(50), bytes.Repeat([]byte{'z'}, rng.IntN(200))),
				Sensitive: rng.IntN(10) == 0,
			}
			if err := enc.WriteField(f); err != nil {
				t.Fatal(err)
			}
		}
		refFields, err := ref.DecodeFull(blk.Bytes())
		if err != nil {
			t.Fatalf("round %d: x/net: %v", round, err)
		}
		for _, f := range refFields {
			want = append(want, f.Name+"="+f.Value)
		}
		var got []string
		err = ours.decode(blk.Bytes(), func(n, v []byte, unknown bool) {
			if n == nil || unknown {
				t.Fatalf("round %d: unexpected unknown field", round)
			}
			got = append(got, string(n)+"="+string(v))
		})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("round %d:\n got %v\nwant %v", round, got, want)
		}
	}
}

// TestHPACKLostStateKeepsNewerEntries: after a gap, entries inserted since
// are resolved exactly and older ones are reported unknown.
func TestHPACKLostStateKeepsNewerEntries(t *testing.T) {
	d := newHPACKDecoder(4096)
	d.markLost()
	var blk bytes.Buffer
	enc := hpack.NewEncoder(&blk)
	_ = enc.WriteField(hpack.HeaderField{Name: "x-new", Value: "1"}) // inserted at 62
	var got []string
	emit := func(n, v []byte, unknown bool) {
		if n == nil || unknown {
			got = append(got, "?")
			return
		}
		got = append(got, string(n)+"="+string(v))
	}
	if err := d.decode(blk.Bytes(), emit); err != nil {
		t.Fatal(err)
	}
	// 0xbe = index 62 (the entry just inserted), 0xbf = 63 (lost).
	if err := d.decode([]byte{0xbe, 0xbf, 0x82}, emit); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[x-new=1 x-new=1 ? :method=GET]" {
		t.Fatalf("got %v", got)
	}
	// A size update to 0 empties the table: state is known again.
	if err := d.decode([]byte{0x20}, emit); err != nil || d.lost {
		t.Fatalf("err %v lost %v", err, d.lost)
	}
	if err := d.decode([]byte{0xbe}, emit); err == nil {
		t.Fatal("index into an empty, known table must be an error")
	}
}

func TestHPACKRejectsOverlongIntegers(t *testing.T) {
	d := newHPACKDecoder(4096)
	err := d.decode([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, func([]byte, []byte, bool) {})
	if err == nil {
		t.Fatal("want an error for an integer beyond 32 bits")
	}
}

// TestHPACKLossForgetsOlderKnownEntries: a lost block may have inserted
// entries, so those the decoder held are no longer the newest and their
// indexes must not resolve (they would name the wrong entry).
func TestHPACKLossForgetsOlderKnownEntries(t *testing.T) {
	d := newHPACKDecoder(4096)
	var blk bytes.Buffer
	enc := hpack.NewEncoder(&blk)
	_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "429"})
	emit := func([]byte, []byte, bool) {}
	if err := d.decode(blk.Bytes(), emit); err != nil {
		t.Fatal(err)
	}
	d.markLost() // e.g. a block inserting ":status: 200" went uncaptured
	var got []string
	err := d.decode([]byte{0xbe}, func(n, v []byte, unknown bool) {
		if n == nil || unknown {
			got = append(got, "?")
			return
		}
		got = append(got, string(n)+"="+string(v))
	})
	if err != nil || fmt.Sprint(got) != "[?]" {
		t.Fatalf("index 62 after a loss: %v %v, want unknown", got, err)
	}
}
