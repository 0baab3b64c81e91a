package enroll

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weirnet/weir/daemon/registry"
	"github.com/weirnet/weir/enrollapi/enrollpb"
)

// clockServer is a Server over a fresh registry whose clock the test sets.
type clockServer struct {
	*Server
	reg *registry.Registry
	now time.Time
}

func newClockServer(t *testing.T, maxPods int) *clockServer {
	t.Helper()
	reg, err := registry.Open(registry.Options{Dir: filepath.Join(t.TempDir(), "state"), MaxPods: maxPods})
	if err != nil {
		t.Fatal(err)
	}
	c := &clockServer{reg: reg, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	c.Server = NewServer(reg, slog.New(slog.DiscardHandler), ServerOptions{Host: openHost{}, Now: func() time.Time { return c.now }})
	return c
}

func (c *clockServer) tick() time.Time { c.now = c.now.Add(time.Second); return c.now }

func spooledEnroll(id string, at time.Time) *enrollpb.SpoolRecord {
	return &enrollpb.SpoolRecord{Time: timestamppb.New(at),
		Op: &enrollpb.SpoolRecord_Enroll{Enroll: &enrollpb.EnrollRequest{Pod: testPod(id)}}}
}

func spooledUnenroll(id string, at time.Time) *enrollpb.SpoolRecord {
	return &enrollpb.SpoolRecord{Time: timestamppb.New(at),
		Op: &enrollpb.SpoolRecord_Unenroll{Unenroll: &enrollpb.UnenrollRequest{Network: "kindnet", Attachment: att(id)}}}
}

func (c *clockServer) enrolled(id string) bool {
	_, ok := c.reg.Get(registry.KeyOf(registry.PodFromProto(testPod(id))))
	return ok
}

// The reproduction: ADD spools while the daemon is stopped, the
// daemon resumes, a live DEL finds nothing; the replayed ADD must not
// resurrect the pod. Five pods, as in the report.
func TestSpooledAddOlderThanLiveDelIsSkipped(t *testing.T) {
	c := newClockServer(t, 0)
	var recs []*enrollpb.SpoolRecord
	for i := range 5 {
		recs = append(recs, spooledEnroll(fmt.Sprint("px", i), c.tick()))
	}
	for i := range 5 {
		c.tick()
		if _, err := c.Unenroll(context.Background(), &enrollpb.UnenrollRequest{Network: "kindnet", Attachment: att(fmt.Sprint("px", i))}); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range recs {
		if err := c.Apply(context.Background(), r); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
	for i := range 5 {
		if c.enrolled(fmt.Sprint("px", i)) {
			t.Errorf("px%d resurrected by a spooled ADD older than its live DEL", i)
		}
	}
	if got := testutil.ToFloat64(c.Metrics().Superseded); got != 5 {
		t.Errorf("weir_enroll_spool_superseded_total = %v, want 5", got)
	}
}

func TestSpooledDelOlderThanLiveAddIsSkipped(t *testing.T) {
	c := newClockServer(t, 0)
	del := spooledUnenroll("p", c.tick())
	c.tick()
	if _, err := c.Enroll(context.Background(), &enrollpb.EnrollRequest{Pod: testPod("p")}); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(context.Background(), del); err != nil {
		t.Fatal(err)
	}
	if !c.enrolled("p") {
		t.Error("a spooled DEL older than the live ADD removed the pod")
	}
}

func TestSpooledCallsNewerThanLiveCallsApplyInOrder(t *testing.T) {
	c := newClockServer(t, 0)
	if _, err := c.Enroll(context.Background(), &enrollpb.EnrollRequest{Pod: testPod("p")}); err != nil {
		t.Fatal(err)
	}
	// Records made after the live ADD, in order: DEL then ADD then DEL.
	for _, r := range []*enrollpb.SpoolRecord{spooledUnenroll("p", c.tick()), spooledEnroll("p", c.tick())} {
		if err := c.Apply(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if !c.enrolled("p") {
		t.Fatal("DEL then ADD, both newer than the live ADD: the pod must be enrolled")
	}
	if err := c.Apply(context.Background(), spooledUnenroll("p", c.tick())); err != nil {
		t.Fatal(err)
	}
	if c.enrolled("p") {
		t.Fatal("a final newer spooled DEL must remove the pod")
	}
	if got := testutil.ToFloat64(c.Metrics().Superseded); got != 0 {
		t.Errorf("superseded = %v, want 0: no record was older than a live call", got)
	}
}

func TestPruneOrderForgetsOnlyCallsNoRecordCanPredate(t *testing.T) {
	c := newClockServer(t, 0)
	if _, err := c.Unenroll(context.Background(), &enrollpb.UnenrollRequest{Network: "kindnet", Attachment: att("p")}); err != nil {
		t.Fatal(err)
	}
	c.PruneOrder(c.now.Add(spoolSkew / 2))
	if c.order.len() != 1 {
		t.Fatal("pruned a live call a record still in flight may predate")
	}
	c.PruneOrder(c.now.Add(2 * spoolSkew))
	if c.order.len() != 0 {
		t.Fatal("kept a live call no record can predate any more")
	}
}

func TestOrderIsBoundedAndEvictsTheOldest(t *testing.T) {
	o := newOrder(2)
	t0 := time.Unix(100, 0)
	o.note(attachmentOf("a", "eth0"), t0, true)
	o.note(attachmentOf("b", "eth0"), t0.Add(time.Second), true)
	o.note(attachmentOf("c", "eth0"), t0.Add(2*time.Second), true)
	if _, ok := o.get(attachmentOf("a", "eth0")); ok || o.len() != 2 {
		t.Fatalf("order holds %d entries (a kept: %v), want 2 without the oldest", o.len(), ok)
	}
}

// A call whose caller already gave up is not applied: the plugin spooled it.
func TestEnrollAbandonedByItsCallerIsNotApplied(t *testing.T) {
	c := newClockServer(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Enroll(ctx, &enrollpb.EnrollRequest{Pod: testPod("late")}); err == nil {
		t.Fatal("Enroll with a cancelled context succeeded")
	}
	if c.enrolled("late") {
		t.Error("abandoned Enroll was applied")
	}
	if got := testutil.ToFloat64(c.Metrics().Refused.WithLabelValues(ReasonAbandoned)); got != 1 {
		t.Errorf("refused{abandoned} = %v, want 1", got)
	}
}
