package bench

import (
	"strings"
	"testing"
)

// TestStageSplitTakesExportAsTheDifferenceOfMedians pins the per-stage line
// of the pipeline section: export is the export benchmark's median CPU per
// request less the pipeline benchmark's.
func TestStageSplitTakesExportAsTheDifferenceOfMedians(t *testing.T) {
	out := ParseGoBench(`BenchmarkPipelineHTTP1KeepAlive-2   	  500000	      5000 ns/op	      4000 cpu-ns/op	    1664 B/op	       9 allocs/op
BenchmarkPipelineHTTP1KeepAlive-2   	  500000	      5000 ns/op	      3000 cpu-ns/op	    1664 B/op	       9 allocs/op
BenchmarkPipelineHTTP1KeepAlive-2   	  500000	      5000 ns/op	      9000 cpu-ns/op	    1664 B/op	       9 allocs/op
BenchmarkDaemonHTTP1Export-2   	  300000	      9000 ns/op	      6000 cpu-ns/op	    2463 B/op	      17 allocs/op
`)
	lines := stageSplit(out)
	if len(lines) != 1 {
		t.Fatalf("got %q, want one line (HTTP/1.1 only: no h2c benchmarks)", lines)
	}
	want := "HTTP/1.1, median CPU ns per request: pipeline 4000 (67%), SkyWalking export 2000 (33%), together 6000"
	if !strings.Contains(lines[0], want) {
		t.Errorf("got %q, want %q", lines[0], want)
	}
}
