package bpf

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// packetHooks are the hooks that run for every packet (or every TCP send or
// skb copy) of the node and only feed the per-operation metrics of
// enrolled pods. Each returns at its gate for traffic of sockets that are
// not enrolled, but a tracepoint with a program attached costs every
// packet the program's invocation, so they are attached only while at
// least one network namespace is enrolled: a node with nothing enrolled
// runs none of them.
var packetHooks = map[string]bool{
	"tp_btf/tcp_sendmsg_locked":      true,
	"tp_btf/net_dev_queue":           true,
	"tp_btf/net_dev_start_xmit":      true,
	"tp_btf/net_dev_xmit":            true,
	"tp_btf/netif_receive_skb":       true,
	"tp_btf/tcp_probe":               true,
	"tp_btf/skb_copy_datagram_iovec": true,
}

// packetLinks attaches the packet hooks on the first enrollment and
// detaches them when the last namespace is unenrolled. mu is held across
// the enrolled_netns update and the attach or detach, so an enrollment
// racing the last unenrollment cannot be left without the hooks.
type packetLinks struct {
	mu    sync.Mutex
	hooks []hook
	progs []*ebpf.Program
	links []link.Link // nil while detached
}

// attachLocked attaches every packet hook if they are not attached.
func (p *packetLinks) attachLocked() error {
	if p.links != nil || len(p.hooks) == 0 {
		return nil
	}
	links := make([]link.Link, 0, len(p.hooks))
	for i, h := range p.hooks {
		l, err := h.attach(p.progs[i])
		if err != nil {
			closeLinks(links)
			return fmt.Errorf("attach per-packet hooks: %w", err)
		}
		links = append(links, l)
	}
	p.links = links
	return nil
}

// detachLocked detaches the packet hooks if they are attached.
func (p *packetLinks) detachLocked() error {
	err := closeLinks(p.links)
	p.links = nil
	return err
}

// closeLinks closes links at once rather than in turn: detaching a
// tracepoint waits for an RCU grace period (tens of milliseconds).
func closeLinks(links []link.Link) error {
	errs := make([]error, len(links))
	var wg sync.WaitGroup
	for i, l := range links {
		wg.Go(func() {
			if err := l.Close(); err != nil {
				errs[i] = fmt.Errorf("detach: %w", err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
