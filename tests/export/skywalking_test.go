package export

import (
	"fmt"
	"strings"
	"testing"

	commonv3 "skywalking.apache.org/repo/goapi/collect/common/v3"
	alv3 "skywalking.apache.org/repo/goapi/collect/ebpf/accesslog/v3"
)

// item is one message's logs with the connection they belong to: the last
// connection message before them in their stream.
type item struct {
	generation int
	conn       *alv3.AccessLogConnection
	kernel     []*alv3.AccessLogKernelLog
	http       *alv3.AccessLogHTTPProtocol // nil for kernel logs alone
}

// flatten walks acknowledged streams in order and checks the protocol's
// framing on the way: node info (name, cluster, boot time) on the first
// message of every stream and on no other, and a connection message before
// any log. It returns the logs and the framing problems found.
func flatten(node string, streams []stream) ([]item, []string) {
	var items []item
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	for si, s := range streams {
		if len(s.msgs) == 0 {
			fail("stream %d is empty", si)
			continue
		}
		n := s.msgs[0].GetNode()
		switch {
		case n == nil:
			fail("stream %d: first message has no node info", si)
		case n.GetName() != node || n.GetClusterName() != cluster:
			fail("stream %d: node info name %q cluster %q, want %q and %q", si, n.GetName(), n.GetClusterName(), node, cluster)
		case n.GetBootTime().GetSeconds() <= 0:
			fail("stream %d: node info boot time %v, want a real time", si, n.GetBootTime())
		}
		for mi, m := range s.msgs[1:] {
			if m.GetNode() != nil {
				fail("stream %d message %d: node info again after the first message", si, mi+1)
			}
		}
		var conn *alv3.AccessLogConnection
		for mi, m := range s.msgs {
			if c := m.GetConnection(); c != nil {
				conn = c
			}
			if len(m.GetKernelLogs()) == 0 && m.GetProtocolLog() == nil {
				fail("stream %d message %d carries no log", si, mi)
				continue
			}
			if conn == nil {
				fail("stream %d message %d: logs before any connection message", si, mi)
				continue
			}
			items = append(items, item{generation: s.generation, conn: conn, kernel: m.GetKernelLogs(), http: m.GetProtocolLog().GetHttp()})
		}
	}
	return items, problems
}

// mustFlatten is flatten failing t on framing problems (the first ten).
func mustFlatten(t *testing.T, node string, streams []stream) []item {
	t.Helper()
	items, problems := flatten(node, streams)
	for i, p := range problems {
		if i == 10 {
			t.Errorf("... and %d more framing problems", len(problems)-10)
			break
		}
		t.Error(p)
	}
	return items
}

func localPod(c *alv3.AccessLogConnection) string {
	return c.GetLocal().GetKubernetes().GetPodName()
}

func role(c *alv3.AccessLogConnection) string {
	switch c.GetRole() {
	case commonv3.DetectPoint_client:
		return "client"
	case commonv3.DetectPoint_server:
		return "server"
	}
	return c.GetRole().String()
}

// exchangeKey names one HTTP protocol log: the side that captured it and
// the request's path, unique per request in this suite.
type exchangeKey struct {
	pod, role, path string
}

// exchanges indexes the HTTP protocol logs of items by pod, role and path.
func exchanges(items []item) map[exchangeKey][]item {
	out := map[exchangeKey][]item{}
	for _, it := range items {
		if it.http == nil {
			continue
		}
		k := exchangeKey{localPod(it.conn), role(it.conn), it.http.GetRequest().GetPath()}
		out[k] = append(out[k], it)
	}
	return out
}

// opCounts counts connect, accept and close operations per pod and role.
type opCounts struct{ connect, accept, close int }

func kernelOps(items []item, pod, side string) opCounts {
	var n opCounts
	for _, it := range items {
		if localPod(it.conn) != pod || role(it.conn) != side {
			continue
		}
		for _, k := range it.kernel {
			switch {
			case k.GetConnect() != nil:
				n.connect++
			case k.GetAccept() != nil:
				n.accept++
			case k.GetClose() != nil:
				n.close++
			}
		}
	}
	return n
}

// offset reads an offset timestamp; ok is false for any other form.
func offset(ts *alv3.EBPFTimestamp) (uint64, bool) {
	o := ts.GetOffset()
	if o == nil {
		return 0, false
	}
	return o.GetOffset(), true
}

// checkSpan asserts a kernel log's start and end are offsets, start <= end.
func checkSpan(what string, start, end *alv3.EBPFTimestamp) error {
	s, ok1 := offset(start)
	e, ok2 := offset(end)
	switch {
	case !ok1 || !ok2:
		return fmt.Errorf("%s: timestamps %v..%v are not offsets since boot", what, start, end)
	case s == 0 || s > e:
		return fmt.Errorf("%s: start %d end %d, want 0 < start <= end", what, s, e)
	}
	return nil
}

