package podnetns

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"syscall"
	"testing"
)

// calls records what the collector and the watcher were asked, in order.
type calls struct {
	log  []string
	fail error // returned by the next EnrollPod
}

func (c *calls) Enroll(netns uint64, id uint32) error {
	c.log = append(c.log, fmt.Sprintf("enroll %d %d", netns, id))
	return nil
}

func (c *calls) EnrollPod(netns uint64, id uint32, veth int) error {
	c.log = append(c.log, fmt.Sprintf("enrollpod %d %d %d", netns, id, veth))
	err := c.fail
	c.fail = nil
	return err
}

func (c *calls) Unenroll(netns uint64) error {
	c.log = append(c.log, fmt.Sprintf("unenroll %d", netns))
	return nil
}

func (c *calls) Enrolled(netns uint64)   { c.log = append(c.log, fmt.Sprintf("watch+ %d", netns)) }
func (c *calls) Unenrolled(netns uint64) { c.log = append(c.log, fmt.Sprintf("watch- %d", netns)) }

func TestANamespaceStaysEnrolledUntilItsLastAttachmentGoes(t *testing.T) {
	c := &calls{}
	e := New(c, c, slog.New(slog.DiscardHandler))
	e.Want(500, 1, 7)
	e.Want(500, 2, 8) // a second attachment of the same pod: no change
	e.Want(500, 1, 7) // re-enrolled: keeps its place
	e.Unwant(500, 1)  // the namespace moves to attachment 2
	e.Unwant(500, 2)
	e.Want(0, 3, 0) // no namespace: nothing to do
	want := []string{"enrollpod 500 1 7", "watch+ 500", "enrollpod 500 2 8", "watch- 500", "unenroll 500"}
	if !slices.Equal(c.log, want) {
		t.Fatalf("calls %q, want %q", c.log, want)
	}
}

func TestAFailedEnrollmentIsCountedAndReportedUntilItIsNotWanted(t *testing.T) {
	c := &calls{fail: errors.New("map full")}
	e := New(c, nil, slog.New(slog.DiscardHandler))
	e.Want(500, 1, 0)
	if n, err := e.Failing(); n != 1 || err == nil || e.Errors() != 1 {
		t.Fatalf("Failing() = %d, %v; Errors() = %d; want 1, the error, 1", n, err, e.Errors())
	}
	e.Unwant(500, 1)
	if n, _ := e.Failing(); n != 0 || e.Errors() != 1 {
		t.Fatalf("after Unwant: Failing() = %d, Errors() = %d; want 0 and still 1", n, e.Errors())
	}
	c.fail = fmt.Errorf("attach: %w", syscall.ENODEV) // host veth gone: the pod was deleted
	e.Want(600, 2, 9)
	if n, _ := e.Failing(); n != 0 || e.Errors() != 1 {
		t.Fatalf("ENODEV: Failing() = %d, Errors() = %d; want it not counted", n, e.Errors())
	}
}

func TestWithoutACollectorNothingIsApplied(t *testing.T) {
	e := New(nil, nil, slog.New(slog.DiscardHandler))
	e.Want(500, 1, 0)
	e.Unwant(500, 1)
	if n, _ := e.Failing(); n != 0 || e.Errors() != 0 {
		t.Fatal("an Enroller without a collector reported failures")
	}
}
