package bpf

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// The richer tiers (c/tier.bpf.c) time functions that no tracepoint
// brackets. Send path: tcp_sendmsg (L4), __ip_queue_xmit (L3),
// nf_hook_slow (netfilter) and neigh_resolve_output (ARP/ND), per syscall.
// Receive path: ip_rcv/ipv6_rcv, ip_local_deliver/ip6_input,
// tcp_v4_rcv/tcp_v6_rcv and nf_hook_slow, per skb, added to the read that
// copies the skb by a tp_btf/skb_copy_datagram_iovec program. The object
// holds each function hook as fentry/fexit and as kprobe/kretprobe; Load
// keeps the set of the best tier the probes found usable (plus the tp_btf
// program, which both need) and loads it with the base collection's
// inflight, enrolled_netns, netns_bits and counters maps. It runs under
// either capture tier: it adds to the syscall tier's in-flight syscall, or
// to the socket tier's op window (which it opens at tcp_sendmsg's entry). The tier is optional: when it
// cannot load or attach, the collector runs the base tier and says why in
// Features.

// tierSections are the section prefixes of each tier's programs.
var tierSections = map[Tier][2]string{
	TierFentry: {"fentry/", "fexit/"},
	TierKprobe: {"kprobe/", "kretprobe/"},
}

// tierCommonSection prefixes the tier programs both tiers load: tracepoints
// the base tier already needs (tp_btf), so nothing beyond it to probe.
const tierCommonSection = "tp_btf/"

// chooseTier picks the richest available tier beyond the base one.
func chooseTier(tiers []TierStatus, skipFentry bool) (Tier, bool) {
	avail := map[Tier]bool{}
	for _, t := range tiers {
		avail[t.Tier] = t.Available
	}
	switch {
	case avail[TierFentry] && !skipFentry:
		return TierFentry, true
	case avail[TierKprobe]:
		return TierKprobe, true
	}
	return TierBase, false
}

// loadRichTier loads and attaches the programs of tier t. Hooks whose
// kernel function is missing are reported unattached; any other failure
// detaches the tier and is returned.
func (c *Collector) loadRichTier(t Tier, kernel *btf.Spec) ([]HookStatus, []link.Link, *ebpf.Collection, error) {
	spec, err := loadTier()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read embedded tier object: %w", err)
	}
	prefixes := tierSections[t]
	var status []HookStatus
	for name, p := range spec.Programs {
		if strings.HasPrefix(p.SectionName, tierCommonSection) {
			continue
		}
		if !strings.HasPrefix(p.SectionName, prefixes[0]) && !strings.HasPrefix(p.SectionName, prefixes[1]) {
			delete(spec.Programs, name)
			continue
		}
		fn := p.SectionName[strings.IndexByte(p.SectionName, '/')+1:]
		var f *btf.Func
		if err := kernel.TypeByName(fn, &f); err != nil {
			delete(spec.Programs, name)
			status = append(status, HookStatus{Name: p.SectionName, Tier: t,
				Reason: fmt.Sprintf("kernel function %s not found in BTF (renamed or inlined): %v", fn, err)})
		}
	}
	if c.features.Capture == CaptureSocket {
		// No syscall in flight: the tier opens and adds to the socket
		// tier's op windows (c/tier.bpf.c, socket_tier).
		if err := spec.Variables[tierVarSocketTier].Set(uint8(1)); err != nil {
			return status, nil, nil, fmt.Errorf("set socket_tier: %w", err)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		MapReplacements: map[string]*ebpf.Map{
			tierMapInflight:      c.coll.Maps[captureMapInflight],
			tierMapEnrolledNetns: c.coll.Maps[captureMapEnrolledNetns],
			tierMapNetnsBits:     c.coll.Maps[captureMapNetnsBits],
			tierMapCounters:      c.coll.Maps[captureMapCounters],
		},
		Programs: ebpf.ProgramOptions{KernelTypes: kernel},
	})
	if err != nil {
		return status, nil, nil, fmt.Errorf("load %s tier programs: %w", t, err)
	}
	var links []link.Link
	for name, p := range spec.Programs {
		fn := p.SectionName[strings.IndexByte(p.SectionName, '/')+1:]
		prog := coll.Programs[name]
		var l link.Link
		switch {
		case strings.HasPrefix(p.SectionName, "fentry/"), strings.HasPrefix(p.SectionName, "fexit/"),
			strings.HasPrefix(p.SectionName, tierCommonSection):
			l, err = link.AttachTracing(link.TracingOptions{Program: prog})
		case strings.HasPrefix(p.SectionName, "kprobe/"):
			l, err = link.Kprobe(fn, prog, nil)
		default:
			l, err = link.Kretprobe(fn, prog, nil)
		}
		if err != nil {
			for _, l := range links {
				l.Close()
			}
			coll.Close()
			return status, nil, nil, fmt.Errorf("attach %s: %w", p.SectionName, err)
		}
		links = append(links, l)
		status = append(status, HookStatus{Name: p.SectionName, Tier: t, Attached: true})
	}
	return status, links, coll, nil
}

// attachRichTier runs after the base tier is attached: it never fails Load.
func (c *Collector) attachRichTier(kernel *btf.Spec) {
	t, ok := chooseTier(c.features.Tiers, c.cfg.SkipFentry)
	if !ok {
		return
	}
	if !c.cfg.RichTier {
		c.features.TierError = fmt.Sprintf("the %s tier attaches here but is off (Config.RichTier; daemon: bpf.richTier)", t)
		return
	}
	status, links, coll, err := c.loadRichTier(t, kernel)
	c.features.Hooks = append(c.features.Hooks, status...)
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			c.log.Warn("richer tier rejected: running the base tier", "tier", t.String(), "error", fmt.Sprintf("%+v", ve))
		} else {
			c.log.Warn("richer tier not loaded: running the base tier", "tier", t.String(), "error", err)
		}
		c.features.TierError = err.Error()
		return
	}
	c.tierColl = coll
	c.links = append(c.links, links...)
	c.features.Tier = t
}