// kernelSpan returns a kernel log's name and its check.
func kernelSpan(k *alv3.AccessLogKernelLog) (string, error) {
	switch {
	case k.GetConnect() != nil:
		return "connect", checkSpan("connect", k.GetConnect().GetStartTime(), k.GetConnect().GetEndTime())
	case k.GetAccept() != nil:
		return "accept", checkSpan("accept", k.GetAccept().GetStartTime(), k.GetAccept().GetEndTime())
	case k.GetClose() != nil:
		return "close", checkSpan("close", k.GetClose().GetStartTime(), k.GetClose().GetEndTime())
	case k.GetRead() != nil:
		return "read", checkSpan("read", k.GetRead().GetStartTime(), k.GetRead().GetEndTime())
	case k.GetWrite() != nil:
		return "write", checkSpan("write", k.GetWrite().GetStartTime(), k.GetWrite().GetEndTime())
	}
	return "unknown", fmt.Errorf("kernel log with no operation")
}

// k8sAddr checks a KubernetesProcessAddress's pod, service and, when port
// is non-zero, port.
func k8sAddr(what string, a *alv3.ConnectionAddress, pod, service string, port int) error {
	k := a.GetKubernetes()
	if k == nil {
		return fmt.Errorf("%s address %v, want a KubernetesProcessAddress for pod %s", what, a, pod)
	}
	var p []string
	if k.GetPodName() != pod {
		p = append(p, fmt.Sprintf("pod %q, want %q", k.GetPodName(), pod))
	}
	if k.GetServiceName() != service {
		p = append(p, fmt.Sprintf("service %q, want %q", k.GetServiceName(), service))
	}
	if port != 0 && int(k.GetPort()) != port {
		p = append(p, fmt.Sprintf("port %d, want %d", k.GetPort(), port))
	}
	if len(p) > 0 {
		return fmt.Errorf("%s address: %s", what, strings.Join(p, ", "))
	}
	return nil
}

// metricSums sums, over read and write kernel logs, the fields that show
// each kernel metric (names as in GET /api/v1/features) was measured.
type metricSums map[string]uint64

func (m metricSums) add(k *alv3.AccessLogKernelLog) {
	if w := k.GetWrite(); w != nil {
		m["l4_duration"] += w.GetL4Metrics().GetTotalDuration()
		m["packets"] += uint64(w.GetL4Metrics().GetTotalTransmitPackageCount())
		m["retransmits"] += uint64(w.GetL4Metrics().GetTotalRetransmitPackageCount())
		m["drops"] += uint64(len(w.GetL4Metrics().GetLossPackageMetrics()))
		m["l3_duration"] += w.GetL3Metrics().GetTotalDuration()
		m["l3_split"] += w.GetL3Metrics().GetTotalLocalDuration() + w.GetL3Metrics().GetTotalOutputDuration()
		m["netfilter"] += w.GetL3Metrics().GetTotalNetFilterCount()
		m["resolve_mac"] += w.GetL3Metrics().GetTotalResolveMACCount()
		m["l2_duration"] += w.GetL2Metrics().GetTotalDuration()
		m["l2_queue"] += w.GetL2Metrics().GetTotalEnterQueueBufferCount()
		m["write_l4_nonzero"] += b2u(w.GetL4Metrics().GetTotalDuration() > 0)
		m["writes"]++
	}
	if r := k.GetRead(); r != nil {
		m["l4_duration"] += r.GetL4Metrics().GetTotalDuration()
		m["packets"] += uint64(r.GetL2Metrics().GetTotalPackageCount())
		m["l3_duration"] += r.GetL3Metrics().GetTotalDuration()
		m["l3_split"] += r.GetL3Metrics().GetTotalRecvDuration() + r.GetL3Metrics().GetTotalLocalDuration()
		m["netfilter"] += r.GetL3Metrics().GetTotalNetFilterCount()
		m["recv_queue"] += r.GetL2Metrics().GetTotalPackageToQueueDuration() + r.GetL2Metrics().GetTotalRcvPackageFromQueueDuration()
		m["read_l4_nonzero"] += b2u(r.GetL4Metrics().GetTotalDuration() > 0)
		m["reads"]++
	}
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// packetsMeasured checks, when the node measures packets, that a write
// reports the segments it transmitted (L4) and a read the packets it
// consumed (L2): a data syscall between two pods moves at least one.
func packetsMeasured(k *alv3.AccessLogKernelLog, measured bool) error {
	if !measured {
		return nil
	}
	if w := k.GetWrite(); w != nil {
		if l4 := w.GetL4Metrics(); l4.GetTotalTransmitPackageCount() < 1 || l4.GetTotalPackageSize() <= 0 {
			return fmt.Errorf("write kernel log with L4 metrics %v, want transmitted packets and their size", l4)
		}
	}
	if r := k.GetRead(); r != nil {
		if l2 := r.GetL2Metrics(); l2.GetTotalPackageCount() < 1 || l2.GetTotalPackageSize() <= 0 {
			return fmt.Errorf("read kernel log with L2 metrics %v, want received packets and their size", l2)
		}
	}
	return nil
}
