package identity

import (
	"testing"

	"github.com/weirnet/weir/daemon/registry"
)

func TestOwnerNameStripsControllerSuffixes(t *testing.T) {
	for _, tc := range []struct {
		pod, node, want string
	}{
		// Deployment → ReplicaSet → pod.
		{"checkout-7d4b9c8f6d-x2kq9", "", "checkout"},
		{"payment-api-5f6c7d8b9-qzt4w", "", "payment-api"},
		// DaemonSet, Job, bare ReplicaSet.
		{"weir-x2kq9", "", "weir"},
		{"node-exporter-b7z2m", "", "node-exporter"},
		// CronJob → Job (scheduled minutes) → pod.
		{"nightly-report-29012345-zt4wq", "", "nightly-report"},
		// StatefulSet ordinals.
		{"postgres-0", "", "postgres"},
		{"kafka-broker-12", "", "kafka-broker"},
		// Static pods carry the node name.
		{"kube-apiserver-node-1", "node-1", "kube-apiserver"},
		{"etcd-cp", "cp", "etcd"},
		// Names that only look close stay whole.
		{"web", "", "web"},
		{"web-server", "", "web-server"},         // "server" has vowels: not generated
		{"my-app-v2", "", "my-app-v2"},           // too short for a generated suffix
		{"postgres-01", "", "postgres-01"},       // ordinals have no leading zero
		{"api-abcde-fghjk", "", "api-abcde"},     // "abcde" has vowels: not a hash
		{"cache-4bcdf-x2kq9", "", "cache-4bcdf"}, // hash too short: DaemonSet-style only
		{"node-1", "node-1", "node"},             // the whole name is the node's: a StatefulSet ordinal wins
		{"", "node-1", ""},
		// Cases the monitor's former copy of this rule pinned; both copies
		// agree on them.
		{"web-7d4b9c8f5-x2x9z", "", "web"},
		{"my-api-5c9f8d7b6d-bcdfg", "", "my-api"},
		{"my-api-5c9f8d7b6d-abcde", "", "my-api-5c9f8d7b6d-abcde"}, // 'a' and 'e' are not in the suffix alphabet
		{"db-0", "", "db"},
		{"fluentd-x7k2p", "", "fluentd"},
		{"nginx", "", "nginx"},
		{"hello-world", "", "hello-world"},
		{"a-b", "", "a-b"},
	} {
		if got := OwnerName(tc.pod, tc.node); got != tc.want {
			t.Errorf("OwnerName(%q, node %q) = %q, want %q", tc.pod, tc.node, got, tc.want)
		}
	}
}

func TestOwnerServiceUsesPodNameAndNode(t *testing.T) {
	o := Owner{NodeName: "worker-3"}
	if got := o.Service(&registry.Pod{Namespace: "kube-system", Name: "kube-proxy-worker-3"}); got != "kube-proxy" {
		t.Errorf("static pod: got %q, want kube-proxy", got)
	}
	if got := o.Service(&registry.Pod{ContainerID: "0123456789abcdef0123"}); got != "0123456789ab" {
		t.Errorf("pod without a name: got %q, want the short sandbox id", got)
	}
	if got := o.Service(&registry.Pod{}); got != "" {
		t.Errorf("pod without name or sandbox id: got %q", got)
	}
}

type fixed string

func (f fixed) Service(*registry.Pod) string { return string(f) }

func TestChainReturnsFirstNonEmptyAnswer(t *testing.T) {
	pod := &registry.Pod{Name: "web-x2kq9"}
	if got := (Chain{fixed(""), fixed("from-cri"), fixed("later")}).Service(pod); got != "from-cri" {
		t.Errorf("got %q, want from-cri", got)
	}
	if got := (Chain{fixed(""), Owner{}}).Service(pod); got != "web" {
		t.Errorf("got %q, want the owner name web", got)
	}
	if got := (Chain{}).Service(pod); got != "" {
		t.Errorf("empty chain answered %q", got)
	}
}

func TestResolverWithoutClusterOrRuntimeFallsBackToOwner(t *testing.T) {
	r, err := New(Options{NodeName: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Service(&registry.Pod{Namespace: "shop", Name: "cart-6c9d8f7b5-zt4wq"}); got != "cart" {
		t.Errorf("got %q, want cart", got)
	}
	if !r.HasSynced() {
		t.Error("HasSynced is false without a Kubernetes step")
	}
	if got := r.ContainerName("s", "c"); got != "" {
		t.Errorf("ContainerName without a runtime = %q", got)
	}
	if s := r.Stats(); s.Kubernetes != nil || s.CRI != nil {
		t.Errorf("stats of unconfigured steps: %+v", s)
	}
}

// The monitor kept a looser copy of OwnerName (a ReplicaSet hash of 1 to 10
// characters of the whole generated alphabet, any run of digits as an
// ordinal) that named these pods differently. The stricter rule is the one
// kept: each case says why the looser answer was wrong.
func TestOwnerNameRejectsWhatALooserRuleAccepted(t *testing.T) {
	for _, tc := range []struct {
		pod, looser, want, why string
	}{
		{"web-2-x2kq9", "web", "web-2",
			"a pod-template-hash encodes decimal digits, which map only to 4-9, b, c, d and f: '2' is never in one"},
		{"api-xkcd-x2kq9", "api", "api-xkcd",
			"'x' and 'k' are never in a pod-template-hash: this is the DaemonSet or Job api-xkcd"},
		{"postgres-01", "postgres", "postgres-01",
			"StatefulSet ordinals have no leading zero"},
		{"build-20240101", "build", "build-20240101",
			"an ordinal of 8 digits is a date or a version, not a replica (the rule allows up to 999999)"},
		{"nightly-report-29012345-zt4wq", "nightly-report-29012345", "nightly-report",
			"the looser rule had no CronJob case: the Job's scheduled-minutes suffix belongs to the CronJob"},
	} {
		if got := OwnerName(tc.pod, ""); got != tc.want {
			t.Errorf("OwnerName(%q) = %q, want %q (not %q: %s)", tc.pod, got, tc.want, tc.looser, tc.why)
		}
	}
}
