package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/weirnet/weir/enrollapi/enrollpb"
)

var ctx = context.Background()

// assertStdoutIs checks that the plugin printed exactly one JSON document
// equal to want.
func assertStdoutIs(t *testing.T, stdout []byte, want map[string]any) {
	t.Helper()
	var got map[string]any
	if err := json.Unmarshal(stdout, &got); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, stdout)
	}
	wantJSON, _ := json.Marshal(want)
	var wantNorm map[string]any
	_ = json.Unmarshal(wantJSON, &wantNorm)
	if !reflect.DeepEqual(got, wantNorm) {
		t.Errorf("stdout differs from prevResult:\n got %s\nwant %s", stdout, wantJSON)
	}
}

func TestAddEnrollsPodWithNetnsLinkIPsAndK8sArgs(t *testing.T) {
	pn := newPodNet(t)
	d := &fakeDaemon{}
	e := newEnv(t)
	conf := netConf("1.1.0", startDaemon(t, d), e.spoolDir)
	prev := prevResult110(pn.ns.Path())
	conf["prevResult"] = prev

	if err := e.p.cmdAdd(ctx, cmdArgs(t, pn.ns.Path(), conf, k8sCNIArgs)); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	assertStdoutIs(t, e.stdout.Bytes(), prev)

	if len(d.Enrolls()) != 1 {
		t.Fatalf("daemon got %d Enroll calls, want 1", len(d.Enrolls()))
	}
	want := &enrollpb.Pod{
		Network:       "weirnet",
		ContainerId:   "c0ffee",
		Ifname:        "eth0",
		Netns:         pn.ns.Path(),
		NetnsInode:    pn.netnsInode,
		IfIndex:       int32(pn.podIndex),
		HostVeth:      pn.hostVeth,
		HostVethIndex: int32(pn.hostIndex),
		// Only eth0's addresses: the bridge's 10.22.0.1 is not the pod's.
		Ips: []*enrollpb.IPConfig{
			{Address: "10.22.0.5/16", Gateway: "10.22.0.1"},
			{Address: "fd00:22::5/64"},
		},
		Namespace:        "shop",
		Name:             "cart-7d9f",
		Uid:              "0b5e3c9a-1f2d-4e5f-8a9b-0c1d2e3f4a5b",
		InfraContainerId: "c0ffee",
		CniVersion:       "1.1.0",
	}
	if got := d.Enrolls()[0].GetPod(); !proto.Equal(got, want) {
		t.Errorf("enrolled pod:\n got %s\nwant %s", prototext.Format(got), prototext.Format(want))
	}
	if recs := e.spooled(t); len(recs) != 0 {
		t.Errorf("ADD with a live daemon spooled %d records", len(recs))
	}
}

func TestAddWithMissingK8sArgsEnrollsWithEmptyPodIdentity(t *testing.T) {
	pn := newPodNet(t)
	d := &fakeDaemon{}
	e := newEnv(t)
	conf := netConf("1.1.0", startDaemon(t, d), e.spoolDir)
	conf["prevResult"] = prevResult110(pn.ns.Path())

	// podman passes only K8S_POD_NAME; plain runtimes pass nothing.
	if err := e.p.cmdAdd(ctx, cmdArgs(t, pn.ns.Path(), conf, "K8S_POD_NAME=web")); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	pod := d.Enrolls()[0].GetPod()
	if pod.GetName() != "web" || pod.GetNamespace() != "" || pod.GetUid() != "" || pod.GetInfraContainerId() != "" {
		t.Errorf("pod identity = name %q ns %q uid %q infra %q, want only name \"web\"",
			pod.GetName(), pod.GetNamespace(), pod.GetUid(), pod.GetInfraContainerId())
	}
}

