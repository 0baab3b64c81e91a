package bpf

import (
	"reflect"
	"testing"

	"github.com/weirnet/weir/bpf/event"
)

// TestAppendDataRecordDecodesToTheSameChunk pins AppendDataRecord as the
// inverse of the reader's decode: replaying a chunk through it gives back
// the chunk, kernel metrics and the last-event mark included, so a benchmark that replays records
// measures the decode of what the kernel writes.
func TestAppendDataRecordDecodesToTheSameChunk(t *testing.T) {
	proc := event.Process{TGID: 10, TID: 11, Comm: "nginx", CgroupID: 12, PodID: 3, NetnsIno: 4026531840}
	for _, want := range []event.Data{
		{
			Conn: 7, Proc: proc, FD: 5, Direction: event.Egress, Syscall: event.SysWritev, Seq: 9, StreamOffset: 4096,
			Size: 11, Payload: []byte("HTTP/1.1 20"), Start: 100, End: 200, Last: true,
			Send: &event.SendMetrics{Measured: event.MetricPackets | event.MetricRetransmits | event.MetricL2Queue,
				Packets: 2, PacketBytes: 1500, Retransmits: 1, EnterQueueCount: 2, ReadySendDuration: 30,
				DeviceSendDuration: 40},
		},
		{
			Conn: 8, Proc: proc, FD: 6, Direction: event.Ingress, Syscall: event.SysRead, Seq: 1, StreamOffset: 0,
			Size: 1000, Payload: []byte("GET /"), Truncated: true, Skip: event.SkipBody, Start: 300, End: 400, Last: true,
			Recv: &event.RecvMetrics{Measured: event.MetricPackets | event.MetricRecvQueue, Packets: 1,
				PacketBytes: 1066, ToQueueDuration: 5, FromQueueDuration: 6},
		},
		{Conn: 9, Proc: proc, Direction: event.Ingress, Syscall: event.SysRecvfrom, Size: 3, Payload: []byte("abc")},
		// The last event of a syscall the kernel measured nothing for.
		{Conn: 9, Proc: proc, Direction: event.Ingress, Syscall: event.SysRecvfrom, Seq: 1, StreamOffset: 3, Size: 2,
			Payload: []byte("de"), Last: true},
	} {
		b := AppendDataRecord(nil, want)
		if len(b)%8 != 0 {
			t.Fatalf("record of %d bytes is not padded to 8", len(b))
		}
		var rec recorder
		var d Decoder
		if err := d.Decode(b, &rec); err != nil {
			t.Fatal(err)
		}
		if len(rec.data) != 1 {
			t.Fatalf("%d chunks decoded, want 1", len(rec.data))
		}
		if got := rec.data[0]; !reflect.DeepEqual(got, want) {
			t.Fatalf("decoded\n%+v\nwant\n%+v", got, want)
		}
	}
}

// TestDecoderFollowsACommChange: the decoder reuses the process name it
// decoded last for a thread, and a thread that renames itself (prctl
// PR_SET_NAME, exec) gets the new name on its next record.
func TestDecoderFollowsACommChange(t *testing.T) {
	var d Decoder
	var rec recorder
	for _, comm := range []string{"wrk", "wrk", "nginx", "nginx", "a-fifteen-char!"} {
		e := event.Data{Conn: 1, Proc: event.Process{TGID: 1, TID: 1 + commCacheSize}, Size: 1, Payload: []byte{'x'}}
		e.Proc.Comm = comm
		if err := d.Decode(AppendDataRecord(nil, e), &rec); err != nil {
			t.Fatal(err)
		}
		if got := rec.data[len(rec.data)-1].Proc.Comm; got != comm {
			t.Fatalf("comm %q decoded as %q", comm, got)
		}
	}
}

// BenchmarkDecodeData is the reader's decode of one data chunk carrying a
// syscall's kernel metrics, as the ring buffer hands it over.
func BenchmarkDecodeData(b *testing.B) {
	raw := AppendDataRecord(nil, event.Data{
		Conn: 7, Proc: event.Process{TGID: 10, TID: 11, Comm: "nginx"}, Direction: event.Egress,
		Syscall: event.SysWritev, Size: 5, Payload: []byte("hello"),
		Send: &event.SendMetrics{Measured: event.MetricPackets, Packets: 1, PacketBytes: 71},
	})
	var d Decoder
	var sink nopSink
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Decode(raw, &sink); err != nil {
			b.Fatal(err)
		}
	}
}

type nopSink struct{ n int }

func (s *nopSink) ConnOpen(event.ConnOpen)     {}
func (s *nopSink) ConnClose(event.ConnClose)   {}
func (s *nopSink) Data(event.Data)             { s.n++ }
func (s *nopSink) Retransmit(event.Retransmit) {}
