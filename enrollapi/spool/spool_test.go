package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirnet/weir/enrollapi/enrollpb"
)

func enrollRec(id string) *enrollpb.SpoolRecord {
	return &enrollpb.SpoolRecord{Op: &enrollpb.SpoolRecord_Enroll{Enroll: &enrollpb.EnrollRequest{
		Pod: &enrollpb.Pod{Network: "net", ContainerId: id, Ifname: "eth0", Netns: "/var/run/netns/" + id, NetnsInode: 42},
	}}}
}

func unenrollRec(id string) *enrollpb.SpoolRecord {
	return &enrollpb.SpoolRecord{Op: &enrollpb.SpoolRecord_Unenroll{Unenroll: &enrollpb.UnenrollRequest{
		Network: "net", Attachment: &enrollpb.Attachment{ContainerId: id, Ifname: "eth0"},
	}}}
}

// containerID returns the container id a record refers to, whichever op.
func containerID(rec *enrollpb.SpoolRecord) string {
	if e := rec.GetEnroll(); e != nil {
		return "enroll:" + e.GetPod().GetContainerId()
	}
	return "unenroll:" + rec.GetUnenroll().GetAttachment().GetContainerId()
}

// steppingClock returns a clock that advances by step on every call.
func steppingClock(start time.Time, step time.Duration) func() time.Time {
	var mu sync.Mutex
	t := start
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(step)
		return t
	}
}

func collect(t *testing.T, s *Spool) ([]string, DrainStats) {
	t.Helper()
	var got []string
	st, err := s.Drain(context.Background(), func(r *enrollpb.SpoolRecord) error {
		got = append(got, containerID(r))
		return nil
	})
	if err != nil {
		t.Fatalf("Drain: %v", err)
	}
	return got, st
}

func TestWriteCreatesPrivateDirAndReadableRecord(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "spool")
	s := New(dir, 10)
	path, err := s.Write(enrollRec("c1"))
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("spool dir mode = %v, want 0700", fi.Mode().Perm())
	}
	if filepath.Dir(path) != dir || !strings.HasSuffix(path, recordSuffix) {
		t.Errorf("Write returned %q, want a %s file in %s", path, recordSuffix, dir)
	}
	rec, err := readRecord(path)
	if err != nil {
		t.Fatalf("readRecord: %v", err)
	}
	if rec.GetTime() == nil {
		t.Error("Write did not stamp the record's time")
	}
	if got := rec.GetEnroll().GetPod().GetContainerId(); got != "c1" {
		t.Errorf("record container id = %q, want c1", got)
	}
}

func TestWriteRejectsRecordWithoutOperation(t *testing.T) {
	s := New(t.TempDir(), 10)
	if _, err := s.Write(&enrollpb.SpoolRecord{}); err == nil || !strings.Contains(err.Error(), "no operation") {
		t.Fatalf("Write(empty record) error = %v, want one naming the missing operation", err)
	}
}

func TestWriteReturnsErrFullAtBound(t *testing.T) {
	s := New(t.TempDir(), 3)
	for i := range 3 {
		if _, err := s.Write(enrollRec(fmt.Sprint(i))); err != nil {
			t.Fatalf("Write %d: %v", i, err)
		}
	}
	if _, err := s.Write(enrollRec("over")); !errors.Is(err, ErrFull) {
		t.Fatalf("Write over bound: error = %v, want ErrFull", err)
	}
	if n, _ := s.Pending(); n != 3 {
		t.Fatalf("Pending = %d after refused write, want 3", n)
	}
	// Draining frees room again.
	collect(t, s)
	if _, err := s.Write(enrollRec("after-drain")); err != nil {
		t.Fatalf("Write after drain: %v", err)
	}
}

func TestBoundHoldsUnderConcurrentWriters(t *testing.T) {
	const bound, writers = 5, 20
	s := New(t.TempDir(), bound)
	var wg sync.WaitGroup
	var mu sync.Mutex
	full := 0
	for i := range writers {
		wg.Go(func() {
			_, err := s.Write(enrollRec(fmt.Sprint(i)))
			if errors.Is(err, ErrFull) {
				mu.Lock()
				full++
				mu.Unlock()
			} else if err != nil {
				t.Errorf("Write: %v", err)
			}
		})
	}
	wg.Wait()
	if n, _ := s.Pending(); n != bound {
		t.Errorf("Pending = %d, want exactly the bound %d", n, bound)
	}
	if full != writers-bound {
		t.Errorf("ErrFull returned %d times, want %d", full, writers-bound)
	}
}