func TestAddSpoolsEnrollmentWhenDaemonIsDown(t *testing.T) {
	pn := newPodNet(t)
	e := newEnv(t)
	conf := netConf("1.1.0", deadSocket(t), e.spoolDir)
	prev := prevResult110(pn.ns.Path())
	conf["prevResult"] = prev

	if err := e.p.cmdAdd(ctx, cmdArgs(t, pn.ns.Path(), conf, k8sCNIArgs)); err != nil {
		t.Fatalf("ADD with daemon down and failurePolicy ignore: %v", err)
	}
	assertStdoutIs(t, e.stdout.Bytes(), prev)

	recs := e.spooled(t)
	if len(recs) != 1 {
		t.Fatalf("spool holds %d records, want 1", len(recs))
	}
	pod := recs[0].GetEnroll().GetPod()
	if pod.GetContainerId() != "c0ffee" || pod.GetNetnsInode() != pn.netnsInode || pod.GetNamespace() != "shop" ||
		pod.GetHostVeth() != pn.hostVeth || len(pod.GetIps()) != 2 {
		t.Errorf("spooled enrollment = %v, want the full pod record", pod)
	}
	if got := recs[0].GetTime().AsTime(); !got.Equal(fixedNow) {
		t.Errorf("spool record time = %v, want %v", got, fixedNow)
	}
}

// CNI_ARGS are bytes; protobuf strings must be UTF-8. A pod name that is
// not must still be enrolled or spooled, with the bad bytes replaced.
func TestAddWithNonUTF8PodNameIsSpooledWithTheNameRepaired(t *testing.T) {
	pn := newPodNet(t)
	e := newEnv(t)
	conf := netConf("1.1.0", deadSocket(t), e.spoolDir)
	conf["prevResult"] = prevResult110(pn.ns.Path())
	if err := e.p.cmdAdd(ctx, cmdArgs(t, pn.ns.Path(), conf, "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=caf\xe9-1")); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	recs := e.spooled(t)
	if len(recs) != 1 {
		t.Fatalf("spool holds %d records, want 1: a non-UTF-8 name made the record unspoolable", len(recs))
	}
	if got := recs[0].GetEnroll().GetPod().GetName(); got != "caf\uFFFD-1" {
		t.Errorf("spooled name = %q, want %q", got, "caf\uFFFD-1")
	}
}

func TestAddSpoolsWhenDaemonDoesNotAnswerInTime(t *testing.T) {
	pn := newPodNet(t)
	d := &fakeDaemon{hang: true}
	e := newEnv(t)
	conf := netConf("1.1.0", startDaemon(t, d), e.spoolDir)
	conf["timeout"] = "200ms"
	conf["prevResult"] = prevResult110(pn.ns.Path())

	start := time.Now()
	if err := e.p.cmdAdd(ctx, cmdArgs(t, pn.ns.Path(), conf, k8sCNIArgs)); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("ADD took %v with a 200ms timeout", took)
	}
	if len(d.Enrolls()) != 1 {
		t.Errorf("daemon saw %d Enroll calls, want 1", len(d.Enrolls()))
	}
	if recs := e.spooled(t); len(recs) != 1 || recs[0].GetEnroll() == nil {
		t.Errorf("spool = %v, want one enrollment", recs)
	}
}

func TestAddFailPolicyReturnsTryAgainLaterWhenDaemonIsDown(t *testing.T) {
	pn := newPodNet(t)
	e := newEnv(t)
	sock := deadSocket(t)
	conf := netConf("1.1.0", sock, e.spoolDir)
	conf["failurePolicy"] = "fail"
	conf["prevResult"] = prevResult110(pn.ns.Path())

	err := e.p.cmdAdd(ctx, cmdArgs(t, pn.ns.Path(), conf, k8sCNIArgs))
	if code := cniCode(t, err); code != types.ErrTryAgainLater {
		t.Errorf("error code = %d, want %d (try again later)", code, types.ErrTryAgainLater)
	}
	if !strings.Contains(err.Error(), sock) {
		t.Errorf("error %q does not name the socket %s", err, sock)
	}
	if e.stdout.Len() != 0 {
		t.Errorf("failed ADD printed %q", e.stdout)
	}
	if recs := e.spooled(t); len(recs) != 0 {
		t.Errorf("failed ADD spooled %d records; the runtime retries it instead", len(recs))
	}
}

