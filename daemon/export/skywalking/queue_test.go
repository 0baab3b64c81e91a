package skywalking

import (
	"bytes"
	"strings"
	"testing"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/protocol/record"
)

func seqEntry(seq uint64, size int64) item {
	return item{conn: &flow.Connection{ID: event.ConnID(seq)}, size: size}
}

func seqs(es []item) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = uint64(e.conn.ID)
	}
	return out
}

func TestQueueEvictsOldestWhenFull(t *testing.T) {
	q := newQueue(4, 1<<20)
	evicted := 0
	for i := uint64(1); i <= 10; i++ {
		r := q.push(seqEntry(i, 10), 100)
		if !r.queued {
			t.Fatalf("push %d not queued", i)
		}
		evicted += r.evicted
	}
	if evicted != 6 {
		t.Errorf("evicted %d, want 6", evicted)
	}
	got := seqs(q.take(make([]item, 0, 10)))
	if want := []uint64{7, 8, 9, 10}; !equal(got, want) {
		t.Errorf("kept %v, want the newest %v", got, want)
	}
}

func TestQueueNeverEvictsInFlight(t *testing.T) {
	q := newQueue(4, 1<<20)
	for i := uint64(1); i <= 4; i++ {
		q.push(seqEntry(i, 10), 100)
	}
	inflight := q.take(make([]item, 0, 3)) // 1,2,3 in flight; 4 queued
	r := q.push(seqEntry(5, 10), 100)
	if !r.queued || r.evicted != 1 {
		t.Fatalf("push 5: %+v, want queued after evicting the queued 4", r)
	}
	r = q.push(seqEntry(6, 10), 100)
	if !r.queued || r.evicted != 1 {
		t.Fatalf("push 6: %+v, want queued after evicting 5", r)
	}
	// Only in-flight entries and 6 are left; 6 goes, then nothing can.
	if n, _ := q.depth(); n != 4 {
		t.Errorf("depth %d, want 4", n)
	}
	q.release(inflight)
	if n, b := q.depth(); n != 1 || b != 10 {
		t.Errorf("after release depth %d bytes %d, want 1 and 10", n, b)
	}
	if got := seqs(q.take(make([]item, 0, 10))); !equal(got, []uint64{6}) {
		t.Errorf("left %v, want [6]", got)
	}

	q = newQueue(2, 1<<20)
	q.push(seqEntry(1, 10), 100)
	q.push(seqEntry(2, 10), 100)
	all := q.take(make([]item, 0, 2))
	if r := q.push(seqEntry(3, 10), 100); r.queued || r.evicted != 0 {
		t.Errorf("with everything in flight the new entry must be refused: %+v", r)
	}
	q.release(all)
}

func TestQueueByteBound(t *testing.T) {
	q := newQueue(1000, 100)
	for i := uint64(1); i <= 5; i++ {
		q.push(seqEntry(i, 30), 1000)
	}
	n, b := q.depth()
	if n != 3 || b != 90 {
		t.Errorf("depth %d bytes %d, want 3 entries of 30 bytes", n, b)
	}
	if r := q.push(seqEntry(9, 101), 1000); !r.tooLarge || r.queued {
		t.Errorf("entry over the whole bound: %+v", r)
	}
	if got := seqs(q.take(make([]item, 0, 10))); !equal(got, []uint64{3, 4, 5}) {
		t.Errorf("kept %v", got)
	}
}

