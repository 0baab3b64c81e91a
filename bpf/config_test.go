package bpf

import (
	"strings"
	"testing"
	"time"
)

func TestConfigDefaultsPollTheRingEvery10ms(t *testing.T) {
	c, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.PollInterval != DefaultPollInterval {
		t.Errorf("PollInterval = %s, want %s", c.PollInterval, DefaultPollInterval)
	}
}

func TestConfigRejectsBoundsItCannotHonour(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{RingBufferSize: 5000}, "power of two"},
		{Config{ChunkSize: MaxChunkSize + 1}, "chunk size"},
		{Config{PollInterval: 2 * time.Second}, "poll interval"},
		{Config{PollInterval: -time.Millisecond}, "poll interval"},
		{Config{MaxFrameCopy: MinMaxFrameCopy - 1}, "max frame copy"},
		{Config{HintMapSize: -1}, "hint map size"},
	} {
		_, err := tc.cfg.withDefaults()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one naming %q", tc.cfg, err, tc.want)
		}
	}
}
