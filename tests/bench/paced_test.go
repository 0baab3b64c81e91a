package bench

import (
	"errors"
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
	mdHas(t, md, pacedLines(md),
		"p50 latency | 2.000 ms | 2.240 ms | 1.120 [1.100–1.500] × | ≤ 1.15 (#16) | yes |",
		"p99 latency | 3.000 ms | 3.600 ms | 1.200 [1.100–2.000] × | ≤ 1.25 (#16) | yes |",
		"3 alternating rounds",
		"achieved rate, lowest round | 10000 req/s offered | 9700 req/s | 0.970 |",
		"events lost/dropped | — | 3 (ringbuf_full +3) | — | 0 | **no** |",
	)
}

func TestPacedRunThatFailedKeepsItsCompletedRounds(t *testing.T) {
	ms := time.Millisecond
	pr := PacedRun{Name: "h2load paced at 20k req/s", Target: 20_000, Err: "round 2: with Weir: h2load: exit status 1",
		Rounds: []PacedRound{fakeRound(2*ms, 4*ms, 2*ms, 4400*time.Microsecond, 19990)}}
	rep := &Report{Scenarios: []*Scenario{{Weir: []WeirRun{{Capturer: true}}}}, Paced: []PacedRun{pr}}
	md := rep.Markdown()
	mdHas(t, md, pacedLines(md),
		"failed after 1 round(s): round 2: with Weir: h2load: exit status 1 | — | — | **no** |",
		"p99 latency | 4.000 ms | 4.400 ms | 1.100 × | ≤ 1.10 (#7) | yes |",
	)
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

// legRound is a round at 10k req/s with the full daemon at full50/full99
// and the attribution legs at the given latencies (a zero duration leaves
// the leg out of the round), all against a 2 ms / 4 ms baseline.
func legRound(full50, full99 time.Duration, legs map[string][2]time.Duration) PacedRound {
	rd := fakeRound(2*time.Millisecond, 4*time.Millisecond, full50, full99, 10_000)
	rd.Run.ReceiverCPU = 100 * time.Millisecond
	for _, name := range []string{LegEBPFOnly, LegNoExport, LegMaxProcs1} {
		l, ok := legs[name]
		if !ok {
			continue
		}
		run := fakeRound(0, 0, l[0], l[1], 10_000).Run
		run.CPU = 200 * time.Millisecond
		rd.Legs = append(rd.Legs, PacedLegRun{Leg: name, Run: run})
	}
	return rd
}

func TestPacedLegSummaryTakesEachLegAgainstItsOwnRoundsBaseline(t *testing.T) {
	us := time.Microsecond
	pr := PacedRun{Name: "h2load paced at 10k req/s", Target: 10_000, Rounds: []PacedRound{
		legRound(2600*us, 5200*us, map[string][2]time.Duration{LegEBPFOnly: {2400 * us, 4400 * us}}),
		legRound(2500*us, 5000*us, map[string][2]time.Duration{LegEBPFOnly: {2200 * us, 4800 * us}}),
		legRound(2400*us, 4800*us, nil), // the leg failed to run this round
	}}
	pr.Rounds[1].Base.P50 = 2200 * us // this round's own baseline: 2200/2200 = 1.00
	s := pr.LegSummary(LegEBPFOnly)
	if len(s.P50Ratios) != 2 {
		t.Fatalf("eBPF-only rounds = %d, want 2: a round without the leg is left out", len(s.P50Ratios))
	}
	if !near(s.P50Ratios[0], 1.2) || !near(s.P50Ratios[1], 1.0) {
		t.Errorf("p50 ratios = %v, want [1.2 1.0]: each against its own round's baseline", s.P50Ratios)
	}
	if !near(s.Cores, 0.02) {
		t.Errorf("reader cores = %.3f, want 0.020 (0.4 CPU-s over 20 s)", s.Cores)
	}
	if got := pr.LegNames(); len(got) != 1 || got[0] != LegEBPFOnly {
		t.Errorf("LegNames = %v, want [%s]", got, LegEBPFOnly)
	}
	if full := pr.Summary(); len(full.P50Ratios) != 3 {
		t.Errorf("full daemon rounds = %d, want 3: the legs do not change the full daemon's summary", len(full.P50Ratios))
	}
}

func TestPacedSharesSplitTheFullRatioBetweenThePathAndTheDaemon(t *testing.T) {
	us := time.Microsecond
	legs := map[string][2]time.Duration{
		LegEBPFOnly:  {2200 * us, 4400 * us}, // 1.10, 1.10
		LegNoExport:  {2400 * us, 4800 * us}, // 1.20, 1.20
		LegMaxProcs1: {2500 * us, 5600 * us}, // 1.25, 1.40
	}
	pr := PacedRun{Name: "h2load paced at 10k req/s", Target: 10_000}
	for range 3 {
		pr.Rounds = append(pr.Rounds, legRound(2600*us, 5200*us, legs)) // full 1.30, 1.30
	}
	sh := pr.Shares()
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"in-path p50 (eBPF only − 1)", sh.InPath50, 0.10}, {"in-path p99", sh.InPath99, 0.10},
		{"daemon p50 (full − eBPF only)", sh.Daemon50, 0.20}, {"daemon p99", sh.Daemon99, 0.20},
		{"export p50 (full − no export)", sh.Export50, 0.10}, {"export p99", sh.Export99, 0.10},
		{"max-procs 1 p50 (− full)", sh.MaxProcs150, -0.05}, {"max-procs 1 p99", sh.MaxProcs199, 0.10},
	} {
		if d := c.got - c.want; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s = %.3f, want %.3f", c.name, c.got, c.want)
		}
	}
	if !sh.HasEBPF || !sh.HasExport || !sh.HasMaxProc {
		t.Errorf("shares %+v: every leg ran, so every share is known", sh)
	}

	rep := &Report{Scenarios: []*Scenario{{Weir: []WeirRun{{Capturer: true}}}}, Paced: []PacedRun{pr}}
	md := rep.Markdown()
	mdHas(t, md, md,
		"## h2load paced at 10k req/s: what the latency is made of (#16)",
		"and: **eBPF only** — Weir's capture (the same programs, both pods enrolled, payload on) with its ring drained by a reader in the bench process that only counts records, weir-daemon not running; **daemon, no export** — weir-daemon without SkyWalking export; **full daemon, --max-procs 1** — the full daemon whose Go runtime may use one core. Every ratio",
		"3 rotating rounds",
		"| baseline | 3 | 2.000 ms | — | 4.000 ms | — |",
		"| full daemon (export to the in-process receiver) | 3 | 2.600 ms | 1.300 [1.300–1.300] × | 5.200 ms | 1.300 [1.300–1.300] × | 0.100 cores (weir-daemon) + 0.010 (in-process OAP receiver) |",
		"| eBPF only | 3 | 2.200 ms | 1.100 [1.100–1.100] × | 4.400 ms | 1.100 [1.100–1.100] × | 0.020 cores (counting reader) | 600000 ring records | 0 yes |",
		"| daemon, no export | 3 | 2.400 ms | 1.200 [1.200–1.200] × |",
		"in the request's path (eBPF only − 1): p50 +0.100 (33% of the full daemon's excess), p99 +0.100 (33% of the full daemon's excess)",
		"the daemon (full − eBPF only): p50 +0.200 (67% of the full daemon's excess), p99 +0.200 (67% of the full daemon's excess); paired within each round, full ÷ eBPF only: p50 1.182 [1.182–1.182] ×, p99 1.182 [1.182–1.182] ×",
		"of the daemon's, export (full − no export): p50 +0.100, p99 +0.100",
		"--max-procs 1 against the full daemon: p50 -0.050, p99 +0.100",
	)
}