func TestAddDaemonRejectionIsNeverSpooled(t *testing.T) {
	for _, policy := range []string{"ignore", "fail"} {
		t.Run(policy, func(t *testing.T) {
			pn := newPodNet(t)
			d := &fakeDaemon{err: status.Error(codes.InvalidArgument, "netns inode 0 is invalid")}
			e := newEnv(t)
			conf := netConf("1.1.0", startDaemon(t, d), e.spoolDir)
			conf["failurePolicy"] = policy
			prev := prevResult110(pn.ns.Path())
			conf["prevResult"] = prev

			err := e.p.cmdAdd(ctx, cmdArgs(t, pn.ns.Path(), conf, k8sCNIArgs))
			if policy == "ignore" {
				if err != nil {
					t.Fatalf("ADD: %v", err)
				}
				assertStdoutIs(t, e.stdout.Bytes(), prev)
			} else {
				if code := cniCode(t, err); code != types.ErrInternal {
					t.Errorf("code = %d, want %d", code, types.ErrInternal)
				}
				if !strings.Contains(err.Error(), "rejected") || !strings.Contains(err.Error(), "netns inode 0 is invalid") {
					t.Errorf("error %q does not carry the daemon's reason", err)
				}
			}
			if recs := e.spooled(t); len(recs) != 0 {
				t.Errorf("a rejected enrollment was spooled (%d records)", len(recs))
			}
		})
	}
}

func TestAddWithoutPrevResultIsInvalidConfig(t *testing.T) {
	e := newEnv(t)
	conf := netConf("1.1.0", deadSocket(t), e.spoolDir)
	err := e.p.cmdAdd(ctx, cmdArgs(t, "/var/run/netns/none", conf, ""))
	if code := cniCode(t, err); code != types.ErrInvalidNetworkConfig {
		t.Errorf("code = %d, want %d", code, types.ErrInvalidNetworkConfig)
	}
	if !strings.Contains(err.Error(), "chained after a main plugin") {
		t.Errorf("error %q does not say weir must be chained", err)
	}
	if e.stdout.Len() != 0 {
		t.Errorf("stdout = %q, want nothing", e.stdout)
	}
}

func TestAddConvertsResultToConfVersion(t *testing.T) {
	tests := []struct {
		cniVersion string
		prev       func(string) map[string]any
	}{
		{"0.4.0", prevResult040},
		{"1.0.0", prevResult110},
		{"1.1.0", prevResult110},
	}
	for _, tt := range tests {
		t.Run(tt.cniVersion, func(t *testing.T) {
			pn := newPodNet(t)
			d := &fakeDaemon{}
			e := newEnv(t)
			conf := netConf(tt.cniVersion, startDaemon(t, d), e.spoolDir)
			conf["prevResult"] = tt.prev(pn.ns.Path())
			if err := e.p.cmdAdd(ctx, cmdArgs(t, pn.ns.Path(), conf, "")); err != nil {
				t.Fatalf("ADD: %v", err)
			}
			var out struct {
				CNIVersion string `json:"cniVersion"`
				IPs        []map[string]any
			}
			if err := json.Unmarshal(e.stdout.Bytes(), &out); err != nil {
				t.Fatalf("stdout %q: %v", e.stdout, err)
			}
			if out.CNIVersion != tt.cniVersion {
				t.Errorf("result cniVersion = %q, want the conf's %q", out.CNIVersion, tt.cniVersion)
			}
			if len(out.IPs) != 3 {
				t.Fatalf("result has %d ips, want all 3 passed through", len(out.IPs))
			}
			// 0.4.0 results carry "version" per IP; 1.x dropped it.
			_, hasVersion := out.IPs[0]["version"]
			if want := tt.cniVersion == "0.4.0"; hasVersion != want {
				t.Errorf("ips[0] has version key: %v, want %v (%s format)", hasVersion, want, tt.cniVersion)
			}
			if got := d.Enrolls()[0].GetPod().GetCniVersion(); got != tt.cniVersion {
				t.Errorf("enrolled cni_version = %q, want %q", got, tt.cniVersion)
			}
			if n := len(d.Enrolls()[0].GetPod().GetIps()); n != 2 {
				t.Errorf("enrolled %d IPs from a %s result, want 2", n, tt.cniVersion)
			}
		})
	}
}

