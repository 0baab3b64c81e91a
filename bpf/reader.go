package bpf

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/weirnet/weir/bpf/event"
)

// Sizes of the fixed parts of ring buffer records, from the generated
// mirrors of the C structs (layout_test.go checks them against the BTF).
const (
	connEventSize    = int(unsafe.Sizeof(captureConnEvent{}))
	dataEventSize    = int(unsafe.Sizeof(captureDataEvent{}))
	processEventSize = int(unsafe.Sizeof(captureProcessEvent{}))
	retransEventSize = int(unsafe.Sizeof(captureRetransmitEvent{}))
)

const afInet = 2

// readerStats counts what happened in user space, next to the kernel's
// Counters.
type readerStats struct {
	records      atomic.Uint64
	drains       atomic.Uint64
	decodeErrors atomic.Uint64
	scanDropped  atomic.Uint64
	parks        atomic.Uint64
}

// ReaderStats are user-space counters of the collector.
type ReaderStats struct {
	Records uint64 // ring buffer records read
	// Drains counts the times Run read the ring until it was empty, after
	// at least one record: Records/Drains is the mean burst the reader
	// handles per wakeup (Config.PollInterval sets how often it wakes).
	Drains uint64
	// Parks counts the times Run found the ring still empty after a
	// whole poll interval and waited for the kernel's wakeup instead of
	// its timer: an idle node's reader wakes once per Park, not per
	// interval.
	Parks        uint64
	DecodeErrors uint64 // records that were malformed or of unknown type
	ScanDropped  uint64 // processes found by Enroll's scan that did not fit the queue
	HintFailures uint64 // HintHTTP1/SkipBody/ForgetHint calls that failed
	// RingBufferUsed is how many bytes wait in the ring buffer to be read
	// now, out of RingBufferSize: a reader falling behind shows here
	// before the kernel side starts dropping.
	RingBufferUsed, RingBufferSize int
}

// ReaderStats returns the user-space counters.
func (c *Collector) ReaderStats() ReaderStats {
	return ReaderStats{
		Records:      c.stats.records.Load(),
		Drains:       c.stats.drains.Load(),
		Parks:        c.stats.parks.Load(),
		DecodeErrors: c.stats.decodeErrors.Load(),
		ScanDropped:  c.stats.scanDropped.Load(),
		HintFailures: c.hints.failures.Load(),

		RingBufferUsed: c.reader.AvailableBytes(),
		RingBufferSize: c.reader.BufferSize(),
	}
}

// Run reads the ring buffer and hands every decoded record to sink, in
// ring buffer order, until ctx is done (then it returns nil) or the
// collector is closed (ErrClosed). Processes found by Enroll's scan are
// delivered from here too, to sinks that implement event.ProcessSink. Only one
// Run may be active at a time.
//
// The kernel side never waits for Run: a slow sink makes the ring buffer
// fill and the kernel count "ringbuf_full" drops, which show up in the
// events as Seq gaps.
func (c *Collector) Run(ctx context.Context, sink event.Sink) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("bpf: Run is already active on this collector")
	}
	defer c.running.Store(false)
	ps, _ := sink.(event.ProcessSink)

	// The kernel side wakes the reader only for the first record written
	// into an empty ring (RB_FLAGS in capture.bpf.c), and only a parked
	// reader listens. With a deadline in the past ReadInto never blocks in
	// epoll: it returns the records that wait and then
	// os.ErrDeadlineExceeded. A busy ring is then read every poll interval
	// on a Go timer, its records batched; a ring that stayed empty for a
	// whole interval parks Run in the network poller (ringParker) until
	// the kernel's wakeup, so an idle node costs no timer wakeups.
	// Blocking in epoll_wait instead held a thread in a syscall and kept
	// the runtime's sysmon waking every few microseconds to look at it.
	c.reader.SetDeadline(time.Unix(0, 1))
	tick := time.NewTicker(c.cfg.PollInterval)
	defer tick.Stop()
	if c.parker != nil {
		defer context.AfterFunc(ctx, c.parker.interrupt)()
	}
	var rec ringbuf.Record
	dec := decoder{reasons: c.dropReasons, borrow: borrowsMetrics(sink)}
	drained := 0   // records read since the ring was last empty
	quiet := false // the last sleep ended with the ring still empty
	for {
		c.deliverProcesses(ps)
		err := c.reader.ReadInto(&rec)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Every drain ends here, so a ring that never empties
			// (saturation) still lets Run see ctx end.
			if ctx.Err() != nil {
				return nil
			}
			if c.reader.AvailableBytes() > 0 {
				continue // written while we drained
			}
			if drained > 0 {
				c.stats.drains.Add(1)
				drained, quiet = 0, false
			} else if quiet && c.parker != nil {
				c.stats.parks.Add(1)
				err := c.parker.park(func() bool { return c.reader.AvailableBytes() > 0 || len(c.processes) > 0 })
				if errors.Is(err, os.ErrClosed) {
					return ErrClosed
				}
				if err != nil {
					return err
				}
				continue
			}
			quiet = true
			select {
			case <-ctx.Done():
				return nil
			case <-c.wake:
			case <-tick.C:
			}
		case err == nil:
			c.stats.records.Add(1)
			drained++
			if err := dec.decode(rec.RawSample, sink, ps); err != nil {
				c.stats.decodeErrors.Add(1)
				c.log.Debug("skipping ring buffer record", "error", err)
			}
		case errors.Is(err, ringbuf.ErrClosed):
			return ErrClosed
		default:
			return fmt.Errorf("read ring buffer: %w", err)
		}
	}
}

