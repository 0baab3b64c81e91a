package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf/btf"

	"github.com/weirnet/weir/bpf/event"
)

// These tests need no privileges: they pin the contract between the C
// records, their generated Go mirrors and package event.

func TestGeneratedRecordsMatchTheCLayout(t *testing.T) {
	spec, err := loadCapture()
	if err != nil {
		t.Fatal(err)
	}
	for name, goSize := range map[string]uintptr{
		"conn_event":    unsafe.Sizeof(captureConnEvent{}),
		"data_event":    unsafe.Sizeof(captureDataEvent{}),
		"process_event": unsafe.Sizeof(captureProcessEvent{}),
		"proc_info":     unsafe.Sizeof(captureProcInfo{}),
		"send_metrics":  unsafe.Sizeof(captureSendMetrics{}),
		"sock_stats":    unsafe.Sizeof(captureSockStats{}),
	} {
		var s *btf.Struct
		if err := spec.Types.TypeByName(name, &s); err != nil {
			t.Fatal(err)
		}
		if uintptr(s.Size) != goSize {
			t.Fatalf("struct %s: %d bytes in C, %d in Go", name, s.Size, goSize)
		}
		if s.Size%8 != 0 {
			t.Fatalf("struct %s: %d bytes is not 8-byte aligned for ring buffer records", name, s.Size)
		}
	}
}

func TestKernelEnumsMatchPackageEvent(t *testing.T) {
	spec, err := loadCapture()
	if err != nil {
		t.Fatal(err)
	}
	var sys *btf.Enum
	if err := spec.Types.TypeByName("syscall_id", &sys); err != nil {
		t.Fatal(err)
	}
	for _, v := range sys.Values {
		want := strings.ToLower(strings.TrimPrefix(v.Name, "SYS_"))
		if got := event.Syscall(v.Value).String(); got != want {
			t.Fatalf("C %s = %d is event.Syscall %q", v.Name, v.Value, got)
		}
	}
	if len(sys.Values) != int(event.SysBoringSSLRead)+1 {
		t.Fatalf("C has %d syscalls, package event %d", len(sys.Values), event.SysBoringSSLRead+1)
	}
	pairs := []struct {
		c, ev uint32
	}{
		{uint32(captureConnRoleROLE_UNKNOWN), uint32(event.RoleUnknown)},
		{uint32(captureConnRoleROLE_CLIENT), uint32(event.RoleClient)},
		{uint32(captureConnRoleROLE_SERVER), uint32(event.RoleServer)},
		{uint32(captureDirectionDIR_EGRESS), uint32(event.Egress)},
		{uint32(captureDirectionDIR_INGRESS), uint32(event.Ingress)},
	}
	for i, p := range pairs {
		if p.c != p.ev {
			t.Fatalf("pair %d: C value %d, event value %d", i, p.c, p.ev)
		}
	}
	// enum metric_bit is event.Metric bit for bit, and metricNames names
	// every one of them.
	var mb *btf.Enum
	if err := spec.Types.TypeByName("metric_bit", &mb); err != nil {
		t.Fatal(err)
	}
	if len(mb.Values) != len(metricNames) {
		t.Fatalf("C has %d metric bits, Go names %d", len(mb.Values), len(metricNames))
	}
	for i, v := range mb.Values {
		want := strings.ToLower(strings.TrimPrefix(v.Name, "METRIC_"))
		if event.Metric(v.Value) != metricNames[i].m || metricNames[i].name != want {
			t.Fatalf("C %s = %#x, Go metric %d is %#x %q", v.Name, v.Value, i, metricNames[i].m, metricNames[i].name)
		}
	}
	// enum skip_reason is event.SkipReason, named alike.
	var sr *btf.Enum
	if err := spec.Types.TypeByName("skip_reason", &sr); err != nil {
		t.Fatal(err)
	}
	for _, v := range sr.Values {
		if v.Name == "SKIP_MAX" {
			if int(v.Value) != event.NumSkipReasons {
				t.Fatalf("C has %d skip reasons, package event %d", v.Value, event.NumSkipReasons)
			}
			continue
		}
		want := strings.ToLower(strings.TrimPrefix(v.Name, "SKIP_"))
		if got := event.SkipReason(v.Value).String(); got != want {
			t.Fatalf("C %s = %d is event.SkipReason %q", v.Name, v.Value, got)
		}
	}
	names, err := counterNames(spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != int(captureDropReasonDROP_MAX) || names[0] != "ringbuf_full" {
		t.Fatalf("counter names %v", names)
	}
}

func TestDecodeBuildsEventsAndRejectsBadRecords(t *testing.T) {
	var rec recorder
	hdr := captureDataEvent{
		Type: uint8(captureEventTypeEVENT_DATA), Direction: 1, Syscall: uint8(event.SysRecvfrom),
		Truncated: 1, Fd: 9, ConnId: 42, Seq: 3, Offset: 100, Size: 10, Captured: 4,
		Skip: uint8(captureSkipReasonSKIP_H2DATA), StartNs: 5, EndNs: 6,
		Proc: captureProcInfo{Netns: 77, CgroupId: 88, Tgid: 1, Tid: 2, PodId: 3},
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&hdr.Proc.Comm[0])), 16), "curl")
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, hdr); err != nil {
		t.Fatal(err)
	}
	b.WriteString("GET ")
	if err := decode(b.Bytes(), &rec, nil, nil); err != nil {
		t.Fatal(err)
	}
	d := rec.data[0]
	if d.Conn != 42 || d.Direction != event.Ingress || d.Syscall != event.SysRecvfrom || d.Seq != 3 ||
		d.StreamOffset != 100 || d.Size != 10 || string(d.Payload) != "GET " || !d.Truncated ||
		d.Skip != event.SkipH2Data ||
		d.Proc.Comm != "curl" || d.Proc.PodID != 3 || d.Proc.NetnsIno != 77 || d.FD != 9 {
		t.Fatalf("decoded %+v", d)
	}

	open := captureConnEvent{Type: uint8(captureEventTypeEVENT_CONN_OPEN), Role: 1, Success: 1, Family: 10, Lport: 80, Rport: 5000}
	copy(open.Laddr[:], netip.MustParseAddr("::ffff:10.0.0.1").AsSlice())
	copy(open.Raddr[:], netip.MustParseAddr("fd00::2").AsSlice())
	b.Reset()
	binary.Write(&b, binary.LittleEndian, open)
	if err := decode(b.Bytes(), &rec, nil, nil); err != nil {
		t.Fatal(err)
	}
	o := rec.opens[0]
	if o.Local.String() != "10.0.0.1:80" || o.Remote.String() != "[fd00::2]:5000" || o.Role != event.RoleClient {
		t.Fatalf("v4-mapped address not unmapped or ports wrong: %+v", o)
	}

	for name, bad := range map[string][]byte{
		"empty":        nil,
		"unknown type": {99, 0, 0, 0},
		"short data":   b.Bytes()[:10],
		"overlong":     append(bytes.Clone(b.Bytes()[:0]), make([]byte, dataEventSize)...),
		"no reason":    nil,
		"bad reason":   nil,
	} {
		if name == "no reason" || name == "bad reason" {
			// A suffix must carry a known reason.
			h := hdr
			h.Skip = 0
			if name == "bad reason" {
				h.Skip = uint8(event.NumSkipReasons)
			}
			var bb bytes.Buffer
			binary.Write(&bb, binary.LittleEndian, h)
			bad = append(bb.Bytes(), "GET "...)
		}
		if name == "short data" {
			bad[0] = uint8(captureEventTypeEVENT_DATA)
		}
		if name == "overlong" {
			h := hdr
			h.Captured = 50 // more than the record carries
			var bb bytes.Buffer
			binary.Write(&bb, binary.LittleEndian, h)
			bad = bb.Bytes()
		}
		if err := decode(bad, &rec, nil, nil); err == nil {
			t.Fatalf("%s record decoded without error", name)
		}
	}
}

