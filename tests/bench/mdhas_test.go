package bench

import (
	"strings"
	"testing"
)

// mdHas fails t for every want that the rendered report md lacks, showing
// shown (the part of the report the wants are about).
func mdHas(t *testing.T, md, shown string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, shown)
		}
	}
}