func (c *Collector) deliverProcesses(ps event.ProcessSink) {
	for {
		select {
		case p := <-c.processes:
			if ps != nil {
				ps.Process(p)
			}
		default:
			return
		}
	}
}

// record reinterprets the start of b as a T. The ring buffer hands out
// 8-byte aligned samples and the generated T has exactly the C layout, so
// this is a copy of what the kernel wrote, without reflection: the decoder
// runs once per captured chunk and must stay cheap.
func record[T any](b []byte) T {
	return *view[T](b)
}

// view is record without the copy, for the data record: its header with
// both directions' metrics is a few hundred bytes, and the decoder reads
// only some of them (the metrics only on a syscall's last chunk). The
// caller must be done with the view before b's memory is reused, as it is
// with the payload it slices from b.
func view[T any](b []byte) *T {
	return (*T)(unsafe.Pointer(unsafe.SliceData(b)))
}

// decode turns one ring buffer record into a call on sink; reasons names
// the kernel's drop reasons (nil gives numeric names).
func decode(b []byte, sink event.Sink, ps event.ProcessSink, reasons dropReasons) error {
	d := decoder{reasons: reasons, borrow: borrowsMetrics(sink)}
	return d.decode(b, sink, ps)
}

// decoder is the reader's decoding state: the names of the kernel's drop
// reasons and a cache of the process names it decoded last, so that a
// record costs no allocation for its comm (a process name changes rarely,
// and a thread's records come in runs).
type decoder struct {
	reasons dropReasons
	comms   [commCacheSize]commEntry
	// sends and recvs hold the kernel metrics not handed out yet of the
	// block allocated last (see newSend).
	sends []event.SendMetrics
	recvs []event.RecvMetrics
	// borrow says the sink borrows metrics (event.MetricsBorrower): every
	// event's are decoded into send and recv.
	borrow bool
	send   event.SendMetrics
	recv   event.RecvMetrics
}

// borrowsMetrics says sink keeps no metrics pointer past its Data call.
func borrowsMetrics(sink event.Sink) bool {
	b, ok := sink.(event.MetricsBorrower)
	return ok && b.BorrowsMetrics()
}

// metricsPerBlock is how many syscalls' kernel metrics the decoder
// allocates at once: the last chunk of every syscall carries them, and
// one allocation per block rather than per syscall spares most of the
// decode's allocations. A consumer that keeps one keeps its block alive
// (5 KiB of sends, 3 KiB of receives).
const metricsPerBlock = 32

func (d *decoder) newSend() *event.SendMetrics {
	if d.borrow {
		return &d.send
	}
	if len(d.sends) == 0 {
		d.sends = make([]event.SendMetrics, metricsPerBlock)
	}
	m := &d.sends[0]
	d.sends = d.sends[1:]
	return m
}

func (d *decoder) newRecv() *event.RecvMetrics {
	if d.borrow {
		return &d.recv
	}
	if len(d.recvs) == 0 {
		d.recvs = make([]event.RecvMetrics, metricsPerBlock)
	}
	m := &d.recvs[0]
	d.recvs = d.recvs[1:]
	return m
}

// commCacheSize is how many process names the decoder remembers, by thread
// id: a miss only costs the allocation of the name's string.
const commCacheSize = 64

type commEntry struct {
	raw [16]int8
	s   string
}

// comm returns p's process name, from the cache when the thread's last
// name was the same.
func (d *decoder) comm(p *captureProcInfo) string {
	e := &d.comms[p.Tid%commCacheSize]
	if e.raw != p.Comm || e.s == "" {
		e.raw, e.s = p.Comm, cString(p.Comm[:])
	}
	return e.s
}