func TestQueueGrowsPreservingOrderAndReportsHighWater(t *testing.T) {
	q := newQueue(5000, 1<<30)
	hi := false
	for i := uint64(1); i <= 3000; i++ {
		if q.push(seqEntry(i, 1), 2500).reachedHi {
			hi = true
		}
		if i%700 == 0 { // move the head so growth copies a wrapped ring
			b := q.take(make([]item, 0, 100))
			q.release(b)
		}
	}
	if !hi {
		t.Errorf("high-water mark never reported")
	}
	got := seqs(q.take(make([]item, 0, 5000)))
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("order broken at %d: %d after %d", i, got[i], got[i-1])
		}
	}
	if got[len(got)-1] != 3000 {
		t.Errorf("last %d", got[len(got)-1])
	}
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Chunks are reused once every item in them was released, and never while
// an item in them is queued: the bytes of queued items stay what they were
// encoded as while earlier items are released and new ones encoded.
func TestArenaReusesChunksOnlyWhenAllTheirItemsAreReleased(t *testing.T) {
	var a arena
	c := conn(1, event.RoleServer, podCatalog, 8080, remoteFrontend, podFrontend)
	encode := func(seq uint64) item {
		op := seqOp(c, flow.OpWrite, seq)
		op.Send = allSend()
		return a.add(entry{op: op})
	}
	want := func(seq uint64) []byte {
		op := seqOp(c, flow.OpWrite, seq)
		op.Send = allSend()
		return appendKernelLog(nil, fMsgKernelLogs, op)
	}
	// Enough items for several chunks; release all but every 97th.
	var kept []item
	var keptSeq []uint64
	first := map[*chunk]bool{}
	for seq := uint64(0); seq < 3000; seq++ {
		it := encode(seq)
		first[it.chunk] = true
		if seq%97 == 0 {
			kept, keptSeq = append(kept, it), append(keptSeq, seq)
			continue
		}
		a.releaseOne(&it)
	}
	if len(first) < 3 {
		t.Fatalf("%d chunks for 3000 items; the test needs several", len(first))
	}
	// New items may only land in chunks that hold no kept item.
	held := map[*chunk]bool{}
	for _, it := range kept {
		held[it.chunk] = true
	}
	reused := false
	for seq := uint64(3000); seq < 6000; seq++ {
		it := encode(seq)
		if first[it.chunk] {
			reused = true
		}
		a.releaseOne(&it)
	}
	for i, it := range kept {
		if !bytes.Equal(it.b, want(keptSeq[i])) {
			t.Fatalf("item %d changed while queued", keptSeq[i])
		}
	}
	if !reused {
		t.Errorf("no chunk was reused after its items were released")
	}
	for c := range held {
		if c.refs.Load() < 1 {
			t.Errorf("a chunk holding a kept item has %d references", c.refs.Load())
		}
	}
}

// Entries are encoded straight into the arena's chunks: a long exchange
// (past the room a chunk keeps, or past a chunk) lands whole in a chunk
// with room for it, and neither it nor the entries before and after it
// are overwritten.
func TestArenaKeepsEveryEntryIntactAroundLongOnes(t *testing.T) {
	var a arena
	c := conn(1, event.RoleServer, podCatalog, 8080, remoteFrontend, podFrontend)
	var entries []entry
	for i, n := range []int{10, 3 << 10, 5 << 10, 10, 70 << 10, 10, 60 << 10, 10} {
		for range 40 { // enough to fill chunks and cross their ends
			path := "/" + strings.Repeat(string(rune('a'+i)), n)
			entries = append(entries, entry{ex: exchange(c, record.HTTP11, "GET", path, 200,
				seqOp(c, flow.OpRead, uint64(len(entries))))})
		}
	}
	// A write whose drop list alone is longer than the room a chunk
	// keeps: add cannot foresee it and moves it after encoding.
	drops := make([]event.Drop, 300)
	for i := range drops {
		drops[i] = event.Drop{Reason: "NETFILTER_DROP_" + strings.Repeat("z", 20), Count: uint32(i + 1)}
	}
	for range 40 {
		op := seqOp(c, flow.OpWrite, uint64(len(entries)))
		op.Send = &event.SendMetrics{Measured: event.MetricDrops, Drops: drops}
		entries = append(entries, entry{op: op}, entry{ex: exchange(c, record.HTTP11, "GET", "/short", 200)})
	}
	items := make([]item, len(entries))
	for i, e := range entries {
		items[i] = a.add(e)
	}
	for i, e := range entries {
		var want item
		want.b = appendEntry(nil, e, &want)
		if !bytes.Equal(items[i].b, want.b) {
			t.Fatalf("entry %d: %d encoded bytes differ from its encoding alone (%d)", i, len(items[i].b), len(want.b))
		}
		if items[i].logs != want.logs || items[i].exchange != want.exchange {
			t.Errorf("entry %d: logs %d exchange %v, want %d %v", i, items[i].logs, items[i].exchange, want.logs, want.exchange)
		}
	}
	a.release(items)
	if len(a.free) == 0 {
		t.Error("no chunk kept for reuse after every entry was released")
	}
}
