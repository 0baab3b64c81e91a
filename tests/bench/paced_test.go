package bench

import (
	"strings"
	"testing"
	"time"
)

func fakeRound(base50, base99, w50, w99 time.Duration, rate float64) PacedRound {
	return PacedRound{
		Base: LoadResult{P50: base50, P99: base99, Throughput: rate, Duration: 10 * time.Second},
		Run: WeirRun{
			Load:     LoadResult{P50: w50, P99: w99, Throughput: rate, Duration: 10 * time.Second, Requests: int64(rate * 10)},
			CPU:      time.Second,
			Records:  2 * rate * 10,
			Capturer: true,
			Lost:     map[string]float64{"ringbuf_full": 0},
		},
	}
}

func TestPacedSummaryJudgesTheMedianOfTheRoundsRatios(t *testing.T) {
	ms := time.Millisecond
	pr := PacedRun{Name: "h2load paced at 10k req/s", Target: 10_000, Rounds: []PacedRound{
		fakeRound(2*ms, 3*ms, 2200*time.Microsecond, 3300*time.Microsecond, 9990), // 1.10, 1.10
		fakeRound(2*ms, 3*ms, 3*ms, 6*ms, 9700),                                   // 1.50, 2.00: a hiccup
		fakeRound(2*ms, 3*ms, 2240*time.Microsecond, 3600*time.Microsecond, 9995), // 1.12, 1.20
	}}
	pr.Rounds[1].Run.Lost = map[string]float64{"ringbuf_full": 3}
	s := pr.Summary()
	if got, want := Median(s.P50Ratios), 1.12; !near(got, want) {
		t.Errorf("median p50 ratio = %.3f, want %.3f (the hiccup round must not decide)", got, want)
	}
	if got, want := Median(s.P99Ratios), 1.20; !near(got, want) {
		t.Errorf("median p99 ratio = %.3f, want %.3f", got, want)
	}
	if s.MinRate != 9700 {
		t.Errorf("lowest achieved rate = %.0f, want 9700: the rate target is judged on the worst round", s.MinRate)
	}
	if !near(s.Cores, 0.1) {
		t.Errorf("daemon cores = %.3f, want 0.100 (3 CPU-s over 30 s)", s.Cores)
	}
	if SumLost(s.Lost) != 3 {
		t.Errorf("lost = %v, want the rounds' sum 3", s.Lost)
	}

	rep := &Report{Scenarios: []*Scenario{{Weir: []WeirRun{{Capturer: true}}}}, Paced: []PacedRun{pr}}
	md := rep.Markdown()
	for _, want := range []string{
		"p50 latency | 2.000 ms | 2.240 ms | 1.120 [1.100–1.500] × | ≤ 1.15 (#16) | yes |",
		"p99 latency | 3.000 ms | 3.600 ms | 1.200 [1.100–2.000] × | ≤ 1.25 (#16) | yes |",
		"3 alternating rounds",
		"achieved rate, lowest round | 10000 req/s offered | 9700 req/s | 0.970 |",
		"events lost/dropped | — | 3 (ringbuf_full +3) | — | 0 | **no** |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, pacedLines(md))
		}
	}
}

func TestPacedRunThatFailedKeepsItsCompletedRounds(t *testing.T) {
	ms := time.Millisecond
	pr := PacedRun{Name: "h2load paced at 20k req/s", Target: 20_000, Err: "round 2: with Weir: h2load: exit status 1",
		Rounds: []PacedRound{fakeRound(2*ms, 4*ms, 2*ms, 4400*time.Microsecond, 19990)}}
	rep := &Report{Scenarios: []*Scenario{{Weir: []WeirRun{{Capturer: true}}}}, Paced: []PacedRun{pr}}
	md := rep.Markdown()
	for _, want := range []string{
		"failed after 1 round(s): round 2: with Weir: h2load: exit status 1 | — | — | **no** |",
		"p99 latency | 4.000 ms | 4.400 ms | 1.100 × | ≤ 1.10 (#7) | yes |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, pacedLines(md))
		}
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func pacedLines(md string) string {
	var out []string
	for _, l := range strings.Split(md, "\n") {
		if strings.Contains(l, "paced") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
