// Package floor loads the capture floor (bpf/c/floor.bpf.c): the least
// any payload capture at the socket tracepoints must do on this kernel --
// an exact namespace gate, the user buffer from the syscall's registers,
// the payload read into a ring buffer record reserved in place, submit --
// and empty programs on the same hooks (the dispatch floor). It is test
// equipment for `make bench` (tests/bench), which runs it beside
// weir-daemon under the same load and compares the programs' run times;
// Weir itself never loads it.
package floor

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
)

// Role says what a floor program stands for.
type Role int

const (
	// Capture is floor_send/floor_recv: gate, buffer, copy, ring.
	Capture Role = iota
	// EmptySock is an empty program on sock_{send,recv}_length.
	EmptySock
	// EmptyPacket is an empty program on a per-packet hook
	// (net_dev_queue, netif_receive_skb).
	EmptyPacket
)

// pollInterval is how long the reader sleeps when the ring is empty: the
// programs never wake it (BPF_RB_NO_WAKEUP, as Weir's do). 16 MiB of ring
// holds far more than 5 ms of the bench's traffic.
const pollInterval = 5 * time.Millisecond

// dirCounts is what the reader drained of one direction.
type dirCounts struct {
	records, len, copied, sum atomic.Uint64
}

// Counts is what the reader drained of one direction: records, the bytes
// the ops moved, the bytes copied, and the sum of the copied bytes' values
// (a cheap check that the payload is the one the test sent).
type Counts struct {
	Records, Len, Copied, ByteSum uint64
}

// headerSize is struct floor_record's size: sk, tid, dir, len, copied.
const headerSize = int(unsafe.Sizeof(floorFloorRecord{}))

// Set is the floor programs attached, with a goroutine draining their ring.
type Set struct {
	objs  floorObjects
	links []link.Link
	rd    *ringbuf.Reader
	roles map[ebpf.ProgramID]Role

	dirs      [2]dirCounts // send, receive
	malformed atomic.Uint64
	closed    bool
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	readErr   error
}

// Load loads and attaches the floor programs, gated on the network
// namespaces with the given inodes, and starts draining the ring. Close
// detaches them.
func Load(netns []uint64) (s *Set, err error) {
	s = &Set{roles: map[ebpf.ProgramID]Role{}}
	if err := loadFloorObjects(&s.objs, nil); err != nil {
		return nil, fmt.Errorf("load floor programs: %w", err)
	}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	one := uint8(1)
	for _, ino := range netns {
		if err := s.objs.FloorNetns.Put(ino, one); err != nil {
			return nil, fmt.Errorf("enroll netns %d in the floor's gate: %w", ino, err)
		}
	}
	for _, p := range []struct {
		prog *ebpf.Program
		role Role
	}{
		{s.objs.FloorSend, Capture}, {s.objs.FloorRecv, Capture},
		{s.objs.EmptySend, EmptySock}, {s.objs.EmptyRecv, EmptySock},
		{s.objs.EmptyDevQueue, EmptyPacket}, {s.objs.EmptyNetifRcv, EmptyPacket},
	} {
		info, err := p.prog.Info()
		if err != nil {
			return nil, fmt.Errorf("floor program info: %w", err)
		}
		id, ok := info.ID()
		if !ok {
			return nil, errors.New("floor program info: kernel gave no program id")
		}
		s.roles[id] = p.role
		l, err := link.AttachTracing(link.TracingOptions{Program: p.prog, AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			return nil, fmt.Errorf("attach floor program %s: %w", info.Name, err)
		}
		s.links = append(s.links, l)
	}
	if s.rd, err = ringbuf.NewReader(s.objs.FloorRing); err != nil {
		return nil, fmt.Errorf("floor ring reader: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(1)
	go s.drain(ctx)
	return s, nil
}

// drain reads records until ctx ends, counting them: the ring must never
// fill, or the floor would measure failed reservations.
func (s *Set) drain(ctx context.Context) {
	defer s.wg.Done()
	s.rd.SetDeadline(time.Unix(0, 1)) // never block in epoll: nothing wakes it
	var rec ringbuf.Record
	for {
		err := s.rd.ReadInto(&rec)
		switch {
		case err == nil:
			s.count(rec.RawSample)
		case errors.Is(err, os.ErrDeadlineExceeded):
			if s.rd.AvailableBytes() > 0 {
				continue
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(pollInterval):
			}
		case errors.Is(err, ringbuf.ErrClosed):
			return
		default:
			s.readErr = fmt.Errorf("read floor ring: %w", err)
			return
		}
	}
}

// count adds one record to its direction's counts; a malformed record
// (shorter than its header says) counts as a read error.
func (s *Set) count(b []byte) {
	if len(b) < headerSize {
		s.malformed.Add(1)
		return
	}
	dir := binary.NativeEndian.Uint32(b[12:])
	n := binary.NativeEndian.Uint32(b[16:])
	copied := binary.NativeEndian.Uint32(b[20:])
	if dir > 1 || int(copied) > len(b)-headerSize {
		s.malformed.Add(1)
		return
	}
	c := &s.dirs[dir]
	c.records.Add(1)
	c.len.Add(uint64(n))
	c.copied.Add(uint64(copied))
	var sum uint64
	for _, v := range b[headerSize : headerSize+int(copied)] {
		sum += uint64(v)
	}
	c.sum.Add(sum)
}

// Roles maps each floor program's id to what it stands for, so run-time
// statistics of every loaded program can be told apart from Weir's.
func (s *Set) Roles() map[ebpf.ProgramID]Role { return s.roles }

// Sent and Received are what the reader has drained so far.
func (s *Set) Sent() Counts     { return s.dirs[0].load() }
func (s *Set) Received() Counts { return s.dirs[1].load() }

// Records is how many records the reader has drained so far, both ways.
func (s *Set) Records() uint64 { return s.dirs[0].records.Load() + s.dirs[1].records.Load() }

// Malformed is how many records were shorter than their header said.
func (s *Set) Malformed() uint64 { return s.malformed.Load() }

func (c *dirCounts) load() Counts {
	return Counts{Records: c.records.Load(), Len: c.len.Load(), Copied: c.copied.Load(), ByteSum: c.sum.Load()}
}

// Lost is how many records the programs could not reserve (ring full).
func (s *Set) Lost() (uint64, error) {
	var per []uint64
	if err := s.objs.FloorLost.Lookup(uint32(0), &per); err != nil {
		return 0, fmt.Errorf("read floor_lost: %w", err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}

// Close detaches the programs, stops the reader and frees everything; it
// returns the reader's error, if it failed. A second Close does nothing.
func (s *Set) Close() error {
	s.close()
	return s.readErr
}

func (s *Set) close() {
	if s.closed {
		return
	}
	s.closed = true
	for _, l := range s.links {
		l.Close()
	}
	s.links = nil
	if s.cancel != nil {
		s.cancel()
		s.wg.Wait()
		s.cancel = nil
	}
	if s.rd != nil {
		s.rd.Close()
		s.rd = nil
	}
	s.objs.Close()
}