func TestLoadRejectsBadConfigByName(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{RingBufferSize: 3000}, "ring buffer size 3000"},
		{Config{RingBufferSize: 1 << 10}, "ring buffer size 1024"},
		{Config{ChunkSize: MaxChunkSize + 1}, "chunk size 16385"},
		{Config{ChunkSize: -1}, "chunk size -1"},
		{Config{ProcessQueueSize: -5}, "process queue size -5"},
	} {
		_, err := Load(tc.cfg, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("Load(%+v) = %v, want an error naming %q", tc.cfg, err, tc.want)
		}
	}
}

func TestHookErrorIsErrHookUnavailable(t *testing.T) {
	err := error(&HookError{Hook: "tracepoint/syscalls/sys_enter_nope", Err: errors.New("not found")})
	if !errors.Is(err, ErrHookUnavailable) || !strings.Contains(err.Error(), "sys_enter_nope") {
		t.Fatalf("%v", err)
	}
}

// TestDecodeAttachesMetricsOnlyWhereMeasured pins how kernel metrics reach
// events: on the last chunk of an egress syscall only, with fields whose
// Measured bit is clear left zero even if the kernel wrote something, drop
// reasons named from the kernel's enum, and socket stats at close.
func TestDecodeAttachesMetricsOnlyWhereMeasured(t *testing.T) {
	reasons := dropReasons{2: "NOT_SPECIFIED", 77: "NETFILTER_DROP"}
	send := captureSendMetrics{
		Measured: uint32(event.MetricPackets | event.MetricRetransmits | event.MetricDrops),
		Packets:  3, PacketBytes: 4500, Retrans: 1, Ifindex: 5,
		L2Ns: 999, L4Ns: 888, // written but not measured: must not leak
		Drops: [2]captureDropSlot{{Reason: 77, Count: 2}},
	}
	var rec recorder
	for _, last := range []uint8{0, 1} {
		hdr := captureDataEvent{Type: uint8(captureEventTypeEVENT_DATA), Direction: uint8(event.Egress), Last: last, ConnId: 1, Size: 1, Skip: uint8(event.SkipNoPayload), Send: send}
		var b bytes.Buffer
		binary.Write(&b, binary.LittleEndian, hdr)
		if err := decode(b.Bytes(), &rec, nil, reasons); err != nil {
			t.Fatal(err)
		}
	}
	if rec.data[0].Send != nil {
		t.Fatalf("metrics on a chunk that is not the syscall's last: %+v", rec.data[0].Send)
	}
	m := rec.data[1].Send
	if m == nil || m.Packets != 3 || m.PacketBytes != 4500 || m.Retransmits != 1 || m.IfIndex != 5 ||
		m.L2Duration != 0 || m.L4Duration != 0 || len(m.Drops) != 1 || m.Drops[0] != (event.Drop{Reason: "NETFILTER_DROP", Count: 2}) {
		t.Fatalf("send metrics decoded as %+v", m)
	}

	// Receive: the richer tier's fields appear only under their bits.
	for i, c := range []struct {
		measured event.Metric
		want     event.RecvMetrics
	}{
		{event.MetricPackets, event.RecvMetrics{Packets: 2, PacketBytes: 3000}},
		{event.MetricPackets | event.MetricL4Duration | event.MetricL3Duration | event.MetricL3Split | event.MetricNetfilter,
			event.RecvMetrics{Packets: 2, PacketBytes: 3000, L3Duration: 50, L3RecvDuration: 30, L3LocalDuration: 20,
				NetfilterCount: 4, NetfilterDuration: 9, L4Duration: 70}},
	} {
		hdr := captureDataEvent{Type: uint8(captureEventTypeEVENT_DATA), Direction: uint8(event.Ingress), Last: 1, ConnId: 1, Size: 1, Skip: uint8(event.SkipNoPayload),
			Recv: captureRecvMetrics{Measured: uint32(c.measured), Packets: 2, PacketBytes: 3000,
				L3Ns: 50, L3RecvNs: 30, L3LocalNs: 20, L4Ns: 70, NfNs: 9, NfCount: 4}}
		var b bytes.Buffer
		binary.Write(&b, binary.LittleEndian, hdr)
		if err := decode(b.Bytes(), &rec, nil, reasons); err != nil {
			t.Fatal(err)
		}
		c.want.Measured = c.measured
		if got := rec.data[len(rec.data)-1].Recv; got == nil || *got != c.want {
			t.Fatalf("case %d: recv metrics decoded as %+v, want %+v", i, got, c.want)
		}
	}

	cl := captureConnEvent{Type: uint8(captureEventTypeEVENT_CONN_CLOSE), ConnId: 1, Stats: captureSockStats{
		Measured: uint32(event.MetricRTT | event.MetricRetransmits | event.MetricDrops),
		SrttUs:   50123, MdevUs: 800, TotalRetrans: 7,
		Drops: [4]captureDropSlot{{Reason: 2, Count: 1}, {Reason: 300, Count: 4}},
	}}
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, cl)
	if err := decode(b.Bytes(), &rec, nil, reasons); err != nil {
		t.Fatal(err)
	}
	s := rec.closes[0].Socket
	if s == nil || s.SRTT != 50123000 || s.RTTVar != 800000 || s.Retransmits != 7 ||
		len(s.Drops) != 2 || s.Drops[1].Reason != "reason(300)" {
		t.Fatalf("socket stats decoded as %+v", s)
	}
}