func TestAddPassesExcludedNamespacesThrough(t *testing.T) {
	d := &fakeDaemon{}
	e := newEnv(t)
	conf := netConf("1.1.0", startDaemon(t, d), e.spoolDir)
	prev := prevResult110("/var/run/netns/gone")
	conf["prevResult"] = prev

	// The netns does not exist: an excluded pod must not even be inspected.
	err := e.p.cmdAdd(ctx, cmdArgs(t, "/var/run/netns/gone", conf, "K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns"))
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	assertStdoutIs(t, e.stdout.Bytes(), prev)
	if len(d.Enrolls()) != 0 {
		t.Errorf("excluded pod was enrolled: %v", d.Enrolls())
	}
}

func TestAddEmptyExcludeListEnrollsKubeSystem(t *testing.T) {
	pn := newPodNet(t)
	d := &fakeDaemon{}
	e := newEnv(t)
	conf := netConf("1.1.0", startDaemon(t, d), e.spoolDir)
	conf["excludeNamespaces"] = []string{}
	conf["prevResult"] = prevResult110(pn.ns.Path())
	if err := e.p.cmdAdd(ctx, cmdArgs(t, pn.ns.Path(), conf, "K8S_POD_NAMESPACE=kube-system")); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	if len(d.Enrolls()) != 1 || d.Enrolls()[0].GetPod().GetNamespace() != "kube-system" {
		t.Errorf("enrolls = %v, want the kube-system pod", d.Enrolls())
	}
}

func TestAddMissingInterfaceFollowsFailurePolicy(t *testing.T) {
	for _, policy := range []string{"ignore", "fail"} {
		t.Run(policy, func(t *testing.T) {
			pn := newPodNet(t)
			d := &fakeDaemon{}
			e := newEnv(t)
			conf := netConf("1.1.0", startDaemon(t, d), e.spoolDir)
			conf["failurePolicy"] = policy
			conf["prevResult"] = prevResult110(pn.ns.Path())
			args := cmdArgs(t, pn.ns.Path(), conf, "")
			args.IfName = "net9"

			err := e.p.cmdAdd(ctx, args)
			if policy == "ignore" && err != nil {
				t.Errorf("ADD with failurePolicy ignore: %v", err)
			}
			if policy == "fail" {
				if err == nil || !strings.Contains(err.Error(), `"net9"`) {
					t.Errorf("ADD error = %v, want one naming the missing interface net9", err)
				}
			}
			if len(d.Enrolls()) != 0 || len(e.spooled(t)) != 0 {
				t.Errorf("uninspectable pod was enrolled or spooled")
			}
		})
	}
}

func TestInvalidConfIsRejectedByAddCheckAndStatus(t *testing.T) {
	e := newEnv(t)
	conf := netConf("1.1.0", deadSocket(t), e.spoolDir)
	conf["failurePolicy"] = "sometimes"
	conf["prevResult"] = prevResult110("/var/run/netns/x")
	cmds := map[string]func(context.Context, *skel.CmdArgs) error{
		"ADD": e.p.cmdAdd, "CHECK": e.p.cmdCheck, "STATUS": e.p.cmdStatus,
	}
	for name, cmd := range cmds {
		err := cmd(ctx, cmdArgs(t, "/var/run/netns/x", conf, ""))
		if code := cniCode(t, err); code != types.ErrInvalidNetworkConfig {
			t.Errorf("%s: code = %d, want %d", name, code, types.ErrInvalidNetworkConfig)
		}
		if !strings.Contains(err.Error(), `failurePolicy "sometimes"`) {
			t.Errorf("%s: error %q does not name the bad field", name, err)
		}
	}
	if e.stdout.Len() != 0 {
		t.Errorf("stdout = %q, want nothing", e.stdout)
	}
}

