package metrics

import (
	"testing"
	"unsafe"
)

// TestSlotSizesMatchTheDocumentedBound keeps the memory statement of
// Options honest.
func TestSlotSizesMatchTheDocumentedBound(t *testing.T) {
	if n := unsafe.Sizeof(httpSlot{}); n > 96 {
		t.Errorf("httpSlot is %d bytes, documented as 96", n)
	}
	if n := unsafe.Sizeof(tcpSlot{}); n > 80 {
		t.Errorf("tcpSlot is %d bytes, documented as 80", n)
	}
	if logHistBytes != 1248 {
		t.Errorf("logHistBytes = %d, documented as 1248", logHistBytes)
	}
	if n := unsafe.Sizeof(podState{}); n > 6*1024+512 {
		t.Errorf("podState is %d bytes, documented as about 6 KiB", n)
	}
	if n := unsafe.Sizeof(edgeState{}); n > 2*1024+512 {
		t.Errorf("edgeState is %d bytes, documented as about 2.5 KiB", n)
	}
}