func TestPacedLegThatLostEventsIsJudgedAndNamed(t *testing.T) {
	us := time.Microsecond
	rd := legRound(2600*us, 5200*us, map[string][2]time.Duration{LegEBPFOnly: {2200 * us, 4400 * us}})
	rd.Legs[0].Run.Lost = map[string]float64{"ringbuf_full": 7}
	pr := PacedRun{Name: "h2load paced at 10k req/s", Target: 10_000, Rounds: []PacedRound{rd}}
	md := (&Report{Scenarios: []*Scenario{{Weir: []WeirRun{{Capturer: true}}}}, Paced: []PacedRun{pr}}).Markdown()
	if want := "| 7 (ringbuf_full +7) **no** |"; !strings.Contains(md, want) {
		t.Errorf("report lacks %q: a leg's lost events must show:\n%s", want, md)
	}
}

func TestPacedRunWithoutLegsHasNoAttributionSection(t *testing.T) {
	ms := time.Millisecond
	pr := PacedRun{Name: "h2load paced at 20k req/s", Target: 20_000,
		Rounds: []PacedRound{fakeRound(2*ms, 4*ms, 2*ms, 4*ms, 20_000)}}
	md := (&Report{Scenarios: []*Scenario{{Weir: []WeirRun{{Capturer: true}}}}, Paced: []PacedRun{pr}}).Markdown()
	if strings.Contains(md, "what the latency is made of") {
		t.Errorf("a rate without attribution legs got an attribution section:\n%s", md)
	}
	if !strings.Contains(md, "1 alternating rounds") {
		t.Errorf("a rate without legs keeps its alternating rounds' name:\n%s", pacedLines(md))
	}
}

