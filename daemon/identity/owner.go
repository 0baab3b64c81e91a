package identity

import (
	"regexp"
	"strings"

	"github.com/weirnet/weir/daemon/registry"
)

// Kubernetes generates name suffixes from this alphabet (vowels and easily
// confused characters removed: apimachinery's rand.String and
// SafeEncodeString). A suffix made only of these characters is very likely
// generated; a word such as "server" is not, because it has vowels.
const generatedAlphabet = `[bcdfghjklmnpqrstvwxz2456789]`

var (
	// Deployment → ReplicaSet "<deployment>-<pod-template-hash>" → pod
	// "<replicaset>-<5>". The hash is SafeEncodeString of the decimal form
	// of a 32-bit hash: one character per digit, and digits only map to
	// 4-9, b, c, d, f. Requiring 6 or more keeps short words out (a value
	// below 10^5 has odds of 1 in 40000).
	replicaSetPod = regexp.MustCompile(`^(.+)-[4-9bcdf]{6,10}-` + generatedAlphabet + `{5}$`)
	// CronJob → Job "<cronjob>-<scheduled minutes since epoch>" → pod
	// "<job>-<5>".
	cronJobPod = regexp.MustCompile(`^(.+)-[0-9]{8,}-` + generatedAlphabet + `{5}$`)
	// DaemonSet, Job and bare ReplicaSet pods: "<owner>-<5>".
	generatedPod = regexp.MustCompile(`^(.+)-` + generatedAlphabet + `{5}$`)
	// StatefulSet pods: "<statefulset>-<ordinal>".
	statefulSetPod = regexp.MustCompile(`^(.+)-(?:0|[1-9][0-9]{0,5})$`)
)

// Owner names a pod's workload from the pod's name alone: the last resort of
// the chain, when neither the Kubernetes API nor the runtime's labels answer.
// The controllers' naming conventions are stable and documented, so a
// Deployment's pods are all named after the Deployment even though nothing
// else is known about them.
type Owner struct {
	// NodeName, when set, is stripped from static pod names, which the
	// kubelet forms as "<manifest name>-<node name>".
	NodeName string
}

// Service implements ServiceResolver: the owner name of pod's name. A pod
// without a name (a sandbox started outside Kubernetes, a runtime that passes
// no K8S_POD_NAME) is named after its sandbox id, shortened as crictl and
// docker show it, so that it still has a stable name of its own.
func (o Owner) Service(pod *registry.Pod) string {
	if pod.Name == "" {
		id := pod.ContainerID
		return id[:min(len(id), 12)]
	}
	return OwnerName(pod.Name, o.NodeName)
}

// OwnerName strips the suffix a controller appends to its pods' names:
// ReplicaSet (and so Deployment) "-<hash>-<5>", CronJob "-<minutes>-<5>",
// DaemonSet/Job "-<5>", StatefulSet "-<ordinal>", and "-<nodeName>" of
// static pods. A name matching none is returned unchanged: it is the best
// name there is.
func OwnerName(podName, nodeName string) string {
	if podName == "" {
		return ""
	}
	if nodeName != "" {
		if owner, ok := strings.CutSuffix(podName, "-"+nodeName); ok && owner != "" {
			return owner
		}
	}
	for _, re := range []*regexp.Regexp{cronJobPod, replicaSetPod, generatedPod, statefulSetPod} {
		if m := re.FindStringSubmatch(podName); m != nil {
			return m[1]
		}
	}
	return podName
}
