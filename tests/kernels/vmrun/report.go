package main

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/weirnet/weir/tests/kernels/internal/guestproto"
)

// featureReportTag starts the line in which the guest self-test states what
// the kernel offers (see tests/kernels/selftest).
const featureReportTag = "weir-kernel-report: "

// collector gathers what the guest reported on its console.
type collector struct {
	nonce string

	mu        sync.Mutex
	release   string
	features  string
	ends      map[string]guestproto.Marker
	errors    []string
	done      *int
	malformed []string
}

func newCollector(nonce string) *collector {
	return &collector{nonce: nonce, ends: map[string]guestproto.Marker{}}
}

// observe takes one console line.
func (c *collector) observe(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := strings.Index(line, featureReportTag); i >= 0 {
		c.features = strings.TrimSpace(line[i+len(featureReportTag):])
		return
	}
	m, ok, err := guestproto.Parse(c.nonce, line)
	if !ok {
		return
	}
	if err != nil {
		c.malformed = append(c.malformed, err.Error())
		return
	}
	switch m.Kind {
	case guestproto.KindInfo:
		c.release = m.Fields["release"]
	case guestproto.KindEnd:
		c.ends[m.Fields["name"]] = m
	case guestproto.KindError:
		c.errors = append(c.errors, m.Fields["msg"])
	case guestproto.KindDone:
		code, err := m.Int("exit")
		if err != nil {
			c.malformed = append(c.malformed, err.Error())
			return
		}
		c.done = &code
	}
}

// summary turns the collected markers and QEMU's exit into report lines and
// the verdict. Every way a run can go wrong yields a "kernels: FAIL:" line:
// a failed or timed-out test binary, one that ran no test, a test without
// result, a guest setup error, a missing "done" marker, a QEMU exit status
// that disagrees with the guest's code, and a QEMU timeout.
func (c *collector) summary(tests []guestproto.Test, st qemuStatus, timeout time.Duration) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	release := c.release
	if release == "" {
		release = "unknown kernel"
	}
	var lines, fails, parts []string
	failf := func(format string, args ...any) { fails = append(fails, fmt.Sprintf(format, args...)) }

	var passed, failed, skipped int
	for _, t := range tests {
		end, ok := c.ends[t.Name]
		if !ok {
			failf("%s: no result (the guest stopped before it finished)", t.Name)
			parts = append(parts, t.Name+" no result")
			failed++
			continue
		}
		exit, err1 := end.Int("exit")
		p, err2 := end.Int("passed")
		f, err3 := end.Int("failed")
		s, err4 := end.Int("skipped")
		if err := firstErr(err1, err2, err3, err4); err != nil {
			failf("%s: bad result marker: %v", t.Name, err)
			failed++
			continue
		}
		passed, failed, skipped = passed+p, failed+f, skipped+s
		secs := end.Fields["seconds"]
		switch {
		case end.Fields["timeout"] == "true":
			failf("%s: killed after %s s: %s", t.Name, secs, end.Fields["msg"])
			parts = append(parts, fmt.Sprintf("%s TIMEOUT (%d passed, %d failed)", t.Name, p, f))
			if f == 0 {
				failed++
			}
		case exit != 0:
			reason := fmt.Sprintf("exit status %d", exit)
			if msg := end.Fields["msg"]; msg != "" {
				reason = msg
			}
			failf("%s: %s (%d passed, %d failed)", t.Name, reason, p, f)
			parts = append(parts, fmt.Sprintf("%s FAILED (%d passed, %d failed)", t.Name, p, f))
			if f == 0 {
				failed++ // a crash or build-time panic is a failure too
			}
		case p+f == 0:
			failf("%s: ran no tests (%d skipped): check -test.run and the package's tests", t.Name, s)
			parts = append(parts, t.Name+" ran no tests")
			failed++
		default:
			part := fmt.Sprintf("%s ok (%d tests", t.Name, p)
			if s > 0 {
				part += fmt.Sprintf(", %d skipped", s)
			}
			parts = append(parts, part+fmt.Sprintf(", %ss)", secs))
		}
	}
	for _, e := range c.errors {
		failf("guest: %s", e)
	}
	for _, e := range c.malformed {
		failf("malformed marker: %s", e)
	}
	switch {
	case st.timedOut:
		failf("QEMU timed out after %v", timeout)
	case c.done == nil:
		failf("no completion marker from the guest (QEMU exit status %d): kernel panic or init crash, see the serial log", st.exitCode)
	case st.exitCode != (*c.done<<1)|1:
		failf("guest reported exit %d but QEMU exited %d, not %d: isa-debug-exit did not work", *c.done, st.exitCode, (*c.done<<1)|1)
	case *c.done != 0 && len(fails) == 0:
		failf("guest reported exit %d without a failing test", *c.done)
	}

	lines = append(lines, fmt.Sprintf("kernels: %s: %s", release, strings.Join(parts, ", ")))
	if c.features != "" {
		lines = append(lines, fmt.Sprintf("kernels: %s: %s", release, c.features))
	}
	for _, f := range fails {
		lines = append(lines, "kernels: FAIL: "+f)
	}
	closing := fmt.Sprintf("kernels: %d passed, %d failed", passed, failed)
	if skipped > 0 {
		closing += fmt.Sprintf(", %d skipped", skipped)
	}
	lines = append(lines, closing)
	return lines, len(fails) == 0
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