// Every kernel counter is exported as a loss or as a partial report
// (CounterLoses); a counter added to enum drop_reason must be placed here
// on purpose, since an alert on losses must neither miss a new loss nor fire
// on a new kind of partial report.
func TestEveryKernelCounterIsClassifiedAsLossOrPartial(t *testing.T) {
	spec, err := loadCapture()
	if err != nil {
		t.Fatal(err)
	}
	names, err := counterNames(spec)
	if err != nil {
		t.Fatal(err)
	}
	losses := map[string]bool{
		"ringbuf_full": true, "conn_map_full": true, "args_map_full": true, "proc_map_full": true,
		"mmsg_limit": true, "tls_unlinked": true,
	}
	partial := map[string]bool{
		"chunk_truncated": true, "capture_limit": true, "iov_limit": true, "mmsg_payload": true,
		"read_user_failed": true, "sock_map_full": true, "drop_slots_full": true, "pod_drops_map_full": true,
		"rx_stamp_map_full": true, "rx_unstamped": true, "rx_times_map_full": true, "rx_untimed": true,
		"h2_frame_limit": true, "h2_desync": true, "uncaptured_op": true,
	}
	for _, n := range names {
		switch {
		case losses[n] == partial[n]:
			t.Errorf("kernel counter %q is in neither list (or both): classify it here and in CounterLoses", n)
		case CounterLoses(n) != losses[n]:
			t.Errorf("CounterLoses(%q) = %v, want %v", n, CounterLoses(n), losses[n])
		}
	}
	if len(names) != len(losses)+len(partial) {
		t.Errorf("%d kernel counters, %d classified: the lists name counters the C no longer has", len(names), len(losses)+len(partial))
	}
}