func (d *decoder) process(p *captureProcInfo) event.Process {
	return event.Process{
		TGID:     p.Tgid,
		TID:      p.Tid,
		Comm:     d.comm(p),
		CgroupID: p.CgroupId,
		PodID:    p.PodId,
		NetnsIno: p.Netns,
	}
}

// decode turns one ring buffer record into a call on sink (process
// records on ps, if not nil).
func (dec *decoder) decode(b []byte, sink event.Sink, ps event.ProcessSink) error {
	reasons := dec.reasons
	if len(b) == 0 {
		return errors.New("empty record")
	}
	switch captureEventType(b[0]) {
	case captureEventTypeEVENT_DATA:
		if len(b) < dataEventSize {
			return fmt.Errorf("data record of %d bytes, want at least %d", len(b), dataEventSize)
		}
		h := view[captureDataEvent](b)
		payload := b[dataEventSize:]
		if int(h.Captured) > len(payload) || h.Captured > h.Size {
			return fmt.Errorf("data record claims %d captured of %d bytes, carries %d", h.Captured, h.Size, len(payload))
		}
		if int(h.Skip) >= event.NumSkipReasons || (h.Skip != 0) != (h.Captured < h.Size) {
			return fmt.Errorf("data record with %d of %d bytes captured has skip reason %d", h.Captured, h.Size, h.Skip)
		}
		d := event.Data{
			Conn:         event.ConnID(h.ConnId),
			Proc:         dec.process(&h.Proc),
			FD:           h.Fd,
			Direction:    event.Direction(h.Direction),
			Syscall:      event.Syscall(h.Syscall),
			Seq:          h.Seq,
			StreamOffset: h.Offset,
			Size:         h.Size,
			Payload:      payload[:h.Captured:h.Captured],
			Truncated:    h.Truncated != 0,
			Skip:         event.SkipReason(h.Skip),
			Start:        event.Timestamp(h.StartNs),
			End:          event.Timestamp(h.EndNs),
			Last:         h.Last != 0,
		}
		switch {
		case h.Last == 0:
		case d.Direction == event.Egress && h.Send.Measured != 0:
			d.Send = reasons.sendMetrics(dec.newSend(), &h.Send)
		case d.Direction == event.Ingress && h.Recv.Measured != 0:
			d.Recv = recvMetrics(dec.newRecv(), &h.Recv)
		}
		sink.Data(d)
	case captureEventTypeEVENT_CONN_OPEN:
		if len(b) < connEventSize {
			return fmt.Errorf("conn record of %d bytes, want %d", len(b), connEventSize)
		}
		e := record[captureConnEvent](b)
		sink.ConnOpen(event.ConnOpen{
			Conn:       event.ConnID(e.ConnId),
			Proc:       dec.process(&e.Proc),
			FD:         e.Fd,
			Role:       event.Role(e.Role),
			Local:      addrPort(e.Family, e.Laddr, e.Lport),
			Remote:     addrPort(e.Family, e.Raddr, e.Rport),
			Syscall:    event.Syscall(e.Syscall),
			Start:      event.Timestamp(e.StartNs),
			End:        event.Timestamp(e.EndNs),
			Success:    e.Success != 0,
			InProgress: e.InProgress != 0,
			Errno:      e.Err,
		})
	case captureEventTypeEVENT_CONN_CLOSE:
		if len(b) < connEventSize {
			return fmt.Errorf("conn record of %d bytes, want %d", len(b), connEventSize)
		}
		e := record[captureConnEvent](b)
		sink.ConnClose(event.ConnClose{
			Conn:      event.ConnID(e.ConnId),
			Proc:      dec.process(&e.Proc),
			FD:        e.Fd,
			Start:     event.Timestamp(e.StartNs),
			End:       event.Timestamp(e.EndNs),
			Success:   e.Success != 0,
			BytesSent: e.BytesSent,
			BytesRecv: e.BytesRecv,
			Socket:    reasons.socketStats(&e.Stats),
		})
	case captureEventTypeEVENT_RETRANSMIT:
		if len(b) < retransEventSize {
			return fmt.Errorf("retransmit record of %d bytes, want %d", len(b), retransEventSize)
		}
		e := record[captureRetransmitEvent](b)
		sink.Retransmit(event.Retransmit{Conn: event.ConnID(e.ConnId), Segments: e.Segs, State: e.State, Time: event.Timestamp(e.Ts)})
	case captureEventTypeEVENT_PROC_FORK, captureEventTypeEVENT_PROC_EXEC, captureEventTypeEVENT_PROC_EXIT:
		if len(b) < processEventSize {
			return fmt.Errorf("process record of %d bytes, want %d", len(b), processEventSize)
		}
		if ps == nil {
			return nil
		}
		e := record[captureProcessEvent](b)
		kind := event.ProcessExit
		switch captureEventType(e.Type) {
		case captureEventTypeEVENT_PROC_FORK:
			kind = event.ProcessFork
		case captureEventTypeEVENT_PROC_EXEC:
			kind = event.ProcessExec
		}
		ps.Process(event.ProcessEvent{
			Kind:     kind,
			Proc:     dec.process(&e.Proc),
			PPID:     e.Ppid,
			Filename: cString(e.Filename[:]),
			ExitCode: e.ExitCode,
			Time:     event.Timestamp(e.Ts),
		})
	default:
		return fmt.Errorf("unknown record type %d", b[0])
	}
	return nil
}

