package bpf

import (
	"strings"
	"testing"
	"time"
)

func TestConfigDefaultsWakeTheReaderAtAQuarterOfTheRing(t *testing.T) {
	c, err := Config{RingBufferSize: 1 << 16}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.WakeupBytes != 1<<14 {
		t.Errorf("WakeupBytes = %d, want a quarter of the ring (%d)", c.WakeupBytes, 1<<14)
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
		{Config{WakeupBytes: DefaultRingBufferSize}, "wakeup bytes"},
		{Config{WakeupBytes: -1}, "wakeup bytes"},
		{Config{PollInterval: 2 * time.Second}, "poll interval"},
		{Config{PollInterval: -time.Millisecond}, "poll interval"},
	} {
		_, err := tc.cfg.withDefaults()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one naming %q", tc.cfg, err, tc.want)
		}
	}
}
