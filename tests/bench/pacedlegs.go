package bench

import "fmt"

// pacedLegsMarkdown renders the attribution legs of every paced rate that
// ran them (#16): each leg's latency ratios to its own round's baseline,
// the CPU beside the load, records and losses, and the split of the full
// daemon's ratio between the request's path and the daemon.
func (r *Report) pacedLegsMarkdown(p func(format string, a ...any)) {
	for i := range r.Paced {
		pr := &r.Paced[i]
		legs := pr.LegNames()
		if len(legs) == 0 {
			continue
		}
		p("\n## %s: what the latency is made of (#16)\n\n", pr.Name)
		what := map[string]string{
			LegEBPFOnly:  "Weir's capture (the same programs, both pods enrolled, payload on) with its ring drained by a reader in the bench process that only counts records, weir-daemon not running",
			LegNoExport:  "weir-daemon without SkyWalking export",
			LegMaxProcs1: "the full daemon whose Go runtime may use one core",
		}
		p("Each round runs, in an order rotating per round, a baseline (nothing attached), the full daemon (the row above), and:")
		for i, leg := range legs {
			sep := ";"
			if i == len(legs)-1 {
				sep = "."
			}
			p(" **%s** — %s%s", leg, what[leg], sep)
		}
		p(" ")
		p("Every ratio is to the same round's baseline; median over the rounds [range]. ")
		p("The eBPF-only leg's CPU is the bench process's (its counting reader), its records are ring records drained (events, not HTTP exchanges).\n\n")
		p("| leg | rounds | p50 | p50 ratio | p99 | p99 ratio | CPU beside the load | records | events lost |\n|---|---|---|---|---|---|---|---|---|\n")
		row := func(name string, s PacedSummary, who string, records string) {
			cpu := fmt.Sprintf("%.3f cores (%s)", s.Cores, who)
			if s.ReceiverCPU > 0 {
				cpu += fmt.Sprintf(" + %.3f (in-process OAP receiver)", s.ReceiverCores)
			}
			lost := SumLost(s.Lost)
			p("| %s | %d | %s | %s | %s | %s | %s | %s | %.0f%s %s |\n", name, len(s.P50Ratios), ms(s.P50), spread(Median(s.P50Ratios), s.P50Ratios, ratioUnit),
				ms(s.P99), spread(Median(s.P99Ratios), s.P99Ratios, ratioUnit), cpu, records, lost, lossNote(s.Lost), r.judged(lost == 0))
		}
		httpRecords := func(s PacedSummary) string {
			return fmt.Sprintf("%.0f HTTP / %.0f (2 × requests)", s.Records, 2*s.Requests)
		}
		full := pr.Summary()
		p("| baseline | %d | %s | — | %s | — | — | — | — |\n", len(full.P50Ratios), ms(full.BaseP50), ms(full.BaseP99))
		row("full daemon (export to the in-process receiver)", full, "weir-daemon", httpRecords(full))
		for _, leg := range legs {
			s := pr.LegSummary(leg)
			switch leg {
			case LegEBPFOnly:
				row(leg, s, "counting reader", fmt.Sprintf("%.0f ring records", s.Records))
			default:
				row(leg, s, "weir-daemon", httpRecords(s))
			}
		}
		sh := pr.Shares()
		excess := func(v, of float64) string {
			if of <= 0 {
				return ""
			}
			return fmt.Sprintf(" (%.0f%% of the full daemon's excess)", 100*v/of)
		}
		p("\nThe full daemon's median ratios are %.3f (p50) and %.3f (p99); from the medians:\n\n", sh.Full50, sh.Full99)
		if sh.HasEBPF {
			p("- in the request's path (eBPF only − 1): p50 %+.3f%s, p99 %+.3f%s\n",
				sh.InPath50, excess(sh.InPath50, sh.Full50-1), sh.InPath99, excess(sh.InPath99, sh.Full99-1))
			p("- the daemon (full − eBPF only): p50 %+.3f%s, p99 %+.3f%s; paired within each round, full ÷ eBPF only: p50 %s, p99 %s\n",
				sh.Daemon50, excess(sh.Daemon50, sh.Full50-1), sh.Daemon99, excess(sh.Daemon99, sh.Full99-1),
				spread(Median(sh.FullOverEBPF50), sh.FullOverEBPF50, ratioUnit), spread(Median(sh.FullOverEBPF99), sh.FullOverEBPF99, ratioUnit))
		}
		if sh.HasExport {
			p("- of the daemon's, export (full − no export): p50 %+.3f, p99 %+.3f\n", sh.Export50, sh.Export99)
		}
		if sh.HasMaxProc {
			p("- --max-procs 1 against the full daemon: p50 %+.3f, p99 %+.3f\n", sh.MaxProcs150, sh.MaxProcs199)
		}
		p("\nA difference of medians is as noisy as the rounds' ranges above: read a share smaller than those ranges as no share.\n")
	}
}
