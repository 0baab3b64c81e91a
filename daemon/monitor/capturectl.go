package monitor

import (
	"github.com/weirnet/weir/bpf"
	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/capture"
	"github.com/weirnet/weir/daemon/protocol"
)

// captureController is the part of the kernel side through which the
// parsers steer what is copied out of the kernel: "this connection is
// HTTP/1" (copy heads whole, no HTTP/2 frame walking) and "these stream
// bytes are body counted by length" (send them size-only). The Monitor finds it on its Collector by type
// assertion, so a collector without it (a fake in tests, capture disabled)
// simply gets no hints.
type captureController interface {
	HintHTTP1(id event.ConnID) error
	SkipBody(id event.ConnID, dir event.Direction, from, to uint64) error
}

// The eBPF collector is one.
var _ captureController = (*bpf.Collector)(nil)

// connControl is a protocol.CaptureControl for one connection.
type connControl struct {
	ctl captureController
	id  event.ConnID
}

func (c connControl) HTTP1() error { return c.ctl.HintHTTP1(c.id) }

func (c connControl) SkipBody(dir event.Direction, from, to uint64) error {
	return c.ctl.SkipBody(c.id, dir, from, to)
}

// parserOptions are the options of the protocol parser of connection c:
// the limits, whether its start was seen (else the parser proves where
// messages start before it reports any), and the capture control when the
// kernel side offers one.
func (p *pipeline) parserOptions(c *capture.Conn) []protocol.Option {
	opts := []protocol.Option{protocol.WithLimits(p.limits), protocol.WithStartSeen(c.OpenSeen())}
	if p.ctl != nil {
		opts = append(opts, protocol.WithCaptureControl(connControl{ctl: p.ctl, id: c.ID}, 0))
	}
	if p.reuse {
		// record copies each record into its pending exchange.
		opts = append(opts, protocol.WithSinkCopies())
	}
	return opts
}