// DEL and GC must succeed whatever the weir entry says: a failing DEL stops
// libcni before the main plugin frees the pod's address and veth.
func TestDelAndGCWithInvalidConfStillReachTheDaemonAndSucceed(t *testing.T) {
	bad := map[string]any{
		"failurePolicy typo":  "Ignore",
		"negative timeout":    "-1s",
		"timeout wrong type":  5,
		"relative logFile":    "weir.log",
		"spoolMaxRecords big": 1 << 30,
	}
	keys := map[string]string{
		"failurePolicy typo": "failurePolicy", "negative timeout": "timeout", "timeout wrong type": "timeout",
		"relative logFile": "logFile", "spoolMaxRecords big": "spoolMaxRecords",
	}
	for name, v := range bad {
		t.Run(name, func(t *testing.T) {
			d := &fakeDaemon{}
			e := newEnv(t)
			conf := netConf("1.1.0", startDaemon(t, d), e.spoolDir)
			conf[keys[name]] = v
			conf["cni.dev/valid-attachments"] = []map[string]string{{"containerID": "c1", "ifname": "eth0"}}
			if err := e.p.cmdDel(ctx, cmdArgs(t, "", conf, k8sCNIArgs)); err != nil {
				t.Fatalf("DEL with %s = %v: %v, want success", keys[name], v, err)
			}
			if err := e.p.cmdGC(ctx, cmdArgs(t, "", conf, "")); err != nil {
				t.Fatalf("GC with %s = %v: %v, want success", keys[name], v, err)
			}
			want := &enrollpb.UnenrollRequest{Network: "weirnet", Attachment: &enrollpb.Attachment{ContainerId: "c0ffee", Ifname: "eth0"}}
			if u := d.Unenrolls(); len(u) != 1 || !proto.Equal(u[0], want) {
				t.Errorf("Unenroll calls = %v, want exactly %v", u, want)
			}
			if g := d.GCs(); len(g) != 1 || g[0].GetNetwork() != "weirnet" || len(g[0].GetValidAttachments()) != 1 {
				t.Errorf("GC calls = %v, want one for weirnet with one valid attachment", g)
			}
			if !strings.Contains(e.stderr.String(), keys[name]) {
				t.Errorf("stderr %q does not name the bad field %s", e.stderr, keys[name])
			}
		})
	}
}

func TestDelWithUnreadableConfUnenrollsFromEveryNetwork(t *testing.T) {
	d := &fakeDaemon{}
	e := newEnv(t)
	sock := startDaemon(t, d)
	// Not even the network name is readable: name has the wrong type. The
	// default socket is not the test's, so point DEL at it via a valid
	// daemonSocket and break only the name.
	conf := netConf("1.1.0", sock, e.spoolDir)
	conf["name"] = 42
	if err := e.p.cmdDel(ctx, cmdArgs(t, "", conf, k8sCNIArgs)); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	want := &enrollpb.UnenrollRequest{Attachment: &enrollpb.Attachment{ContainerId: "c0ffee", Ifname: "eth0"}}
	if u := d.Unenrolls(); len(u) != 1 || !proto.Equal(u[0], want) {
		t.Errorf("Unenroll calls = %v, want exactly %v (empty network: every network)", u, want)
	}
}

func TestDelSucceedsOnStdinThatIsNotJSON(t *testing.T) {
	e := newEnv(t)
	args := &skel.CmdArgs{ContainerID: "c0ffee", IfName: "eth0", StdinData: []byte("{not json")}
	if err := e.p.cmdDel(ctx, args); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if err := e.p.cmdGC(ctx, args); err != nil {
		t.Fatalf("GC: %v", err)
	}
}

