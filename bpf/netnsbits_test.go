package bpf

import (
	"testing"
)

// The kernel side looks a namespace up in enrolled_netns only when its bit
// in netns_bits is set, so the bits must cover every enrolled namespace at
// all times; a bit is cleared only when no enrolled namespace maps to it.
// Root and real maps.
func TestNetnsFilterBitsFollowEnrollment(t *testing.T) {
	requireRoot(t)
	c, err := Load(Config{}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	bitSet := func(ino uint64) bool {
		t.Helper()
		k, bit := netnsBit(ino)
		var w uint64
		if err := c.netnsBit.Lookup(k, &w); err != nil {
			t.Fatal(err)
		}
		return w&bit != 0
	}
	// Two inodes that share a bit, and one that does not.
	const a, b, other = 4026599001, 4026599001 + 64*netnsBitsWords, 4026599002
	if bitSet(a) || bitSet(other) {
		t.Fatal("filter bits set before any enrollment")
	}
	if err := c.Enroll(a, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Enroll(b, 2); err != nil {
		t.Fatal(err)
	}
	if !bitSet(a) || !bitSet(b) {
		t.Fatal("an enrolled namespace's filter bit is clear: the kernel side would never see it")
	}
	if bitSet(other) {
		t.Fatal("a namespace nobody enrolled has its filter bit set")
	}
	if err := c.Unenroll(a); err != nil {
		t.Fatal(err)
	}
	if !bitSet(b) {
		t.Fatal("unenrolling one namespace cleared the bit another enrolled namespace shares")
	}
	if err := c.Unenroll(b); err != nil {
		t.Fatal(err)
	}
	if bitSet(a) {
		t.Fatal("the filter bit stays set after its last namespace was unenrolled")
	}
}