func TestNewUsesDefaultBoundForNonPositive(t *testing.T) {
	if got := New(t.TempDir(), 0).MaxRecords(); got != DefaultMaxRecords {
		t.Fatalf("MaxRecords = %d, want %d", got, DefaultMaxRecords)
	}
}

func TestDrainReplaysInWriteOrder(t *testing.T) {
	s := New(t.TempDir(), 100)
	// Start just below a power of ten so the nanosecond field gains a digit
	// mid-sequence: unpadded names would then sort out of write order.
	s.now = steppingClock(time.Unix(0, 999_999_990), 3)
	var want []string
	for i := range 12 {
		var rec *enrollpb.SpoolRecord
		if i%3 == 2 {
			rec = unenrollRec(fmt.Sprint(i))
		} else {
			rec = enrollRec(fmt.Sprint(i))
		}
		if _, err := s.Write(rec); err != nil {
			t.Fatal(err)
		}
		want = append(want, containerID(rec))
	}
	got, st := collect(t, s)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("drain order:\n got %v\nwant %v", got, want)
	}
	if st.Applied != 12 {
		t.Errorf("Applied = %d, want 12", st.Applied)
	}
}

func TestDrainIsIdempotent(t *testing.T) {
	s := New(t.TempDir(), 10)
	for i := range 3 {
		if _, err := s.Write(enrollRec(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := collect(t, s); len(got) != 3 {
		t.Fatalf("first drain applied %d records, want 3", len(got))
	}
	got, st := collect(t, s)
	if len(got) != 0 || st != (DrainStats{}) {
		t.Fatalf("second drain applied %v (stats %+v), want nothing", got, st)
	}
	if n, _ := s.Pending(); n != 0 {
		t.Fatalf("Pending = %d after drain, want 0", n)
	}
}

func TestDrainOfMissingDirIsEmpty(t *testing.T) {
	s := New(filepath.Join(t.TempDir(), "never-created"), 10)
	got, st := collect(t, s)
	if len(got) != 0 || st != (DrainStats{}) {
		t.Fatalf("drain of missing dir = %v %+v, want nothing", got, st)
	}
}

func TestDrainMovesCorruptRecordAsideAndContinues(t *testing.T) {
	dir := t.TempDir()
	s := New(dir, 10)
	s.now = steppingClock(time.Unix(1000, 0), time.Second)
	if _, err := s.Write(enrollRec("first")); err != nil {
		t.Fatal(err)
	}
	bad, err := s.Write(enrollRec("to-corrupt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(`{"enroll": {"pod": `), 0o600); err != nil {
		t.Fatal(err)
	}
	// A syntactically valid record without an operation is corrupt too.
	noOp, err := s.Write(enrollRec("to-empty"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(noOp, []byte(`{"time": "2024-01-01T00:00:00Z"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(enrollRec("last")); err != nil {
		t.Fatal(err)
	}

	got, st := collect(t, s)
	if strings.Join(got, ",") != "enroll:first,enroll:last" {
		t.Fatalf("applied %v, want first and last only", got)
	}
	if st.Corrupt != 2 || st.Applied != 2 {
		t.Fatalf("stats = %+v, want Corrupt=2 Applied=2", st)
	}
	for _, p := range []string{bad, noOp} {
		if _, err := os.Stat(p + badSuffix); err != nil {
			t.Errorf("corrupt record not moved aside to %s: %v", p+badSuffix, err)
		}
	}
	// Moved-aside records are not replayed again.
	if got, st := collect(t, s); len(got) != 0 || st.Corrupt != 0 {
		t.Fatalf("second drain = %v %+v, want nothing", got, st)
	}
}

func TestDrainMovesRejectedRecordAside(t *testing.T) {
	s := New(t.TempDir(), 10)
	s.now = steppingClock(time.Unix(1000, 0), time.Second)
	for _, id := range []string{"ok1", "invalid", "ok2"} {
		if _, err := s.Write(enrollRec(id)); err != nil {
			t.Fatal(err)
		}
	}
	var applied []string
	st, err := s.Drain(context.Background(), func(r *enrollpb.SpoolRecord) error {
		if r.GetEnroll().GetPod().GetContainerId() == "invalid" {
			return fmt.Errorf("validation: %w", ErrRejected)
		}
		applied = append(applied, containerID(r))
		return nil
	})
	if err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if st.Rejected != 1 || st.Applied != 2 || len(applied) != 2 {
		t.Fatalf("stats = %+v applied = %v, want Rejected=1 Applied=2", st, applied)
	}
	if n, _ := s.Pending(); n != 0 {
		t.Fatalf("Pending = %d, want 0", n)
	}
}

func TestDrainStopsOnApplyErrorKeepingRecordAndOrder(t *testing.T) {
	s := New(t.TempDir(), 10)
	s.now = steppingClock(time.Unix(1000, 0), time.Second)
	for _, id := range []string{"a", "b", "c"} {
		if _, err := s.Write(enrollRec(id)); err != nil {
			t.Fatal(err)
		}
	}
	boom := errors.New("disk on fire")
	st, err := s.Drain(context.Background(), func(r *enrollpb.SpoolRecord) error {
		if r.GetEnroll().GetPod().GetContainerId() == "b" {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Drain error = %v, want the apply error", err)
	}
	if st.Applied != 1 {
		t.Fatalf("Applied = %d, want 1", st.Applied)
	}
	// b failed, so b and c stay, in order, for the next drain.
	got, _ := collect(t, s)
	if strings.Join(got, ",") != "enroll:b,enroll:c" {
		t.Fatalf("next drain applied %v, want b then c", got)
	}
}

func TestDrainStopsWhenContextDone(t *testing.T) {
	s := New(t.TempDir(), 10)
	for i := range 5 {
		if _, err := s.Write(enrollRec(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	st, err := s.Drain(ctx, func(*enrollpb.SpoolRecord) error {
		n++
		if n == 2 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Drain error = %v, want context.Canceled", err)
	}
	if st.Applied != 2 {
		t.Fatalf("Applied = %d, want 2", st.Applied)
	}
	if p, _ := s.Pending(); p != 3 {
		t.Fatalf("Pending = %d, want 3 left for the next drain", p)
	}
}

// A writer killed between create and rename leaves only a hidden temp file:
// Drain must never replay it, and removes it once it is clearly abandoned.
func TestDrainIgnoresInFlightTempAndRemovesStaleOne(t *testing.T) {
	dir := t.TempDir()
	s := New(dir, 10)
	fresh := filepath.Join(dir, tempPrefix+"0000000000000000001-0000000001-aaaaaaaa.rec")
	stale := filepath.Join(dir, tempPrefix+"0000000000000000002-0000000001-bbbbbbbb.rec")
	for _, p := range []string{fresh, stale} {
		if err := os.WriteFile(p, []byte(`{"enroll": {"pod": {"contai`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * StaleTempAge)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	got, st := collect(t, s)
	if len(got) != 0 || st.Corrupt != 0 {
		t.Fatalf("drain replayed temp files: %v %+v", got, st)
	}
	if st.TempsRemoved != 1 {
		t.Fatalf("TempsRemoved = %d, want 1", st.TempsRemoved)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp still present: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temp (a live writer's) removed: %v", err)
	}
}

// Readers racing concurrent writers only ever see complete records.
func TestConcurrentReaderNeverSeesPartialRecord(t *testing.T) {
	dir := t.TempDir()
	s := New(dir, 1000)
	const writers, perWriter = 4, 25
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				if _, err := s.Write(enrollRec(fmt.Sprintf("w%d-%d", w, i))); err != nil {
					t.Errorf("Write: %v", err)
					return
				}
			}
		})
	}
	go func() { wg.Wait(); close(done) }()
	checks := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		finished := false
		select {
		case <-done:
			finished = true
		default:
		}
		names, err := s.records()
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		for _, n := range names {
			if _, err := readRecord(filepath.Join(dir, n)); err != nil {
				t.Fatalf("visible record %s is not complete: %v", n, err)
			}
			checks++
		}
		if finished {
			break
		}
	}
	if n, _ := s.Pending(); n != writers*perWriter {
		t.Fatalf("Pending = %d, want %d", n, writers*perWriter)
	}
	if checks == 0 {
		t.Fatal("reader checked no records")
	}
}