func TestStatusSucceedsWithDaemonDown(t *testing.T) {
	for _, policy := range []string{"ignore", "fail"} {
		e := newEnv(t)
		conf := netConf("1.1.0", deadSocket(t), e.spoolDir)
		conf["failurePolicy"] = policy
		if err := e.p.cmdStatus(ctx, cmdArgs(t, "", conf, "")); err != nil {
			t.Errorf("STATUS with daemon down, failurePolicy %s: %v", policy, err)
		}
	}
}

func TestDelUnenrollsEvenWithoutNetnsAndIsIdempotent(t *testing.T) {
	d := &fakeDaemon{}
	e := newEnv(t)
	conf := netConf("1.1.0", startDaemon(t, d), e.spoolDir)
	for i := range 2 {
		// The netns is already gone, as after a node reboot.
		if err := e.p.cmdDel(ctx, cmdArgs(t, "", conf, k8sCNIArgs)); err != nil {
			t.Fatalf("DEL #%d: %v", i+1, err)
		}
	}
	want := &enrollpb.UnenrollRequest{Network: "weirnet", Attachment: &enrollpb.Attachment{ContainerId: "c0ffee", Ifname: "eth0"}}
	if len(d.Unenrolls()) != 2 {
		t.Fatalf("daemon got %d Unenroll calls, want 2", len(d.Unenrolls()))
	}
	for _, got := range d.Unenrolls() {
		if !proto.Equal(got, want) {
			t.Errorf("Unenroll(%v), want %v", got, want)
		}
	}
	if e.stdout.Len() != 0 {
		t.Errorf("DEL printed %q", e.stdout)
	}
}

func TestDelSpoolsUnenrollWhenDaemonIsDownUnderEitherPolicy(t *testing.T) {
	for _, policy := range []string{"ignore", "fail"} {
		t.Run(policy, func(t *testing.T) {
			e := newEnv(t)
			conf := netConf("1.1.0", deadSocket(t), e.spoolDir)
			conf["failurePolicy"] = policy
			if err := e.p.cmdDel(ctx, cmdArgs(t, "", conf, k8sCNIArgs)); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			recs := e.spooled(t)
			if len(recs) != 1 {
				t.Fatalf("spool holds %d records, want 1", len(recs))
			}
			u := recs[0].GetUnenroll()
			if u.GetNetwork() != "weirnet" || u.GetAttachment().GetContainerId() != "c0ffee" || u.GetAttachment().GetIfname() != "eth0" {
				t.Errorf("spooled unenroll = %v", u)
			}
		})
	}
}

func TestDelSucceedsWhenDaemonRejects(t *testing.T) {
	d := &fakeDaemon{err: status.Error(codes.Internal, "registry broken")}
	e := newEnv(t)
	conf := netConf("1.1.0", startDaemon(t, d), e.spoolDir)
	conf["failurePolicy"] = "fail"
	if err := e.p.cmdDel(ctx, cmdArgs(t, "", conf, "")); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if recs := e.spooled(t); len(recs) != 0 {
		t.Errorf("rejected unenroll was spooled")
	}
}

func TestDelSkipsExcludedNamespaces(t *testing.T) {
	d := &fakeDaemon{}
	e := newEnv(t)
	conf := netConf("1.1.0", startDaemon(t, d), e.spoolDir)
	if err := e.p.cmdDel(ctx, cmdArgs(t, "", conf, "K8S_POD_NAMESPACE=kube-system")); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if len(d.Unenrolls()) != 0 {
		t.Errorf("excluded pod was unenrolled: %v", d.Unenrolls())
	}
}

