package capture

import (
	"fmt"
	"strings"
	"testing"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/api/wire"
)

// logObserver records every Observer call as a line, with whether the
// connection's Stream was closed by then.
type logObserver struct {
	rec   *Recorder
	lines []string
}

func (o *logObserver) ConnOpened(c *Conn, e event.ConnOpen) {
	o.lines = append(o.lines, fmt.Sprintf("open %d role=%s conn.role=%s", e.Conn, e.Role, c.Role))
}

func (o *logObserver) ConnFinished(c *Conn, info wire.ConnInfo, ev *event.ConnClose) {
	closed := o.rec.Stream(c.ID).Closed()
	o.lines = append(o.lines, fmt.Sprintf("finish %d reason=%s event=%t streamClosed=%t sent=%d", info.ID, info.CloseReason, ev != nil, closed, info.BytesSent))
}

func (o *logObserver) Retransmitted(c *Conn, e event.Retransmit) {
	o.lines = append(o.lines, fmt.Sprintf("retransmit %d state=%d", e.Conn, e.State))
}

func (o *logObserver) Swept(now event.Timestamp) {
	o.lines = append(o.lines, fmt.Sprintf("swept %d", now))
}

// TestObserverIsToldOfEverythingButData: the Observer sees opens, closes
// (after the Stream's Close) and sweeps, and none of the data, which
// reaches the pipeline by the Stream alone.
func TestObserverIsToldOfEverythingButData(t *testing.T) {
	obs := &logObserver{}
	tab, rec := newTestTable(t, Config{Observer: obs})
	obs.rec = rec
	tab.ConnOpen(openEv(1, 100, 5, event.RoleClient, 1000))
	g := newGen(1, 100, 5, 4)
	evs := g.syscall(event.Egress, []byte("hello!"))
	feed(tab, evs[1], evs[0])
	tab.ConnClose(closeEv(1, 100, 5, 9_000_000))
	// A late event for the closed connection is dropped without a call.
	feed(tab, g.syscall(event.Egress, []byte("x"))...)
	// An idle connection finishes without a close event.
	tab.ConnOpen(openEv(2, 100, 6, event.RoleServer, 1000))
	tab.Sweep(5_000_000) // before any connection can be idle: still told
	tab.Sweep(event.Timestamp(DefaultIdleTimeout) + 1_000_000)

	want := []string{
		"open 1 role=client conn.role=client",
		"finish 1 reason=closed event=true streamClosed=true sent=6",
		"open 2 role=server conn.role=server",
		"swept 5000000",
		"finish 2 reason=idle event=false streamClosed=true sent=0",
		fmt.Sprintf("swept %d", event.Timestamp(DefaultIdleTimeout)+1_000_000),
	}
	if got := strings.Join(obs.lines, "\n"); got != strings.Join(want, "\n") {
		t.Fatalf("observer calls:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}
