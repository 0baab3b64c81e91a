package bpf

import (
	"embed"
	"regexp"
	"strconv"
	"testing"

	"github.com/weirnet/weir/bpf/walker"
)

// cDefines returns the integer #defines of the eBPF C sources. Bounds that
// Go mirrors are preprocessor constants, which BTF does not carry, so the
// generated types cannot pin them: this test reads them from the source,
// embedded so that the test binary carries it (tests/kernels runs it in a
// guest that has no source tree).
//
//go:embed c/capture.h c/capture.bpf.c c/inflight.h c/shared.h
var cSources embed.FS

func cDefines(t *testing.T) map[string]int64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^#define\s+([A-Z0-9_]+)\s+(0x[0-9a-fA-F]+|[0-9]+)\b`)
	out := map[string]int64{}
	for _, f := range []string{"c/capture.h", "c/capture.bpf.c", "c/inflight.h", "c/shared.h"} {
		src, err := cSources.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			v, err := strconv.ParseInt(m[2], 0, 64)
			if err != nil {
				t.Fatalf("%s: #define %s %s: %v", f, m[1], m[2], err)
			}
			out[m[1]] = v
		}
	}
	return out
}

// Every bound the Go side repeats from the C -- the collector's checks of
// its Config, the pure-Go twin of the kernel's HTTP/2 walker, the netns
// filter bitmap user space keeps -- equals the C's. A change to one side
// alone would make the twin disagree with the kernel, or let user space
// accept a chunk size the kernel's scratch cannot hold.
func TestGoMirrorsOfCBoundsAreEqual(t *testing.T) {
	defs := cDefines(t)
	for _, c := range []struct {
		define string
		gos    map[string]int64
	}{
		{"MAX_CHUNK_SIZE", map[string]int64{"bpf.MaxChunkSize": MaxChunkSize, "walker.MaxChunkSize": walker.MaxChunkSize}},
		{"MAX_CHUNKS", map[string]int64{"bpf.MaxChunksPerSyscall": MaxChunksPerSyscall, "walker.MaxChunks": walker.MaxChunks}},
		{"MAX_IOVECS", map[string]int64{"walker.MaxIOVecs": walker.MaxIOVecs}},
		{"MAX_WALK_STEPS", map[string]int64{"walker.MaxWalkSteps": walker.MaxWalkSteps}},
		{"H2_SMALL_DATA", map[string]int64{"walker.SmallData": walker.SmallData}},
		{"NETNS_BITS_WORDS", map[string]int64{"bpf.netnsBitsWords": netnsBitsWords}},
	} {
		cv, ok := defs[c.define]
		if !ok {
			t.Errorf("#define %s not found in bpf/c", c.define)
			continue
		}
		for name, gv := range c.gos {
			if gv != cv {
				t.Errorf("%s = %d, C's %s = %d: must be equal", name, gv, c.define, cv)
			}
		}
	}
	if n := defs["NETNS_BITS_WORDS"]; n&(n-1) != 0 {
		t.Errorf("NETNS_BITS_WORDS = %d: the C masks with it, so it must be a power of two", n)
	}
	spec, err := loadCapture()
	if err != nil {
		t.Fatal(err)
	}
	if got := spec.Maps["netns_bits"].MaxEntries; int64(got) != defs["NETNS_BITS_WORDS"] {
		t.Errorf("netns_bits has %d entries, NETNS_BITS_WORDS is %d", got, defs["NETNS_BITS_WORDS"])
	}
}
