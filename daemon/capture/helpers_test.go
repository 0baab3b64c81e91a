package capture

import (
	"net/netip"
	"testing"
	"time"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/api/wire"
)

var testBoot = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func newTestTable(t testing.TB, cfg Config) (*Table, *Recorder) {
	t.Helper()
	rec := NewRecorder()
	if cfg.StreamFactory == nil {
		cfg.StreamFactory = rec.Factory
	}
	if cfg.BootTime.IsZero() {
		cfg.BootTime = testBoot
	}
	if cfg.Clock == nil {
		cfg.Clock = func() event.Timestamp { return 0 }
	}
	tab, err := NewTable(cfg)
	if err != nil {
		t.Fatalf("NewTable: %v", err)
	}
	return tab, rec
}

func testProc(tgid uint32) event.Process {
	return event.Process{TGID: tgid, TID: tgid, Comm: "curl", CgroupID: 77, PodID: 3, NetnsIno: 4026532000}
}

func openEv(id event.ConnID, tgid uint32, fd int32, role event.Role, ts event.Timestamp) event.ConnOpen {
	sys := event.SysConnect
	if role == event.RoleServer {
		sys = event.SysAccept4
	}
	return event.ConnOpen{
		Conn: id, Proc: testProc(tgid), FD: fd, Role: role,
		Local:   netip.MustParseAddrPort("10.0.0.1:40000"),
		Remote:  netip.MustParseAddrPort("10.0.0.2:80"),
		Syscall: sys, Start: ts, End: ts + 1000, Success: true,
	}
}

func closeEv(id event.ConnID, tgid uint32, fd int32, ts event.Timestamp) event.ConnClose {
	return event.ConnClose{Conn: id, Proc: testProc(tgid), FD: fd, Start: ts, End: ts + 10, Success: true}
}

// streamGen produces the Data events a well-behaved kernel side emits for
// one connection: consecutive Seq and offsets per direction, syscalls split
// into chunks of at most chunk bytes.
type streamGen struct {
	id    event.ConnID
	tgid  uint32
	fd    int32
	chunk int
	seq   [2]uint64
	off   [2]uint64
	ts    event.Timestamp
}

func newGen(id event.ConnID, tgid uint32, fd int32, chunk int) *streamGen {
	return &streamGen{id: id, tgid: tgid, fd: fd, chunk: chunk, ts: 1_000_000}
}

// syscall returns the events of one syscall moving b in direction dir, the
// last one marked so.
func (g *streamGen) syscall(dir event.Direction, b []byte) []event.Data {
	g.ts += 1000
	var out []event.Data
	for len(b) > 0 || len(out) == 0 {
		n := min(len(b), g.chunk)
		sys := event.SysWrite
		if dir == event.Ingress {
			sys = event.SysRead
		}
		out = append(out, event.Data{
			Conn: g.id, Proc: testProc(g.tgid), FD: g.fd, Direction: dir, Syscall: sys,
			Seq: g.seq[dir], StreamOffset: g.off[dir], Size: uint32(n), Payload: b[:n],
			Start: g.ts, End: g.ts + 500,
		})
		g.seq[dir]++
		g.off[dir] += uint64(n)
		b = b[n:]
		if n == 0 {
			break
		}
	}
	out[len(out)-1].Last = true
	return out
}

func feed(tab *Table, evs ...event.Data) {
	for _, e := range evs {
		// The reader reuses its buffer: hand the table a copy and scribble
		// over it afterwards, so a table that keeps the slice is caught.
		p := append([]byte(nil), e.Payload...)
		e.Payload = p
		tab.Data(e)
		for i := range p {
			p[i] = 0xEE
		}
	}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func connInfo(t *testing.T, tab *Table, id event.ConnID) wire.ConnInfo {
	t.Helper()
	for _, ci := range tab.Connections(Filter{}) {
		if ci.ID == uint64(id) {
			return ci
		}
	}
	t.Fatalf("connection %d not in snapshot", id)
	return wire.ConnInfo{}
}

// checkStreamAccounting asserts that a recorded direction adds up: Data
// lengths plus Skip counts equal the stream offset the table reports.
func checkStreamAccounting(t *testing.T, s *RecordingStream, dir event.Direction, want uint64) {
	t.Helper()
	var total uint64
	for _, op := range s.Ops() {
		if op.Dir == dir && (op.Kind == "data" || op.Kind == "skip") {
			total += op.N
		}
	}
	if total != want {
		t.Errorf("%s: data+skip = %d bytes, want %d", dir, total, want)
	}
}
