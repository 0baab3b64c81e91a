package registry

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/weirnet/weir/enrollapi/enrollpb"
)

// fullPod has every field of Pod set, so a conversion that drops one fails.
func fullPod() *Pod {
	return &Pod{
		ID: 7, Network: "kindnet", ContainerID: "sandbox", Ifname: "eth0", Netns: "/var/run/netns/p",
		NetnsInode: 4026532001, IfIndex: 3, HostVeth: "veth1", HostVethIndex: 9,
		IPs:       []IPConfig{{Address: "10.0.0.5/24", Gateway: "10.0.0.1"}, {Address: "fd00::5/64"}},
		Namespace: "shop", Name: "cart-0", UID: "uid-1", InfraContainerID: "infra",
		EnrolledAt: time.Date(2026, 12, 7, 8, 0, 0, 123456789, time.UTC), CNIVersion: "1.1.0",
	}
}

func TestPodConvertsToTheContractRecordAndBackWithEveryField(t *testing.T) {
	p := fullPod()
	v := reflect.ValueOf(*p)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("fullPod leaves %s zero: the round trip would not cover it", v.Type().Field(i).Name)
		}
	}
	rec := p.Proto()
	want := &enrollpb.Pod{
		Id: 7, Network: "kindnet", ContainerId: "sandbox", Ifname: "eth0", Netns: "/var/run/netns/p",
		NetnsInode: 4026532001, IfIndex: 3, HostVeth: "veth1", HostVethIndex: 9,
		Ips:       []*enrollpb.IPConfig{{Address: "10.0.0.5/24", Gateway: "10.0.0.1"}, {Address: "fd00::5/64"}},
		Namespace: "shop", Name: "cart-0", Uid: "uid-1", InfraContainerId: "infra",
		EnrolledAt: rec.GetEnrolledAt(), CniVersion: "1.1.0",
	}
	if !proto.Equal(rec, want) || !rec.GetEnrolledAt().AsTime().Equal(p.EnrolledAt) {
		t.Fatalf("Proto() = %v, want %v", rec, want)
	}
	if back := PodFromProto(rec); !reflect.DeepEqual(back, p) {
		t.Fatalf("PodFromProto(Proto()) = %+v, want %+v", back, p)
	}
}

func TestPodWithoutEnrollmentTimeHasNoTimestampInTheRecord(t *testing.T) {
	if rec := (&Pod{ID: 1}).Proto(); rec.EnrolledAt != nil {
		t.Fatalf("zero EnrolledAt became %v, want no timestamp", rec.EnrolledAt)
	}
	if p := PodFromProto(nil); !reflect.DeepEqual(p, &Pod{}) {
		t.Fatalf("PodFromProto(nil) = %+v, want a zero Pod", p)
	}
}

func TestCloneSharesNoAddresses(t *testing.T) {
	p := fullPod()
	c := p.Clone()
	c.IPs[0].Address = "10.9.9.9/24"
	if p.IPs[0].Address != "10.0.0.5/24" {
		t.Fatal("changing a clone's address changed the original")
	}
}

// A registry file written before the daemon had its own Pod type (records
// were enrollpb.Pod in protojson) loads with every field, and is written
// back with the same pod object.
func TestRegistryFileFormatIsTheContractRecord(t *testing.T) {
	dir := t.TempDir()
	const podJSON = `{"id":7,"network":"kindnet","containerId":"sandbox","ifname":"eth0","netns":"/var/run/netns/p",` +
		`"netnsInode":"4026532001","ifIndex":3,"hostVeth":"veth1","hostVethIndex":9,` +
		`"ips":[{"address":"10.0.0.5/24","gateway":"10.0.0.1"},{"address":"fd00::5/64"}],` +
		`"namespace":"shop","name":"cart-0","uid":"uid-1","infraContainerId":"infra",` +
		`"enrolledAt":"2026-12-07T08:00:00.123456789Z","cniVersion":"1.1.0"}`
	file := `{"version":1,"nextId":8,"pods":[` + podJSON + `]}`
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	pods := r.List()
	if len(pods) != 1 || !reflect.DeepEqual(pods[0], fullPod()) {
		t.Fatalf("loaded %+v, want %+v", pods, fullPod())
	}
	other := pod("b")
	if _, err := r.Enroll(other); err != nil {
		t.Fatal(err)
	}
	r2, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := r2.Get(KeyOf(fullPod())); !ok || !reflect.DeepEqual(got, fullPod()) {
		t.Fatalf("after a rewrite the pod reads back as %+v, want %+v", got, fullPod())
	}
}