func TestCheck(t *testing.T) {
	const netnsPath = "/var/run/netns/pod1"
	enrolled := &enrollpb.Pod{
		Network: "weirnet", ContainerId: "c0ffee", Ifname: "eth0", Netns: netnsPath,
		Ips: []*enrollpb.IPConfig{{Address: "fd00:22:0::5/64"}, {Address: "10.22.0.5/16", Gateway: "10.22.0.1"}},
	}
	tests := []struct {
		name       string
		daemon     *fakeDaemon // nil: no daemon listening
		policy     string
		noPrev     bool
		wantCode   uint // CNI code, 0 for none
		wantErrSub string
	}{
		{name: "enrolled with the same addresses", daemon: &fakeDaemon{pod: enrolled}},
		{name: "not enrolled", daemon: &fakeDaemon{err: status.Error(codes.NotFound, "no such attachment")},
			wantErrSub: `attachment (container c0ffee, ifname eth0) of network "weirnet" is not enrolled`},
		{name: "addresses differ", daemon: &fakeDaemon{pod: &enrollpb.Pod{Netns: netnsPath, Ips: []*enrollpb.IPConfig{{Address: "10.22.0.9/16"}}}},
			wantErrSub: `weir-daemon has addresses ["10.22.0.9/16"]`},
		{name: "netns differs", daemon: &fakeDaemon{pod: func() *enrollpb.Pod {
			p := proto.Clone(enrolled).(*enrollpb.Pod)
			p.Netns = "/var/run/netns/other"
			return p
		}()}, wantErrSub: `netns "/var/run/netns/other"`},
		{name: "daemon down, ignore", policy: "ignore"},
		{name: "daemon down, fail", policy: "fail", wantCode: types.ErrTryAgainLater, wantErrSub: "unreachable"},
		{name: "no prevResult", daemon: &fakeDaemon{pod: enrolled}, noPrev: true, wantCode: types.ErrInvalidNetworkConfig,
			wantErrSub: "chained after a main plugin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			sock := deadSocket(t)
			if tt.daemon != nil {
				sock = startDaemon(t, tt.daemon)
			}
			conf := netConf("1.1.0", sock, e.spoolDir)
			if tt.policy != "" {
				conf["failurePolicy"] = tt.policy
			}
			if !tt.noPrev {
				conf["prevResult"] = prevResult110(netnsPath)
			}
			err := e.p.cmdCheck(ctx, cmdArgs(t, netnsPath, conf, k8sCNIArgs))
			if tt.wantErrSub == "" {
				if err != nil {
					t.Fatalf("CHECK: %v", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.wantErrSub) {
				t.Fatalf("CHECK error = %v, want one containing %q", err, tt.wantErrSub)
			}
			if tt.wantCode != 0 {
				if code := cniCode(t, err); code != tt.wantCode {
					t.Errorf("code = %d, want %d", code, tt.wantCode)
				}
			}
			if tt.daemon != nil && !tt.noPrev {
				want := &enrollpb.GetRequest{Network: "weirnet", Attachment: &enrollpb.Attachment{ContainerId: "c0ffee", Ifname: "eth0"}}
				if len(tt.daemon.Gets()) != 1 || !proto.Equal(tt.daemon.Gets()[0], want) {
					t.Errorf("Get calls = %v, want [%v]", tt.daemon.Gets(), want)
				}
			}
		})
	}
}

func TestGCForwardsValidAttachments(t *testing.T) {
	d := &fakeDaemon{}
	e := newEnv(t)
	conf := netConf("1.1.0", startDaemon(t, d), e.spoolDir)
	conf["cni.dev/valid-attachments"] = []map[string]string{
		{"containerID": "aaa", "ifname": "eth0"},
		{"containerID": "bbb", "ifname": "net1"},
	}
	if err := e.p.cmdGC(ctx, cmdArgs(t, "", conf, "")); err != nil {
		t.Fatalf("GC: %v", err)
	}
	want := &enrollpb.GCRequest{Network: "weirnet", ValidAttachments: []*enrollpb.Attachment{
		{ContainerId: "aaa", Ifname: "eth0"}, {ContainerId: "bbb", Ifname: "net1"},
	}}
	if len(d.GCs()) != 1 || !proto.Equal(d.GCs()[0], want) {
		t.Errorf("GC calls = %v, want [%v]", d.GCs(), want)
	}
}

func TestGCWithNoValidAttachmentsSendsEmptySet(t *testing.T) {
	d := &fakeDaemon{}
	e := newEnv(t)
	if err := e.p.cmdGC(ctx, cmdArgs(t, "", netConf("1.1.0", startDaemon(t, d), e.spoolDir), "")); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if len(d.GCs()) != 1 || d.GCs()[0].GetNetwork() != "weirnet" || len(d.GCs()[0].GetValidAttachments()) != 0 {
		t.Errorf("GC calls = %v, want one for weirnet with no valid attachments", d.GCs())
	}
}

func TestGCSucceedsWithDaemonDown(t *testing.T) {
	e := newEnv(t)
	conf := netConf("1.1.0", deadSocket(t), e.spoolDir)
	conf["failurePolicy"] = "fail"
	if err := e.p.cmdGC(ctx, cmdArgs(t, "", conf, "")); err != nil {
		t.Fatalf("GC with daemon down: %v", err)
	}
}

func TestLogFileGetsJSONLinesAndStdoutStaysClean(t *testing.T) {
	e := newEnv(t)
	logFile := filepath.Join(shortTempDir(t), "sub", "weir.log")
	conf := netConf("1.1.0", deadSocket(t), e.spoolDir)
	conf["logFile"] = logFile
	conf["logLevel"] = "debug"
	if err := e.p.cmdDel(ctx, cmdArgs(t, "", conf, "")); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if e.stdout.Len() != 0 || e.stderr.Len() != 0 {
		t.Errorf("stdout %q stderr %q, want both empty", e.stdout, e.stderr)
	}
	fi, err := os.Stat(logFile)
	if err != nil {
		t.Fatalf("log file: %v", err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("log file mode = %o, want 600", mode)
	}
	b, _ := os.ReadFile(logFile)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var sawSpool bool
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		if rec["cmd"] != "DEL" || rec["containerID"] != "c0ffee" || rec["network"] != "weirnet" {
			t.Errorf("log line %q lacks the invocation's attributes", l)
		}
		if rec["msg"] == "spooled" {
			sawSpool = true
		}
	}
	if !sawSpool {
		t.Errorf("log %q does not record the spool write", b)
	}
}

func TestUnusableLogFileDoesNotFailTheCommand(t *testing.T) {
	e := newEnv(t)
	dir := shortTempDir(t)
	conf := netConf("1.1.0", deadSocket(t), e.spoolDir)
	conf["logFile"] = dir // a directory cannot be opened for append
	if err := e.p.cmdDel(ctx, cmdArgs(t, "", conf, "")); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if !strings.Contains(e.stderr.String(), "logging disabled") {
		t.Errorf("stderr = %q, want a note that logging is disabled", e.stderr)
	}
}

func TestParseK8sArgs(t *testing.T) {
	a, err := parseK8sArgs(k8sCNIArgs)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if a.K8S_POD_NAMESPACE != "shop" || a.K8S_POD_NAME != "cart-7d9f" || a.K8S_POD_INFRA_CONTAINER_ID != "c0ffee" ||
		a.K8S_POD_UID != "0b5e3c9a-1f2d-4e5f-8a9b-0c1d2e3f4a5b" {
		t.Errorf("args = %+v", a)
	}
	// Unknown keys are ignored even without IgnoreUnknown=1.
	if _, err := parseK8sArgs("FOO=bar;K8S_POD_NAME=x"); err != nil {
		t.Errorf("unknown key: %v", err)
	}
	if a, err := parseK8sArgs(""); err != nil || a.K8S_POD_NAME != "" {
		t.Errorf("empty CNI_ARGS: %+v, %v", a, err)
	}
	if _, err := parseK8sArgs("K8S_POD_NAME"); err == nil || !strings.Contains(err.Error(), "CNI_ARGS") {
		t.Errorf("malformed pair: err = %v, want a CNI_ARGS error", err)
	}
}