// addrPort decodes a sock_common address; IPv4-mapped IPv6 addresses (a
// dual-stack socket talking IPv4) are reported as IPv4.
func addrPort(family uint16, a [16]uint8, port uint16) netip.AddrPort {
	if family == afInet {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[:4])), port)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(a).Unmap(), port)
}

func cString[T int8 | uint8](b []T) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}

// Decoder decodes ring buffer records as Collector.Run does, for records
// that did not come from a Collector: a benchmark or a test replaying the
// bytes the kernel side writes (see AppendDataRecord). Its zero value is
// ready and names the kernel's drop reasons by number.
type Decoder struct {
	d decoder
}

// Decode hands the one record in raw to sink; a process record is skipped.
// raw must be 8-byte aligned, as the ring buffer's samples are.
func (d *Decoder) Decode(raw []byte, sink event.Sink) error {
	d.d.borrow = borrowsMetrics(sink)
	return d.d.decode(raw, sink, nil)
}

// AppendDataRecord appends to b the ring buffer record the kernel side
// writes for the chunk e, padded to 8 bytes as the ring buffer pads it, and
// returns the extended buffer: the inverse of decoding, for replaying
// captured traffic through the reader's decode. The record is marked last
// of its syscall when e.Last is set or e carries metrics (the kernel puts
// them on the last event only). Drops in e's metrics are
// not carried (the kernel reports them by enum value, which names only the
// running kernel's BTF has).
func AppendDataRecord(b []byte, e event.Data) []byte {
	h := captureDataEvent{
		Type:      uint8(captureEventTypeEVENT_DATA),
		Direction: uint8(e.Direction),
		Syscall:   uint8(e.Syscall),
		Fd:        e.FD,
		Skip:      uint8(e.Skip),
		ConnId:    uint64(e.Conn),
		Seq:       e.Seq,
		Offset:    e.StreamOffset,
		Size:      e.Size,
		Captured:  uint32(len(e.Payload)),
		StartNs:   uint64(e.Start),
		EndNs:     uint64(e.End),
		Proc: captureProcInfo{
			Netns: e.Proc.NetnsIno, CgroupId: e.Proc.CgroupID, Tgid: e.Proc.TGID, Tid: e.Proc.TID,
			PodId: e.Proc.PodID,
		},
	}
	if e.Truncated {
		h.Truncated = 1
	}
	if e.Last {
		h.Last = 1
	}
	for i := 0; i < len(h.Proc.Comm)-1 && i < len(e.Proc.Comm); i++ {
		h.Proc.Comm[i] = int8(e.Proc.Comm[i])
	}
	if m := e.Send; m != nil {
		h.Last = 1
		h.Send = captureSendMetrics{
			Measured: uint32(m.Measured), Packets: m.Packets, PacketBytes: m.PacketBytes, Retrans: m.Retransmits,
			Ifindex: m.IfIndex, L4Ns: m.L4Duration, L3Ns: m.L3Duration, NfCount: m.NetfilterCount,
			NfNs: m.NetfilterDuration, ArpCount: m.ResolveMACCount, ArpNs: m.ResolveMACDuration,
			L2Ns: m.L2Duration, ReadyNs: m.ReadySendDuration, DeviceNs: m.DeviceSendDuration,
		}
	}
	if m := e.Recv; m != nil {
		h.Last = 1
		h.Recv = captureRecvMetrics{
			Measured: uint32(m.Measured), Ifindex: m.IfIndex, Packets: m.Packets, PacketBytes: m.PacketBytes,
			ToQueueNs: m.ToQueueDuration, FromQueueNs: m.FromQueueDuration, L3Ns: m.L3Duration,
			L3RecvNs: m.L3RecvDuration, L3LocalNs: m.L3LocalDuration, NfCount: m.NetfilterCount,
			NfNs: m.NetfilterDuration, L4Ns: m.L4Duration,
		}
	}
	b = append(b, unsafe.Slice((*byte)(unsafe.Pointer(&h)), dataEventSize)...)
	b = append(b, e.Payload...)
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	return b
}