func TestRunPacedRoundRotatesTheOrderAndNamesAFailedStep(t *testing.T) {
	var order []string
	step := func(name string, err error) pacedStep {
		return pacedStep{name, func(*PacedRound) error { order = append(order, name); return err }}
	}
	steps := []pacedStep{step("baseline", nil), step("with Weir", nil), step(LegEBPFOnly, nil)}
	for round, want := range []string{"baseline with Weir eBPF only", "with Weir eBPF only baseline", "eBPF only baseline with Weir", "baseline with Weir eBPF only"} {
		order = nil
		if _, err := runPacedRound(steps, round); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(order, " "); got != want {
			t.Errorf("round %d ran %q, want %q", round, got, want)
		}
	}
	steps[1] = step("with Weir", errors.New("h2load: exit status 1"))
	_, err := runPacedRound(steps, 0)
	if err == nil || err.Error() != "with Weir: h2load: exit status 1" {
		t.Errorf("error = %v, want the failed step named", err)
	}
}

func TestPacedOnlyReportJudgesTargetsWhenTheDaemonCaptured(t *testing.T) {
	ms := time.Millisecond
	pr := PacedRun{Name: "h2load paced at 10k req/s", Target: 10_000,
		Rounds: []PacedRound{fakeRound(2*ms, 4*ms, 2200*ms/1000, 4400*ms/1000, 10_000)}}
	md := (&Report{Paced: []PacedRun{pr}}).Markdown() // WEIR_BENCH_ONLY=paced: no load scenarios
	if want := "| h2load paced at 10k req/s: p50 latency | 2.000 ms | 2.200 ms | 1.100 × | ≤ 1.15 (#16) | yes |"; !strings.Contains(md, want) {
		t.Errorf("report lacks %q: a paced-only run whose daemon captured is judged:\n%s", want, pacedLines(md))
	}
	pr.Rounds[0].Run.Capturer = false
	md = (&Report{Paced: []PacedRun{pr}}).Markdown()
	if !strings.Contains(md, "— (no capture)") {
		t.Errorf("a paced-only run whose daemon did not capture is judged:\n%s", pacedLines(md))
	}
}
